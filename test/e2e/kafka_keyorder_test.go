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

// TestKafkaOrderedPerKey: an ordered trigger on a one-partition Kafka-class broker, whose
// subscriber fails the first 5 attempts of one key's first event: every other key of the
// partition is delivered meanwhile, each key's events arrive in order, and each event once.
// (Before, the failing event blocked its whole partition.)
func TestKafkaOrderedPerKey(t *testing.T) {
	kafka := testenv.Kafka(t)
	var mu sync.Mutex
	delivered := map[string][]string{}
	var order []string
	failures := 0
	sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Event == nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		key, _ := req.Event.Extensions()["partitionkey"].(string)
		mu.Lock()
		defer mu.Unlock()
		if key == "stuck" && req.Event.Subject() == "0" && failures < 5 {
			failures++
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		delivered[key] = append(delivered[key], req.Event.Subject())
		order = append(order, key+"/"+req.Event.Subject())
		w.WriteHeader(http.StatusOK)
	})
	topic := fmt.Sprintf("e2e-key-order-%d", time.Now().UnixNano())
	manifests := kafkaBroker("durable", topic) + `apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: ordered
  namespace: default
  annotations:
    kafka.eventing.knative.dev/delivery.order: ordered
spec:
  broker: durable
  subscriber:
    uri: ` + sub.URL + `
  delivery: {retry: 6, backoffPolicy: linear, backoffDelay: PT0.3S}
---
`
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 1\n", kafka)
	r := startRouterIn(t, t.TempDir(), manifests, "", spec)
	keys := []string{"stuck", "a", "b", "c", "d"}
	const perKey = 20
	var batch strings.Builder
	batch.WriteString("[")
	for seq := range perKey {
		for i, k := range keys {
			if seq > 0 || i > 0 {
				batch.WriteString(",")
			}
			fmt.Fprintf(&batch, `{"specversion":"1.0","id":"%s-%d","source":"/s","type":"t","subject":"%d","partitionkey":"%s"}`, k, seq, seq, k)
		}
	}
	batch.WriteString("]")
	if code, _, body := r.send(t, "/default/durable", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: batch.String()}); code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("batch: %d %s", code, body)
	}
	total := func() int { mu.Lock(); defer mu.Unlock(); return len(order) }
	for deadline := time.Now().Add(60 * time.Second); total() < perKey*len(keys); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered", total(), perKey*len(keys))
		}
	}
	time.Sleep(500 * time.Millisecond) // nothing more may come
	mu.Lock()
	defer mu.Unlock()
	var want []string
	for seq := range perKey {
		want = append(want, fmt.Sprint(seq))
	}
	for _, k := range keys {
		if got := strings.Join(delivered[k], ","); got != strings.Join(want, ",") {
			t.Errorf("key %s: delivered %s, want 0 to %d in order, once each", k, got, perKey-1)
		}
	}
	// The other keys all went through while the stuck key's first event was failing (5 backoffs
	// of 0.3 s).
	for i, d := range order {
		if d == "stuck/0" && i != len(order)-perKey {
			t.Errorf("the stuck key's first event arrived %d of %d: the other keys waited for it: %v", i, len(order), order)
		}
	}
	if failures != 5 {
		t.Errorf("%d failed attempts, want 5", failures)
	}
}
