package kafka

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/memstore"
)

func testSource(sink config.Sink, p router.Publisher) *source {
	cfg := &config.KafkaSource{Namespace: "ns", Name: "orders", Sink: sink, Extensions: map[string]string{"team": "shop"}}
	m := NewManager(p, delivery.New(delivery.Options{}), memstore.New(100), zap.NewNop(), "")
	return &source{cfg: cfg, m: m, logger: zap.NewNop()}
}

// TestRecordMapping: a record that is no CloudEvent becomes one as Knative's KafkaSource makes it;
// a binary-mode CloudEvent record passes through; binary keys are carried as base64, since a
// CloudEvents String cannot hold arbitrary bytes.
func TestRecordMapping(t *testing.T) {
	s := testSource(config.Sink{}, nil)
	at := time.Unix(1_800_000_000, 0)
	raw := &sarama.ConsumerMessage{Topic: "orders", Partition: 2, Offset: 41, Key: []byte("customer-7"), Value: []byte(`{"a":1}`), Timestamp: at,
		Headers: []*sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte("application/json")}}}
	e, err := s.toEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID() != "partition:2/offset:41" || e.Type() != "dev.knative.kafka.event" || e.Source() != "/apis/v1/namespaces/ns/kafkasources/orders#orders" ||
		e.Subject() != "partition:2#41" || !e.Time().Equal(at) || e.Extensions()["key"] != "customer-7" || e.Extensions()["team"] != "shop" ||
		e.DataContentType() != "application/json" || string(e.Data()) != `{"a":1}` {
		t.Errorf("wrapped record: %v", e)
	}
	binaryKey := &sarama.ConsumerMessage{Topic: "orders", Key: []byte{0xff, 0x00, 0x10}, Value: []byte("x")}
	if e, err := s.toEvent(binaryKey); err != nil || e.Extensions()["key"] != "/wAQ" {
		t.Errorf("binary key: %v %v", e, err)
	}
	ce := &sarama.ConsumerMessage{Topic: "orders", Value: []byte("hi"), Headers: []*sarama.RecordHeader{
		{Key: []byte("ce_specversion"), Value: []byte("1.0")}, {Key: []byte("ce_id"), Value: []byte("ce-1")},
		{Key: []byte("ce_source"), Value: []byte("/app")}, {Key: []byte("ce_type"), Value: []byte("com.example")},
		{Key: []byte("content-type"), Value: []byte("text/plain")}}}
	if e, err := s.toEvent(ce); err != nil || e.ID() != "ce-1" || e.Type() != "com.example" || string(e.Data()) != "hi" || e.Extensions()["kafkaoffset"] != nil {
		t.Errorf("CloudEvent record: %v %v", e, err)
	}
	hostile := &sarama.ConsumerMessage{Topic: "orders", Value: []byte("x"), Headers: []*sarama.RecordHeader{
		{Key: []byte("ce_specversion"), Value: []byte("1.0")}, {Key: []byte("ce_id"), Value: []byte("h-1")},
		{Key: []byte("ce_source"), Value: []byte("/app")}, {Key: []byte("ce_type"), Value: []byte("com.example.\xff")}}}
	if _, err := s.toEvent(hostile); !errors.Is(err, router.ErrInvalidEvent) {
		t.Errorf("a record whose type is not UTF-8: %v, want ErrInvalidEvent (passed over, not sent)", err)
	}
}

// fakePublisher answers each Publish with the next error of its script (then nil).
type fakePublisher struct {
	mu     sync.Mutex
	script []error
	calls  int
}

func (f *fakePublisher) HasBroker(router.BrokerRef) bool { return true }
func (f *fakePublisher) Publish(context.Context, router.BrokerRef, []*router.Envelope) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.script) == 0 {
		return nil
	}
	err := f.script[0]
	f.script = f.script[1:]
	return err
}

