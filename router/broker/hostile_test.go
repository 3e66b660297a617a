package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// panickyTransport panics for events whose id starts with "boom", and forwards the others.
type panickyTransport struct{ next http.RoundTripper }

func (p panickyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasPrefix(req.Header.Get("Ce-Id"), "boom") {
		panic("a library bug meets an unforeseen event")
	}
	return p.next.RoundTrip(req)
}

// TestDeliveryPanicIsContained: a panic on an event's delivery path used to end the process (and
// lose every queued event); now it fails that one event, recorded with the panic for redrive, and
// the router goes on delivering the others.
func TestDeliveryPanicIsContained(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer sub.Close()
	results := memstore.New(100)
	r := New(Options{Logger: zap.NewNop(), Results: results, Metrics: metrics.New(),
		Deliverer: delivery.New(delivery.Options{Transport: panickyTransport{delivery.NewTransport(0)}})})
	r.Apply(testConfig(t, sub.URL, ""))
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	for _, id := range []string{"boom-1", "ok-1", "boom-2", "ok-2"} {
		if err := r.Publish(ctx, ref, []*router.Envelope{ev(id, "wanted", nil)}); err != nil {
			t.Fatal(err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if aborted := r.Shutdown(shutdownCtx); aborted != 0 {
		t.Fatalf("%d events aborted: a panicked task was never released", aborted)
	}
	for id, want := range map[string]router.Status{"boom-1": router.StatusFailed, "boom-2": router.StatusFailed, "ok-1": router.StatusDelivered, "ok-2": router.StatusDelivered} {
		out, _ := results.EventOutcomes(ctx, id)
		if len(out) != 1 || out[0].Status != want {
			t.Fatalf("%s: outcomes %+v, want one %s", id, out, want)
		}
		if want == router.StatusFailed && (!strings.Contains(out[0].LastError, "panicked") || out[0].Event == nil) {
			t.Errorf("%s: failed outcome %+v should name the panic and keep the event", id, out[0])
		}
	}
}

// TestPublishRefusesInvalidStrings: whatever source an event comes from, Publish refuses String
// values the CloudEvents spec excludes (they would reach headers and metric labels).
func TestPublishRefusesInvalidStrings(t *testing.T) {
	r := newRouter(memstore.New(10))
	r.Apply(testConfig(t, "http://127.0.0.1:1", ""))
	defer r.Shutdown(context.Background())
	err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("1", "ok", nil), ev("2", "bad\xff", nil)})
	if !errors.Is(err, router.ErrInvalidEvent) || !strings.Contains(err.Error(), "batch event 1") {
		t.Fatalf("got %v, want ErrInvalidEvent naming batch event 1", err)
	}
}

// TestInMemoryBrokersAreBoundedByBytes (issue #16, items 5 and 12): the queue used to be bounded
// by count only (10,000 events of up to 5 MiB each), and a batch larger than the queue was
// answered 429 for ever. Now the events in-memory brokers hold are bounded in bytes too (429 when
// full, given back as events finish), and what can never fit is ErrTooLarge (413).
func TestInMemoryBrokersAreBoundedByBytes(t *testing.T) {
	release := make(chan struct{})
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-release }))
	defer sub.Close()
	r := newRouter(memstore.New(100))
	cfg := testConfig(t, sub.URL, "")
	cfg.Settings.QueueSize = 10
	cfg.Settings.MaxUnfinishedBytes = 3 << 20
	r.Apply(cfg)
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	big := func(id string) *router.Envelope {
		env := ev(id, "wanted", nil)
		env.Event.DataEncoded = make([]byte, 1<<20)
		return env
	}
	for _, id := range []string{"a", "b"} {
		if err := r.Publish(ctx, ref, []*router.Envelope{big(id)}); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
	}
	if err := r.Publish(ctx, ref, []*router.Envelope{big("c")}); !errors.Is(err, router.ErrQueueFull) {
		t.Fatalf("a third MiB past a 3 MiB bound: %v, want ErrQueueFull", err)
	}
	if got := r.UnfinishedBytes(); got < 2<<20 || got > 3<<20 {
		t.Errorf("%d bytes counted for two 1 MiB events", got)
	}
	if err := r.Publish(ctx, ref, []*router.Envelope{big("x"), big("y"), big("z"), big("w")}); !errors.Is(err, router.ErrTooLarge) {
		t.Errorf("a batch larger than the whole bound: %v, want ErrTooLarge", err)
	}
	batch := make([]*router.Envelope, 11)
	for i := range batch {
		batch[i] = ev(fmt.Sprint("q", i), "other", nil)
	}
	if err := r.Publish(ctx, ref, batch); !errors.Is(err, router.ErrTooLarge) || !strings.Contains(err.Error(), "queue of 10") {
		t.Errorf("a batch larger than the queue: %v, want ErrTooLarge naming the queue size", err)
	}
	close(release)
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if aborted := r.Shutdown(shutdownCtx); aborted != 0 {
		t.Fatalf("%d aborted", aborted)
	}
	if got := r.UnfinishedBytes(); got != 0 {
		t.Errorf("%d bytes still counted after every event finished", got)
	}
}

