package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestKafkaSequenceAcrossKill9: a Sequence whose channelTemplate is a KafkaChannel keeps its
// events across a kill -9 of the router. Two steps, each appending its number to the message; the
// second holds every request while the first's replies pile up in the second step's topic, the
// router is killed and started again, and then the second step answers: the reply sink gets every
// event, through both steps in order. (On an InMemoryChannel the held events die with the process.)
func TestKafkaSequenceAcrossKill9(t *testing.T) {
	kafka := testenv.Kafka(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	step0 := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		replyWith(w, req, func(m string) string { return m + " 0" })
	})
	step1 := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		<-release
		replyWith(w, req, func(m string) string { return m + " 1" })
	})
	t.Cleanup(free) // before the subscriber's Close, which waits for its held handlers
	var mu sync.Mutex
	done := map[string]string{}
	display := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Event != nil {
			mu.Lock()
			done[req.Event.ID()] = message(t, req)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	})
	seq := fmt.Sprintf("seq%d", time.Now().UnixNano()%1_000_000_000)
	manifests := fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: %s
  namespace: default
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1beta1
    kind: KafkaChannel
    spec:
      numPartitions: 2
      replicationFactor: 1
  steps:
    - uri: %s
    - uri: %s
      delivery:
        timeout: PT600S
  reply:
    uri: %s
---
`, seq, step0.URL, step1.URL, display.URL)
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n", kafka)
	dir := t.TempDir()
	r := startRouterIn(t, dir, manifests, "", spec)

	const n = 300
	var batch strings.Builder
	batch.WriteString("[")
	for i := range n {
		if i > 0 {
			batch.WriteString(",")
		}
		fmt.Fprintf(&batch, `{"specversion":"1.0","id":"e-%03d","source":"/s","type":"t","datacontenttype":"application/json","data":{"message":"m%d"}}`, i, i)
	}
	batch.WriteString("]")
	code, _, body := r.send(t, "/default/"+seq+"-kn-sequence-0", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: batch.String()})
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("POST to the Sequence: %d %s", code, body)
	}
	// Every event has been through the first step (its reply is in the second step's topic) and
	// the second holds what it was given.
	distinct := func(s *subscriber) int {
		ids := map[string]bool{}
		for _, req := range s.requests() {
			if req.Event != nil {
				ids[req.Event.ID()] = true
			}
		}
		return len(ids)
	}
	for deadline := time.Now().Add(60 * time.Second); distinct(step0) < n || step1.count() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("step 0 got %d of %d events, step 1 %d requests", distinct(step0), n, step1.count())
		}
	}
	// Wait for the first step's outcomes to be final (its replies acknowledged by Kafka), so what
	// the kill tests is the second step's topic.
	time.Sleep(time.Second)
	if got := len(display.requests()); got != 0 {
		t.Fatalf("the reply sink got %d events while step 1 held them", got)
	}

	_ = r.cmd.Process.Kill()
	<-r.exited
	free()
	startRouterIn(t, dir, manifests, "", spec)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(done) }
	for deadline := time.Now().Add(120 * time.Second); count() < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the reply sink got %d of %d events after the kill", count(), n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		if got, want := done[fmt.Sprintf("e-%03d", i)], fmt.Sprintf("m%d 0 1", i); got != want {
			t.Errorf("event %d came out as %q, want %q", i, got, want)
		}
	}
	t.Logf("step 0: %d requests, step 1: %d requests, reply sink: %d requests for %d events", step0.count(), step1.count(), display.count(), n)
}
