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

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The shared HTTP transport keeps idle connections (and their goroutines) for reuse.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	)
}

func testConfig(t testing.TB, subscriber string, extra string) *config.Config {
	return brokerWithTrigger(t, fmt.Sprintf(`metadata:
  name: t
  namespace: ns
spec:
  broker: b
  filter:
    attributes:
      type: wanted
  subscriber:
    uri: %s
  delivery:
    retry: 0
%s`, subscriber, extra))
}

// brokerWithTrigger parses broker ns/b and one Trigger with the given metadata and spec.
func brokerWithTrigger(t testing.TB, trigger string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
`+trigger))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newRouter(results router.ResultStore) *Router {
	return New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: results, Metrics: metrics.New()})
}

func ev(id, typ string, ext map[string]any) *router.Envelope {
	e := event.New()
	e.SetID(id)
	e.SetSource("/s")
	e.SetType(typ)
	for k, v := range ext {
		e.SetExtension(k, v)
	}
	return &router.Envelope{Event: &e}
}

func TestTakeTTL(t *testing.T) {
	for _, c := range []struct {
		ext     any
		want    int32
		expired bool
	}{
		{nil, 254, false},
		{"10", 9, false},
		{int32(1), 0, false},
		{"0", 0, true},
		{"-4", 0, true},
		{"1000", 254, false}, // capped at the maximum
		{"ten", 0, true},
	} {
		e := ev("1", "t", nil).Event
		if c.ext != nil {
			e.SetExtension(ExtTTL, c.ext)
		}
		got, err := takeTTL(e, 255)
		if c.expired != (err != nil) || (err == nil && got != c.want) {
			t.Errorf("ttl %v: got %d, %v; want %d expired=%v", c.ext, got, err, c.want, c.expired)
		}
		if err != nil && !errors.Is(err, router.ErrTTLExpired) {
			t.Errorf("ttl %v: error %v is not ErrTTLExpired", c.ext, err)
		}
		if _, left := e.Extensions()[ExtTTL]; left && err == nil {
			t.Errorf("ttl %v: the extension stayed in the event", c.ext)
		}
	}
}

func TestPublishRouteRecordShutdown(t *testing.T) {
	var hits atomic.Int32
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Ce-Id") == "fail" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer sub.Close()
	results := memstore.New(100)
	r := newRouter(results)
	r.Apply(testConfig(t, sub.URL, ""))
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	if err := r.Publish(ctx, router.BrokerRef{Namespace: "ns", Name: "nope"}, []*router.Envelope{ev("x", "wanted", nil)}); !errors.Is(err, router.ErrBrokerNotFound) {
		t.Errorf("unknown broker: %v", err)
	}
	for _, e := range []*router.Envelope{ev("ok", "wanted", nil), ev("fail", "wanted", nil), ev("skip", "other", nil)} {
		if err := r.Publish(ctx, ref, []*router.Envelope{e}); err != nil {
			t.Fatal(err)
		}
	}
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if aborted := r.Shutdown(shutdownCtx); aborted != 0 {
		t.Errorf("%d events aborted", aborted)
	}
	if hits.Load() != 2 {
		t.Errorf("subscriber got %d events, want 2", hits.Load())
	}
	for id, want := range map[string]router.Status{"ok": router.StatusDelivered, "fail": router.StatusFailed} {
		out, _ := results.EventOutcomes(ctx, id)
		if len(out) != 1 || out[0].Status != want {
			t.Errorf("%s: outcomes %+v, want %s", id, out, want)
		}
		if want == router.StatusFailed && out[0].Event == nil {
			t.Errorf("%s: failed outcome does not keep the event for redrive", id)
		}
		// The in-memory store keeps a delivered event's attributes, without its data, for explain.
		if want == router.StatusDelivered && (out[0].Attributes == nil || out[0].Attributes.ID() != id || out[0].Attributes.Data() != nil) {
			t.Errorf("%s: delivered outcome's attributes %+v, want the event without its data", id, out[0].Attributes)
		}
	}
	// An event no trigger matched is findable (issue #21): one "unmatched" outcome under the
	// pseudo-trigger unmatched:BROKER, on no failed list.
	if out, _ := results.EventOutcomes(ctx, "skip"); len(out) != 1 || out[0].Status != router.StatusUnmatched ||
		out[0].Trigger != (router.TriggerRef{Namespace: "ns", Name: "unmatched:b"}) || out[0].Broker.Name != "b" || out[0].Event != nil {
		t.Errorf("filtered event has outcomes %+v, want one unmatched", out)
	}
	if failed, _, _ := results.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: "unmatched:b"}, OnlyFailed: true, Limit: 10}); len(failed) != 0 {
		t.Errorf("an unmatched event is on a failed list: %+v", failed)
	}
	ts := r.Triggers()
	if len(ts) != 1 || ts[0].Matched != 2 || ts[0].FilteredOut != 1 || ts[0].Delivered != 1 || ts[0].Failed != 1 {
		t.Errorf("trigger status %+v", ts)
	}
	if err := r.Publish(ctx, ref, []*router.Envelope{ev("late", "wanted", nil)}); !errors.Is(err, router.ErrUnavailable) {
		t.Errorf("publish after shutdown: %v", err)
	}
}

// A store that keeps no attributes of delivered events (the Cassandra store) is not handed a copy
// of them: that would be an allocation per delivered outcome for nothing.
func TestAttributesOnlyForAStoreThatKeepsThem(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer sub.Close()
	results := &plainStore{Store: memstore.New(10)}
	r := newRouter(results)
	r.Apply(testConfig(t, sub.URL, ""))
	if err := r.Publish(context.Background(), router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("ok", "wanted", nil)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r.Shutdown(ctx)
	if out, _ := results.EventOutcomes(ctx, "ok"); len(out) != 1 || out[0].Status != router.StatusDelivered || out[0].Attributes != nil {
		t.Errorf("outcomes %+v, want one delivered without attributes", out)
	}
}

// plainStore is the in-memory store saying it keeps no attributes, as the Cassandra store does.
type plainStore struct{ *memstore.Store }

func (p *plainStore) KeepsAttributes() bool { return false }

// TestReloadKeepsCounters: a trigger that survives a reload keeps its counters.
func TestReloadKeepsCounters(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer sub.Close()
	r := newRouter(memstore.New(10))
	r.Apply(testConfig(t, sub.URL, ""))
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	_ = r.Publish(context.Background(), ref, []*router.Envelope{ev("1", "wanted", nil)})
	waitDelivered(t, r, 1)
	r.Apply(testConfig(t, sub.URL+"/v2", ""))
	_ = r.Publish(context.Background(), ref, []*router.Envelope{ev("2", "wanted", nil)})
	waitDelivered(t, r, 2)
	ts := r.Triggers()
	if ts[0].Delivered != 2 || ts[0].Subscriber != sub.URL+"/v2" {
		t.Errorf("after reload: %+v", ts[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	r.Shutdown(ctx)
}

func waitDelivered(t *testing.T, r *Router, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.Triggers()[0].Delivered < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d events delivered, want %d", r.Triggers()[0].Delivered, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// retryConfig is broker ns/b with trigger t taking every event; annotations are lines under
// metadata.annotations (indented by four spaces), delivery a flow-style DeliverySpec.
func retryConfig(t *testing.T, annotations, subscriber, delivery string) *config.Config {
	if annotations != "" {
		annotations = "  annotations:\n" + annotations
	}
	return brokerWithTrigger(t, `metadata:
  name: t
  namespace: ns
`+annotations+`spec:
  broker: b
  subscriber: {uri: "`+subscriber+`"}
  delivery: `+delivery+"\n")
}

// TestRetryBackoffDoesNotHoldTheLane: a trigger with one delivery at a time keeps delivering other
// events while a failed one waits out its backoff; an ordered trigger keeps the failed one first.
func TestRetryBackoffDoesNotHoldTheLane(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			var mu sync.Mutex
			var arrivals []string
			failedOnce := false
			sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				id := r.Header.Get("Ce-Id")
				mu.Lock()
				defer mu.Unlock()
				arrivals = append(arrivals, id)
				if id == "flaky" && !failedOnce {
					failedOnce = true
					w.WriteHeader(http.StatusServiceUnavailable)
				}
			}))
			defer sub.Close()
			annotations := fmt.Sprintf("    %s: \"1\"\n", config.AnnotationConcurrency)
			if ordered {
				annotations = fmt.Sprintf("    %s: ordered\n", config.AnnotationDeliveryOrder)
			}
			cfg := retryConfig(t, annotations, sub.URL, "{retry: 1, backoffPolicy: linear, backoffDelay: PT0.4S}")
			results := memstore.New(100)
			r := newRouter(results)
			r.Apply(cfg)
			ctx := context.Background()
			ref := router.BrokerRef{Namespace: "ns", Name: "b"}
			for _, id := range []string{"flaky", "next"} {
				if err := r.Publish(ctx, ref, []*router.Envelope{ev(id, "any", nil)}); err != nil {
					t.Fatal(err)
				}
			}
			shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if aborted := r.Shutdown(shutdownCtx); aborted != 0 {
				t.Fatalf("%d events aborted", aborted)
			}
			want := []string{"flaky", "next", "flaky"} // the retry waits; "next" goes meanwhile
			if ordered {
				want = []string{"flaky", "flaky", "next"} // nothing overtakes an ordered trigger's event
			}
			if fmt.Sprint(arrivals) != fmt.Sprint(want) {
				t.Errorf("arrivals %v, want %v", arrivals, want)
			}
			out, _ := results.EventOutcomes(ctx, "flaky")
			if len(out) != 1 || out[0].Status != router.StatusDelivered || out[0].Attempts != 2 {
				t.Errorf("flaky: %+v, want delivered on the second attempt", out)
			}
		})
	}
}

// TestShutdownEndsAParkedRetry: a retry parked for a long backoff does not outlive the grace
// period; it is recorded as failed, saying it gave up waiting.
func TestShutdownEndsAParkedRetry(t *testing.T) {
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer sub.Close()
	cfg := retryConfig(t, "", sub.URL, "{retry: 3, backoffPolicy: linear, backoffDelay: PT60S}")
	results := memstore.New(100)
	r := newRouter(results)
	r.Apply(cfg)
	ctx := context.Background()
	if err := r.Publish(ctx, router.BrokerRef{Namespace: "ns", Name: "b"}, []*router.Envelope{ev("stuck", "any", nil)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the first attempt fails and parks
	graceCtx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if aborted := r.Shutdown(graceCtx); aborted != 1 {
		t.Errorf("aborted %d, want the parked one", aborted)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s with a 60 s backoff parked", d)
	}
	out, _ := results.EventOutcomes(ctx, "stuck")
	if len(out) != 1 || out[0].Status != router.StatusFailed || !strings.Contains(out[0].LastError, "gave up waiting to retry") {
		t.Errorf("outcome %+v", out)
	}
}