// TestReplyFanOutIsBounded (issue #16, item 8): two triggers whose subscribers both reply double
// the events at every hop; the TTL (255 hops) bounds depth, not width, and one seed event used to
// fill the queue in seconds. The reply budget caps what one event's lineage adds to the broker.
func TestReplyFanOutIsBounded(t *testing.T) {
	var deliveries atomic.Int64
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := deliveries.Add(1)
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Id", fmt.Sprint("reply-", n))
		w.Header().Set("Ce-Source", "/fn")
		w.Header().Set("Ce-Type", "echo")
		w.WriteHeader(http.StatusOK)
	}))
	defer sub.Close()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  ingress: {maxRepliesPerEvent: 100}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: one, namespace: ns}
spec: {broker: b, subscriber: {uri: "%[1]s"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: two, namespace: ns}
spec: {broker: b, subscriber: {uri: "%[1]s"}}
`, sub.URL)))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: memstore.New(1000), Metrics: m})
	r.Apply(cfg)
	if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("seed", "echo", nil)}); err != nil {
		t.Fatal(err)
	}
	// Wait until nothing moves any more, then stop.
	for last := int64(-1); ; {
		time.Sleep(200 * time.Millisecond)
		if n := deliveries.Load(); n == last {
			break
		} else {
			last = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.Shutdown(ctx)
	// The seed and at most 100 replies, each delivered to both triggers.
	if n := deliveries.Load(); n > 2*101 || n < 2*50 {
		t.Fatalf("%d deliveries from one seed event with a budget of 100 replies", n)
	}
	t.Logf("%d deliveries from one seed event", deliveries.Load())
	var delivered uint64
	for _, ts := range r.Triggers() {
		delivered += ts.Delivered
	}
	if delivered != uint64(deliveries.Load()) {
		t.Errorf("triggers report %d delivered, subscriber saw %d", delivered, deliveries.Load())
	}
}

// TestSlowTriggerDoesNotStallItsBroker (issue #18, item 8): one trigger's subscriber that never
// answers used to fill its lane, then block the broker's dispatch, so the broker's other triggers
// got nothing more and producers got 429. Now what the stuck trigger cannot take is recorded as
// failed (kept for redrive, counted) and its siblings go on.
func TestSlowTriggerDoesNotStallItsBroker(t *testing.T) {
	stuck := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-stuck }))
	defer slow.Close()
	var fastHits atomic.Int32
	fast := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { fastHits.Add(1) }))
	defer fast.Close()
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  triggers: {concurrency: 1, pending: 2}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: slow, namespace: ns}
spec: {broker: b, subscriber: {uri: "%s"}, delivery: {retry: 0}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: fast, namespace: ns}
spec: {broker: b, subscriber: {uri: "%s"}}
`, slow.URL, fast.URL)))
	if err != nil {
		t.Fatal(err)
	}
	results := memstore.New(1000)
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: results, Metrics: metrics.New()})
	r.Apply(cfg)
	defer func() {
		close(stuck)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	const n = 20
	for i := range n {
		if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev(fmt.Sprint("e", i), "t", nil)}); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond) // a pace the healthy subscriber keeps up with
	}
	deadline := time.Now().Add(10 * time.Second)
	for fastHits.Load() < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := fastHits.Load(); got != n {
		t.Fatalf("the healthy trigger got %d of %d events while its sibling was stuck", got, n)
	}
	var overflowed int
	for _, ts := range r.Triggers() {
		if ts.Name == "slow" {
			overflowed = int(ts.Failed)
		}
	}
	if overflowed != n-3 { // one delivering, two waiting (concurrency 1 + pending 2); the 4th waited pendingWait, the rest at once
		t.Errorf("%d events recorded as failed at the stuck trigger, want %d", overflowed, n-3)
	}
	out, _ := results.EventOutcomes(context.Background(), "e19")
	found := false
	for _, o := range out {
		if o.Trigger.Name == "slow" && o.Status == router.StatusFailed && o.Event != nil && strings.Contains(o.LastError, "not keeping up") {
			found = true
		}
	}
	if !found {
		t.Errorf("e19 at the stuck trigger: %+v, want a failed outcome saying the trigger is not keeping up, kept for redrive", out)
	}
}

