package broker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

func dedupRouter(t testing.TB, window, subscriber string) (*Router, *metrics.Metrics) {
	cfg, err := config.Parse("t.yaml", []byte(fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns, annotations: {switchyard.dev/dedup-window: %q}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: all, namespace: ns}
spec: {broker: b, subscriber: {uri: "%s"}}
`, window, subscriber)))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	r := New(Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: memstore.New(1000), Metrics: m})
	r.Apply(cfg)
	return r, m
}

// With switchyard.dev/dedup-window, an event whose source and id the broker accepted within the
// window is answered as accepted and not appended again, in a later request or the same batch;
// another source's event of the same id is not a duplicate; after the window it is appended.
func TestDuplicatesRefusedAtTheDoor(t *testing.T) {
	var hits atomic.Int32
	sub := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer sub.Close()
	r, m := dedupRouter(t, "300ms", sub.URL)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	publish := func(envs ...*router.Envelope) {
		t.Helper()
		if err := r.Publish(context.Background(), ref, envs); err != nil {
			t.Fatal(err)
		}
	}
	other := ev("e1", "t", nil)
	other.Event.SetSource("/elsewhere")
	publish(ev("e1", "t", nil))
	publish(ev("e1", "t", nil))                            // a retry
	publish(ev("e2", "t", nil), ev("e2", "t", nil), other) // a repeat within a batch; another source
	waitUntil(t, func() bool { return hits.Load() == 3 })
	time.Sleep(100 * time.Millisecond)
	if got := hits.Load(); got != 3 {
		t.Fatalf("%d deliveries, want 3 (e1, e2, e1 of /elsewhere)", got)
	}
	if got := testutil.ToFloat64(m.BrokerDeduplicated.WithLabelValues("ns", "b")); got != 2 {
		t.Errorf("switchyard_broker_deduplicated_total %v, want 2", got)
	}
	time.Sleep(350 * time.Millisecond) // past the window
	publish(ev("e1", "t", nil))
	waitUntil(t, func() bool { return hits.Load() == 4 })
}

// BenchmarkDedupClaim: what refusing duplicates adds to Publish per event in this process: the
// claim before the append and its settling after (the Cassandra store's claim is a lightweight
// transaction on top: a round trip to Cassandra each way).
func BenchmarkDedupClaim(b *testing.B) {
	r, _ := dedupRouter(b, "5m", "http://127.0.0.1:1/")
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.Shutdown(ctx)
	}()
	bs := (*r.brokers.Load())[router.BrokerRef{Namespace: "ns", Name: "b"}]
	d := bs.dedup.Load()
	envs := make([]*router.Envelope, 1024)
	for i := range envs {
		envs[i] = ev(fmt.Sprint("bench-", i), "t", nil)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		env := envs[i%len(envs)]
		env.Event.SetID(fmt.Sprint("bench-", i)) // a new event each time, as in production
		fresh, claims, err := r.reserveEvents(ctx, bs, d, []*router.Envelope{env})
		if err != nil || len(fresh) != 1 {
			b.Fatal(err, len(fresh))
		}
		r.settleEvents(bs, d, claims, true)
	}
}
