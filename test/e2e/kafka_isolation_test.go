package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestKafkaSlowTriggerDoesNotStallOthers: on a Kafka-class broker, a trigger whose subscriber
// hangs holds its own events only; another trigger on the same broker gets every event meanwhile,
// and the hung one catches up once its subscriber answers. (Knative isolates triggers with a
// consumer group each; Switchyard reads once per broker and bounds what a slow trigger holds by
// the partition window instead.)
func TestKafkaSlowTriggerDoesNotStallOthers(t *testing.T) {
	kafka := testenv.Kafka(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	slow := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(free) // before the subscriber's Close, which waits for its hung handlers
	fast := newSubscriber(t, nil)
	topic := fmt.Sprintf("e2e-isolation-%d", time.Now().UnixNano())
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic)+
		triggerYAML("slow", "  broker: durable\n  subscriber:\n    uri: "+slow.URL+"\n  delivery:\n    timeout: PT120S\n")+
		triggerYAML("fast", "  broker: durable\n  subscriber:\n    uri: "+fast.URL+"\n"),
		"", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 2\n", kafka))

	const n = 1000 // well past the slow trigger's lane (64 in flight + 256 waiting)
	for i := range n {
		if code, _, body := r.send(t, "/default/durable", binaryEvent(fmt.Sprintf("iso-%d", i), "t")); code != 202 {
			t.Fatalf("event %d: %d %s", i, code, body)
		}
	}
	fast.waitFor(t, n, 60*time.Second)
	if got := len(slow.requests()); got > 64 {
		t.Errorf("the hung subscriber got %d requests at once, more than the trigger's concurrency of 64", got)
	}
	free()
	slow.waitFor(t, n, 60*time.Second)
}