// windowedLog is a durable-log stand-in: Run hands appended envelopes over with a done that counts.
type windowedLog struct {
	ch   chan *router.Envelope
	done atomic.Int32
}

func (l *windowedLog) Append(_ context.Context, envs []*router.Envelope) error {
	for _, e := range envs {
		l.ch <- e
	}
	return nil
}
func (l *windowedLog) Run(ctx context.Context, h router.Handler) {
	for {
		select {
		case env, ok := <-l.ch:
			if !ok {
				return
			}
			h.Handle(ctx, env, func() { l.done.Add(1) })
		case <-ctx.Done():
			return
		}
	}
}
func (l *windowedLog) Close()                 { close(l.ch) }
func (l *windowedLog) Len() int               { return len(l.ch) }
func (l *windowedLog) BoundsUnfinished() bool { return true }

// slowStore is a DurableStore whose outcomes become durable only when told.
type slowStore struct {
	*memstore.Store
	mu      sync.Mutex
	waiting []func()
}

func (s *slowStore) RecordThen(o *router.Outcome, durable func()) {
	s.Record(o)
	s.mu.Lock()
	s.waiting = append(s.waiting, durable)
	s.mu.Unlock()
}

func (s *slowStore) makeDurable() int {
	s.mu.Lock()
	w := s.waiting
	s.waiting = nil
	s.mu.Unlock()
	for _, f := range w {
		f()
	}
	return len(w)
}

// TestDurableLogWaitsForDurableOutcomes (issue #18, item 1): a Kafka-class broker committed an
// event's offset once its outcomes were final, though the Cassandra store had them only in a
// buffer: a kill -9 then lost the only record of a failed event. The log's done now comes only once
// the store says every outcome of the event is durable.
func TestDurableLogWaitsForDurableOutcomes(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadRequest) }))
	defer sub.Close()
	log := &windowedLog{ch: make(chan *router.Envelope, 10)}
	store := &slowStore{Store: memstore.New(100)}
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: store, Metrics: metrics.New(),
		OpenLog: func(*config.Broker, *config.Config) (router.BrokerLog, error) { return log, nil }})
	r.Apply(testConfig(t, sub.URL, ""))
	if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("k1", "wanted", nil)}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	waiting := func() int {
		store.mu.Lock()
		defer store.mu.Unlock()
		return len(store.waiting)
	}
	for waiting() == 0 && time.Now().Before(deadline) { // the failed outcome is recorded
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := log.done.Load(); n != 0 {
		t.Fatalf("the log was told the event is done (its offset committed) before its outcome was durable")
	}
	if store.makeDurable() != 1 {
		t.Fatal("no outcome waited for durability")
	}
	if n := log.done.Load(); n != 1 {
		t.Errorf("done called %d times once the outcome was durable, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.Shutdown(ctx)
}
