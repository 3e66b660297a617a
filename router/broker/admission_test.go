package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/memstore"
)

// acquireAsync starts acquire(n) and returns where its result arrives.
func acquireAsync(a *admission, ctx context.Context, n int) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- a.acquire(ctx, n) }()
	return ch
}

func waitingFor(t *testing.T, a *admission, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		a.mu.Lock()
		w := len(a.waiters)
		a.mu.Unlock()
		if w == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", w, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func expectPending(t *testing.T, ch <-chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned (%v) while it should wait", what, err)
	case <-time.After(20 * time.Millisecond):
	}
}

func expectResult(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still waits", what)
		return nil
	}
}

func TestAdmissionWaitsInOrderForRoom(t *testing.T) {
	a := &admission{}
	a.configure(3, time.Minute)
	ctx := context.Background()
	if err := a.acquire(ctx, 2); err != nil {
		t.Fatal(err)
	}
	batch := acquireAsync(a, ctx, 2) // 2 + 2 > 3: waits
	waitingFor(t, a, 1)
	single := acquireAsync(a, ctx, 1) // would fit, but must not overtake the batch ahead of it
	waitingFor(t, a, 2)
	expectPending(t, single, "a single event behind a waiting batch")
	a.release(1) // 1 + 2 fits: the batch goes, then the single does not fit (3 + 1)
	if err := expectResult(t, batch, "the batch"); err != nil {
		t.Fatal(err)
	}
	expectPending(t, single, "a single event with the broker full")
	a.release(1)
	if err := expectResult(t, single, "the single event"); err != nil {
		t.Fatal(err)
	}
	if got := a.unfinished(); got != 3 {
		t.Errorf("unfinished %d, want 3", got)
	}
}