// TestSendRetriesOnlyWhatMaySucceed: a full or unavailable broker (and a broker not found, while a
// reload is under way) is retried until it takes the event; a refusal for good (an invalid event,
// an exhausted TTL, a 4xx from a URI sink) ends the retries at once, where it used to stall the
// partition for ever.
func TestSendRetriesOnlyWhatMaySucceed(t *testing.T) {
	broker := &router.BrokerRef{Namespace: "ns", Name: "b"}
	e, _ := testSource(config.Sink{}, nil).toEvent(&sarama.ConsumerMessage{Topic: "t", Value: []byte("x")})
	ctx := context.Background()

	p := &fakePublisher{script: []error{router.ErrQueueFull, router.ErrUnavailable, router.ErrBrokerNotFound}}
	if _, err := testSource(config.Sink{Broker: broker}, p).send(ctx, e); err != nil || p.calls != 4 {
		t.Errorf("pushed back three times: %v after %d calls, want delivered on the 4th", err, p.calls)
	}
	p = &fakePublisher{script: []error{router.ErrTTLExpired}}
	if _, err := testSource(config.Sink{Broker: broker}, p).send(ctx, e); !errors.Is(err, router.ErrTTLExpired) || p.calls != 1 {
		t.Errorf("TTL exhausted: %v after %d calls, want it returned at once", err, p.calls)
	}

	var hits sync.Map
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := hits.LoadOrStore(r.URL.Path, new(int))
		*n.(*int)++
		if r.URL.Path == "/refuses" {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
	}))
	defer sink.Close()
	if _, err := testSource(config.Sink{URI: sink.URL + "/refuses"}, nil).send(ctx, e); router.IsRetryable(err) || err == nil {
		t.Errorf("a 422 from the URI sink: %v, want a permanent error", err)
	}
	if _, err := testSource(config.Sink{URI: sink.URL + "/ok"}, nil).send(ctx, e); err != nil {
		t.Errorf("the URI sink: %v", err)
	}
}

