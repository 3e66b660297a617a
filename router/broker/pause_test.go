package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
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

func pausedBrokerConfig(t *testing.T, pausedURL, otherURL, annotation string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  triggers: {concurrency: 1, pending: 4, pendingWait: 50ms}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: held, namespace: ns%s}
spec: {broker: b, subscriber: {uri: "%s"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: other, namespace: ns}
spec: {broker: b, subscriber: {uri: "%s"}}
`, annotation, pausedURL, otherURL)))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func status(r *Router, name string) TriggerStatus {
	for _, s := range r.Triggers() {
		if s.Name == name {
			return s
		}
	}
	return TriggerStatus{}
}

// A trigger paused by an operator gets nothing while paused, holds its bounded backlog (past it,
// events are recorded as failed, saying it is paused), and gets the backlog once resumed; its
// sibling is not held back. A reload keeps the operator's pause.
func TestPauseHoldsOneTriggerOnly(t *testing.T) {
	var heldHits, otherHits atomic.Int32
	held := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { heldHits.Add(1) }))
	defer held.Close()
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { otherHits.Add(1) }))
	defer other.Close()
	results := memstore.New(1000)
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: results, Metrics: metrics.New()})
	cfg := pausedBrokerConfig(t, held.URL, other.URL, "")
	r.Apply(cfg)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	ref := router.TriggerRef{Namespace: "ns", Name: "held"}
	if err := r.PauseTrigger(ref); err != nil {
		t.Fatal(err)
	}
	r.Apply(cfg) // a reload keeps an operator's pause
	if s := status(r, "held"); !s.Paused || s.PausedBy != "operator" {
		t.Fatalf("status after pause and reload: paused %v by %q", s.Paused, s.PausedBy)
	}
	const n = 12
	for i := range n {
		if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev(fmt.Sprint("e", i), "t", nil)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	waitUntil(t, func() bool { return otherHits.Load() == n })
	time.Sleep(200 * time.Millisecond)
	if got := heldHits.Load(); got != 0 {
		t.Fatalf("the paused trigger got %d deliveries", got)
	}
	// concurrency 1 + pending 4 wait; the other 7 are recorded as failed, saying why.
	waitUntil(t, func() bool { return status(r, "held").Failed == n-5 })
	failed, _, err := results.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: ref, OnlyFailed: true})
	if err != nil || len(failed) == 0 || !strings.Contains(failed[0].LastError, "the trigger is paused (by its operator)") {
		t.Fatalf("failed outcomes %v %v, want them to say the trigger is paused", failed, err)
	}
	if err := r.ResumeTrigger(ref); err != nil {
		t.Fatal(err)
	}
	// The subscriber's fifth answer comes before its outcome is recorded: wait for both.
	waitUntil(t, func() bool { return heldHits.Load() == 5 && status(r, "held").Delivered == 5 })
	if s := status(r, "held"); s.Paused || s.Delivered != 5 {
		t.Fatalf("after resume: paused %v, delivered %d; want running, 5", s.Paused, s.Delivered)
	}
}

// A trigger paused by its manifest cannot be resumed by an operator; removing the annotation
// resumes it.
func TestPausedByManifest(t *testing.T) {
	var hits atomic.Int32
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer sub.Close()
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: memstore.New(100), Metrics: metrics.New()})
	r.Apply(pausedBrokerConfig(t, sub.URL, sub.URL, `, annotations: {switchyard.dev/paused: "true"}`))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	ref := router.TriggerRef{Namespace: "ns", Name: "held"}
	if err := r.ResumeTrigger(ref); !errors.Is(err, ErrPausedByManifest) {
		t.Fatalf("resume of a trigger its manifest pauses: %v", err)
	}
	if err := r.ResumeTrigger(router.TriggerRef{Namespace: "ns", Name: "nope"}); !errors.Is(err, ErrTriggerNotFound) {
		t.Fatalf("resume of an unknown trigger: %v", err)
	}
	if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("m1", "t", nil)}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return hits.Load() == 1 }) // the other trigger
	if s := status(r, "held"); !s.Paused || s.PausedBy != "manifest" {
		t.Fatalf("status: paused %v by %q", s.Paused, s.PausedBy)
	}
	r.Apply(pausedBrokerConfig(t, sub.URL, sub.URL, ""))
	waitUntil(t, func() bool { return hits.Load() == 2 })
}

func waitUntil(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// heldCopies counts what is held and knows the oldest copy still held, whatever order copies
// finish in.
func TestHeldCopiesOldest(t *testing.T) {
	var h heldCopies
	base := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for i := range 4 {
		h.add(&router.Envelope{Offset: int64(10 + i), Received: base.Add(time.Duration(i) * time.Second)})
	}
	h.release(&router.Envelope{Offset: 11})
	h.release(&router.Envelope{Offset: 13})
	if n, at := h.n.Load(), h.oldest(); n != 2 || !at.Equal(base) {
		t.Fatalf("after releasing 11 and 13: %d held, oldest %v; want 2, %v", n, at, base)
	}
	h.release(&router.Envelope{Offset: 10})
	if at := h.oldest(); !at.Equal(base.Add(2 * time.Second)) {
		t.Fatalf("after releasing 10: oldest %v, want the copy of offset 12", at)
	}
	h.release(&router.Envelope{Offset: 12})
	if n, at := h.n.Load(), h.oldest(); n != 0 || !at.IsZero() {
		t.Fatalf("all released: %d held, oldest %v", n, at)
	}
}

// An in-memory trigger's lag is its backlog, and its age that of the oldest event waiting.
func TestPausedTriggerLagInMemory(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer sub.Close()
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: memstore.New(100), Metrics: metrics.New()})
	r.Apply(pausedBrokerConfig(t, sub.URL, sub.URL, `, annotations: {switchyard.dev/paused: "true"}`))
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	for i := range 3 {
		if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev(fmt.Sprint("l", i), "t", nil)}); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return status(r, "other").Delivered == 3 && status(r, "held").LagRecords == 3 })
	time.Sleep(1100 * time.Millisecond) // the oldest waiting event is now more than a second old
	for _, l := range r.TriggerLags() {
		if l.Trigger == "held" && l.Seconds < 1 {
			t.Errorf("lag of the paused trigger: %v s, want the age of its oldest waiting event", l.Seconds)
		}
		if l.Trigger == "other" && l.Records != 0 {
			t.Errorf("lag of the running trigger: %d records", l.Records)
		}
	}
}