func TestAdmissionRefusesAfterTheWait(t *testing.T) {
	a := &admission{}
	a.configure(1, 50*time.Millisecond)
	ctx := context.Background()
	if err := a.acquire(ctx, 1); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := a.acquire(ctx, 1)
	if !errors.Is(err, router.ErrQueueFull) || !strings.Contains(err.Error(), "max-in-flight") {
		t.Fatalf("full broker after the wait: %v, want ErrQueueFull naming max-in-flight", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("refused after %s, before the 50ms wait", d)
	}
	// A producer that goes away stops waiting with its context's error.
	cctx, cancel := context.WithCancel(ctx)
	gone := acquireAsync(a, cctx, 1)
	waitingFor(t, a, 1)
	cancel()
	if err := expectResult(t, gone, "a cancelled producer"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled producer: %v", err)
	}
	waitingFor(t, a, 0)
	if got := a.unfinished(); got != 1 {
		t.Errorf("unfinished %d after refusals, want 1", got)
	}
}

func TestAdmissionLimitChangesAndClose(t *testing.T) {
	a := &admission{}
	a.configure(1, time.Minute)
	ctx := context.Background()
	// A batch larger than the limit gets in when nothing else is held, and is not refused.
	if err := a.acquire(ctx, 5); err != nil {
		t.Fatal(err)
	}
	next := acquireAsync(a, ctx, 1)
	waitingFor(t, a, 1)
	a.configure(0, time.Minute) // no limit: the waiter goes
	if err := expectResult(t, next, "a waiter after the limit is lifted"); err != nil {
		t.Fatal(err)
	}
	a.configure(2, time.Minute)
	a.take(1) // a reply: counted, never waits, even over the limit
	if got := a.unfinished(); got != 7 {
		t.Errorf("unfinished %d, want 7", got)
	}
	last := acquireAsync(a, ctx, 1)
	waitingFor(t, a, 1)
	a.close()
	if err := expectResult(t, last, "a waiter at close"); !errors.Is(err, router.ErrUnavailable) {
		t.Errorf("waiter at close: %v", err)
	}
	if err := a.acquire(ctx, 1); !errors.Is(err, router.ErrUnavailable) {
		t.Errorf("acquire after close: %v", err)
	}
}

// maxInFlightConfig is broker ns/b (annotated with max-in-flight) with trigger t taking type
// "wanted" to subscriber, and the given wait for room.
func maxInFlightConfig(t *testing.T, max int, wait, subscriber string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  ingress: {maxInFlightWait: %s}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: b
  namespace: ns
  annotations: {%s: "%d"}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  broker: b
  filter: {attributes: {type: wanted}}
  subscriber: {uri: "%s"}
  delivery: {retry: 0}
`, wait, config.AnnotationMaxInFlight, max, subscriber)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestMaxInFlightPacesProducers: with max-in-flight 2 and a subscriber that holds its answers, a
// third publish waits until an event is delivered, then is accepted; with nothing finishing it is
// refused after the wait; events no trigger wants are final at once and free their place.
func TestMaxInFlightPacesProducers(t *testing.T) {
	hold := make(chan struct{})
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-hold
	}))
	defer sub.Close()
	r := newRouter(memstore.New(100))
	r.Apply(maxInFlightConfig(t, 2, "300ms", sub.URL))
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	publish := func(id, typ string) <-chan error {
		ch := make(chan error, 1)
		go func() { ch <- r.Publish(ctx, ref, []*router.Envelope{ev(id, typ, nil)}) }()
		return ch
	}
	for i := 0; i < 5; i++ { // filtered out: final at once, never held
		if err := expectResult(t, publish(fmt.Sprint("skip", i), "other"), "a filtered-out event"); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"1", "2"} {
		if err := expectResult(t, publish(id, "wanted"), "an event with room"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := <-publish("refused", "wanted"); !errors.Is(err, router.ErrQueueFull) {
		t.Fatalf("publish with 2 in flight and none finishing: %v, want ErrQueueFull", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("refused after %s, before the 300ms wait", d)
	}
	third := publish("3", "wanted")
	expectPending(t, third, "a publish with 2 in flight")
	hold <- struct{}{} // the subscriber answers one event
	if err := expectResult(t, third, "a publish after a delivery"); err != nil {
		t.Fatal(err)
	}
	close(hold)
	waitDelivered(t, r, 3)
	b := (*r.brokers.Load())[ref]
	deadline := time.Now().Add(5 * time.Second)
	for b.admit.unfinished() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events still counted in after every one is final", b.admit.unfinished())
		}
		time.Sleep(5 * time.Millisecond)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r.Shutdown(sctx)
}

// TestMaxInFlightRepliesDoNotWait: with max-in-flight 1, a subscriber's reply is admitted although
// its original holds the only place; waiting for it would never end before the original does.
func TestMaxInFlightRepliesDoNotWait(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Ce-Type") != "wanted" {
			return
		}
		w.Header().Set("Ce-Id", "reply-1")
		w.Header().Set("Ce-Source", "/replier")
		w.Header().Set("Ce-Type", "wanted.reply")
		w.Header().Set("Ce-Specversion", "1.0")
		w.WriteHeader(http.StatusOK)
	}))
	defer sub.Close()
	results := memstore.New(100)
	r := newRouter(results)
	r.Apply(maxInFlightConfig(t, 1, "10s", sub.URL))
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	start := time.Now()
	if err := r.Publish(ctx, ref, []*router.Envelope{ev("orig", "wanted", nil)}); err != nil {
		t.Fatal(err)
	}
	b := (*r.brokers.Load())[ref]
	deadline := time.Now().Add(5 * time.Second)
	for b.events.Load() < 2 || b.admit.unfinished() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("events dispatched %d (want the original and its reply), %d still counted in", b.events.Load(), b.admit.unfinished())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the reply took %s: it waited for room", d)
	}
	out, _ := results.EventOutcomes(ctx, "orig")
	if len(out) != 1 || out[0].Status != router.StatusDelivered {
		t.Errorf("original: %+v, want delivered with its reply published", out)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r.Shutdown(sctx)
}