// TestRefusedRecordsAreRecorded (issue #18, item 6): a record the sink refused for good, or after
// the retries of spec.delivery, was logged and passed over: no trace in the result store, no
// dead-letter sink. Now it is dead-lettered under Knative's spec.delivery, or recorded as failed
// with its event, and a redrive sends it again once the sink is fixed, taking it off the failed
// list only once the new run is recorded.
func TestRefusedRecordsAreRecorded(t *testing.T) {
	var answer atomic.Int32
	answer.Store(http.StatusUnprocessableEntity)
	var sinkCalls atomic.Int32
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sinkCalls.Add(1)
		w.WriteHeader(int(answer.Load()))
	}))
	defer sink.Close()
	dlsCodes := make(chan string, 10)
	dls := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { dlsCodes <- r.Header.Get("Ce-Knativeerrorcode") }))
	defer dls.Close()
	ctx := context.Background()
	ref := OutcomeRef("ns", "orders")
	outcomes := func(s *source, id string) []router.Outcome {
		out, err := s.m.results.EventOutcomes(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	event := func(s *source, offset int64) *event.Event {
		e, err := s.toEvent(&sarama.ConsumerMessage{Topic: "orders", Offset: offset, Value: []byte("x")})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}

	// Without spec.delivery: refused for good, recorded as failed with its event.
	s := testSource(config.Sink{URI: sink.URL}, nil)
	e := event(s, 1)
	if !s.handle(ctx, e, nil, nil) {
		t.Fatal("handle reported the context ended")
	}
	if out := outcomes(s, e.ID()); len(out) != 1 || out[0].Trigger != ref || out[0].Status != router.StatusFailed || out[0].LastCode != 422 || out[0].Event == nil {
		t.Fatalf("a record the sink refused: outcomes %+v, want one failed (422) at %s keeping its event", out, ref)
	}

	// With spec.delivery: retried as the policy says, then dead-lettered.
	answer.Store(http.StatusServiceUnavailable)
	sinkCalls.Store(0)
	s.cfg.Delivery = &delivery.Policy{Retry: 2, Backoff: delivery.Linear, Delay: time.Millisecond, Timeout: 5 * time.Second, DeadLetterSink: dls.URL}
	e2 := event(s, 2)
	s.handle(ctx, e2, nil, nil)
	if n := sinkCalls.Load(); n != 3 {
		t.Errorf("the sink was tried %d times under retry: 2, want 3", n)
	}
	select {
	case code := <-dlsCodes:
		if code != "503" {
			t.Errorf("the dead-letter sink got knativeerrorcode %q, want 503", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dead-letter sink got nothing")
	}
	if out := outcomes(s, e2.ID()); len(out) != 1 || out[0].Status != router.StatusDeadLettered || out[0].Attempts != 3 {
		t.Errorf("a record dead-lettered after its retries: outcomes %+v, want one dead-lettered after 3 attempts", out)
	}

	// Redrive once the sink is fixed: the failed record goes again, is recorded as delivered, and
	// only then leaves the failed list.
	answer.Store(http.StatusOK)
	s.cfg.Delivery = nil
	s.m.running["ns/orders"] = &running{cfg: s.cfg}
	n, err := s.m.Redrive(ctx, ref, router.RedriveQuery{EventID: e.ID()})
	if err != nil || n != 1 {
		t.Fatalf("Redrive: %d, %v", n, err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		failed, _, _ := s.m.results.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: ref, OnlyFailed: true})
		latest := outcomes(s, e.ID())
		if len(failed) == 1 && failed[0].EventID == e2.ID() && len(latest) == 2 && latest[1].Status == router.StatusDelivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the redrive: failed list %+v, outcomes %+v; want only %s on the list and a delivered run of %s", failed, latest, e2.ID(), e.ID())
		}
	}
	if _, err := s.m.Redrive(ctx, OutcomeRef("ns", "nope"), router.RedriveQuery{}); !errors.Is(err, ErrSourceNotFound) {
		t.Errorf("redrive of an unknown source: %v", err)
	}
}

// blockingStore holds the first RecordThen until released, to catch whoever still records after Stop.
type blockingStore struct {
	*memstore.Store
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (b *blockingStore) RecordThen(o *router.Outcome, durable func()) {
	b.once.Do(func() { close(b.entered); <-b.release })
	b.Store.RecordThen(o, durable)
}

// TestStopWaitsForRedrives (issue #32): Stop returns only after the redrives under way have
// ended, so nothing records into a result store the caller closes next.
func TestStopWaitsForRedrives(t *testing.T) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnprocessableEntity) }))
	defer sink.Close()
	store := &blockingStore{Store: memstore.New(100), entered: make(chan struct{}), release: make(chan struct{})}
	m := NewManager(nil, delivery.New(delivery.Options{}), store, zap.NewNop(), "")
	ref := OutcomeRef("ns", "orders")
	e := event.New()
	e.SetID("r-1")
	e.SetSource("/kafka")
	e.SetType("t")
	store.Store.Record(&router.Outcome{EventID: "r-1", Trigger: ref, Status: router.StatusFailed, Event: &e, Received: time.Now(), Finished: time.Now()})
	m.mu.Lock()
	m.running["ns/orders"] = &running{cfg: &config.KafkaSource{Namespace: "ns", Name: "orders", Sink: config.Sink{URI: sink.URL}}, cancel: func() {}, done: closedChan()}
	m.mu.Unlock()
	if n, err := m.Redrive(context.Background(), ref, router.RedriveQuery{}); err != nil || n != 1 {
		t.Fatalf("redrive: %d %v", n, err)
	}
	<-store.entered // the redrive's new outcome is being recorded
	stopped := make(chan struct{})
	go func() { m.Stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a redrive was still recording")
	case <-time.After(100 * time.Millisecond):
	}
	close(store.release)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return after the redrive ended")
	}
	if _, err := m.Redrive(context.Background(), ref, router.RedriveQuery{}); err == nil {
		t.Error("a redrive after Stop was accepted")
	}
}

func closedChan() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}
