package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

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

// TestKafkaOrderedPartitionsDoNotWaitForEachOther: an ordered trigger delivers a partition's
// events one at a time, but a partition whose event hangs holds only itself: the events of keys
// on the other partitions all arrive meanwhile, each key in order.
func TestKafkaOrderedPartitionsDoNotWaitForEachOther(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-ordered-parts-%d", time.Now().UnixNano())
	const partitions, keys, perKey = 4, 8, 20
	// The router's producer places keys with sarama's default hash partitioner.
	partitionOf := func(key string) int32 {
		p, err := sarama.NewHashPartitioner(topic).Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key)}, partitions)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	stuck := partitionOf("k0")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Event.Extensions()["partitionkey"] == "k0" {
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(free)
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic)+orderedTrigger("durable", sub.URL, "  delivery: {timeout: PT120S}\n"), "", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: %d\n", kafka, partitions))

	elsewhere := 0
	for seq := range perKey {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			req := binaryEvent(fmt.Sprintf("%s-%d", key, seq), "t")
			req.Headers["Ce-Partitionkey"] = key
			req.Headers["Ce-Subject"] = fmt.Sprint(seq)
			if code, _, body := r.send(t, "/default/durable", req); code != 202 {
				t.Fatalf("send: %d %s", code, body)
			}
			if partitionOf(key) != stuck {
				elsewhere++
			}
		}
	}
	if elsewhere == 0 {
		t.Fatal("every key hashes to the stuck partition; choose other keys")
	}
	// Everything not on the stuck partition arrives while k0's first event hangs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, rq := range sub.requests() {
			if partitionOf(fmt.Sprint(rq.Event.Extensions()["partitionkey"])) != stuck {
				n++
			}
		}
		if n == elsewhere {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events of the other partitions arrived while partition %d was stuck", n, elsewhere, stuck)
		}
		time.Sleep(50 * time.Millisecond)
	}
	free()
	got := sub.waitFor(t, keys*perKey, 30*time.Second)
	next := map[string]int{}
	for _, rq := range got {
		key := fmt.Sprint(rq.Event.Extensions()["partitionkey"])
		if seq := rq.Event.Subject(); seq != fmt.Sprint(next[key]) {
			t.Fatalf("key %s: got seq %s, want %d", key, seq, next[key])
		}
		next[key]++
	}
}
