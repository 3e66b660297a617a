package broker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// TestRedriveGoesThroughTheDurableLog (issue #18, item 4): a redrive on a Kafka-class broker ran
// the event from memory only and took it off the failed list at once, so a crash before the new
// run ended lost it from the list with no outcome to show for it. Now the redrive is appended to
// the broker's log addressed to its trigger only, and the old outcome leaves the failed list only
// once the new run's outcome is durable; the log is told the event is done after that.
func TestRedriveGoesThroughTheDurableLog(t *testing.T) {
	var healthy atomic.Bool
	var calls atomic.Int32
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		if !healthy.Load() {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer sub.Close()
	var otherCalls atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { otherCalls.Add(1) }))
	defer other.Close()

	log := &windowedLog{ch: make(chan *router.Envelope, 10)}
	store := &slowStore{Store: memstore.New(100)}
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: store, Metrics: metrics.New(),
		OpenLog: func(*config.Broker, *config.Config) (router.BrokerLog, error) { return log, nil }})
	r.Apply(testConfig(t, sub.URL, fmt.Sprintf(`---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: other, namespace: ns}
spec:
  broker: b
  subscriber: {uri: %s}
`, other.URL)))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	ref := router.TriggerRef{Namespace: "ns", Name: "t"}
	failedList := func() int {
		out, _, err := store.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: ref, OnlyFailed: true})
		if err != nil {
			t.Fatal(err)
		}
		return len(out)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("k1", "wanted", nil)}); err != nil {
		t.Fatal(err)
	}
	waitUntil("the failed outcome and the other trigger's delivery", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return len(store.waiting) == 2
	})
	store.makeDurable()
	if failedList() != 1 || log.done.Load() != 1 {
		t.Fatalf("before the redrive: %d on the failed list, done %d; want 1 and 1", failedList(), log.done.Load())
	}

	healthy.Store(true)
	n, err := r.Redrive(context.Background(), ref, router.RedriveQuery{})
	if err != nil || n != 1 {
		t.Fatalf("Redrive: %d, %v", n, err)
	}
	waitUntil("the redriven delivery", func() bool { return calls.Load() == 2 })
	time.Sleep(50 * time.Millisecond)
	if failedList() != 1 {
		t.Error("the redriven event left the failed list before its new run's outcome was durable: a crash now would lose it")
	}
	if log.done.Load() != 1 {
		t.Error("the log was told the redrive is done before its outcome was durable")
	}
	store.makeDurable()
	waitUntil("the old outcome off the failed list, then done", func() bool { return failedList() == 0 && log.done.Load() == 2 })
	if n := otherCalls.Load(); n != 1 {
		t.Errorf("the other trigger got %d deliveries, want 1: a redrive is addressed to its own trigger only", n)
	}
	// The trigger's health settles (issue #33, item 4): the failure was redriven and delivered.
	for _, st := range r.Triggers() {
		if st.Name == "t" && (st.Failed != 1 || st.Delivered != 1 || st.Redriven != 1 || st.NotDelivered != 0) {
			t.Errorf("after the redrive: failed %d, delivered %d, redriven %d, not delivered %d; want 1, 1, 1, 0", st.Failed, st.Delivered, st.Redriven, st.NotDelivered)
		}
	}
}
