// Package bench measures the router as a whole. The Go benchmarks here run in-process; the
// side-by-side harness against other proxies is `make bench` (see docs/performance.md).
package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gocql/gocql"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/ingress"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/tracing"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
	kafkalog "github.com/switchyard-events/switchyard/sinks/kafka"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// BenchmarkEndToEnd sends 1 KiB binary events through ingress and the router to a subscriber on
// loopback; one op is one event accepted, routed, delivered and recorded. The store variants show
// what recording outcomes in Cassandra costs against memory.
func BenchmarkEndToEnd(b *testing.B) {
	b.Run("store=memory", func(b *testing.B) { benchEndToEnd(b, memstore.New(100000), nil, "") })
	b.Run("sink=cassandra", func(b *testing.B) { benchSinkEndToEnd(b, testenv.Cassandra(b)) })
	b.Run("store=memory,tracing=on", func(b *testing.B) {
		// Every span recorded and exported (to nowhere): what tracing costs at full sampling.
		provider := sdktrace.NewTracerProvider(sdktrace.WithBatcher(discardExporter{}))
		otel.SetTracerProvider(provider)
		otel.SetTextMapPropagator(propagation.TraceContext{})
		tracing.SetActive(true)
		defer func() {
			tracing.SetActive(false)
			_ = provider.Shutdown(context.Background())
		}()
		benchEndToEnd(b, memstore.New(100000), nil, "")
	})
	b.Run("log=kafka", func(b *testing.B) { benchEndToEnd(b, memstore.New(100000), nil, testenv.Kafka(b)) })
	b.Run("store=cassandra", func(b *testing.B) {
		cs, err := cassandra.Open(cassandra.Config{Hosts: []string{testenv.Cassandra(b)}, Keyspace: "sy_bench_e2e", Consistency: "ONE", JournalDir: b.TempDir(), DisableHostLookup: true})
		if err != nil {
			b.Fatal(err)
		}
		benchEndToEnd(b, cs, cs.Close, "")
	})
}

// codeRecorder remembers the status a subscriber answered.
type codeRecorder struct {
	http.ResponseWriter
	code int
}

func (c *codeRecorder) WriteHeader(code int) {
	c.code = code
	c.ResponseWriter.WriteHeader(code)
}

// discardExporter takes spans and drops them: the exporter's own cost is not the router's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// benchSinkEndToEnd is the in-memory benchmark with a CassandraSink as the subscriber: every event
// becomes a row (its own partition, the event id) written at ONE before the delivery is answered;
// beside store=cassandra (the result store's writes on the same Cassandra) it says whether the
// sink keeps up with what the router records (issue #20).
func benchSinkEndToEnd(b *testing.B, host string) {
	cluster := gocql.NewCluster(host)
	cluster.ProtoVersion, cluster.DisableInitialHostLookup, cluster.Timeout = 4, true, 30*time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		b.Fatal(err)
	}
	if err := session.Query(`CREATE KEYSPACE IF NOT EXISTS sy_bench_sink WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`).Exec(); err != nil {
		b.Fatal(err)
	}
	session.Close()
	sinks := cassandra.NewSinks(zap.NewNop(), func() int64 { return 1 << 20 }, nil)
	defer sinks.Close()
	sinks.Apply([]*config.Object{{Namespace: "ns", Name: "rows", Spec: &cassandra.SinkSpec{Hosts: []string{host}, Keyspace: "sy_bench_sink",
		Table: "rows", Consistency: "ONE", Concurrency: 16, Columns: map[string]string{"id": "id", "type": "type", "payload": "data"},
		CreateTable: &cassandra.CreateTableSpec{Columns: map[string]string{"id": "text", "type": "text", "payload": "blob"}}}}}, nil)
	probe := func() int {
		req := httptest.NewRequest(http.MethodPost, cassandra.SinkPathPrefix+"ns/rows", strings.NewReader("{}"))
		for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "probe", "Ce-Type": "t", "Ce-Source": "/s", "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		sinks.ServeHTTP(rec, req)
		return rec.Code
	}
	for deadline := time.Now().Add(30 * time.Second); probe() != http.StatusAccepted; {
		if time.Now().After(deadline) {
			b.Fatal("the CassandraSink did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	benchEndToEndTo(b, memstore.New(100000), nil, "", func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = cassandra.SinkPathPrefix + "ns/rows" // the benchmark's subscriber URL is the server's root
		sinks.ServeHTTP(w, r)
	}, true)
}

// benchEndToEnd runs the benchmark with outcomes in results and, when kafka is set, the broker's
// log in a fresh Kafka topic instead of memory.
func benchEndToEnd(b *testing.B, results router.ResultStore, closeStore func() error, kafka string) {
	benchEndToEndTo(b, results, closeStore, kafka, func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }, false)
}

// benchEndToEndTo is benchEndToEnd with subscriber as the subscriber (a 2xx counts as delivered),
// and with uniqueIDs a new event id per event.
func benchEndToEndTo(b *testing.B, results router.ResultStore, closeStore func() error, kafka string, subscriber http.HandlerFunc, uniqueIDs bool) {
	var delivered, ids, failures atomic.Int64
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &codeRecorder{ResponseWriter: w, code: http.StatusOK}
		subscriber(rec, r)
		if rec.code/100 == 2 {
			delivered.Add(1)
		} else if failures.Add(1) == 1 {
			b.Logf("the subscriber answered %d", rec.code)
		}
	}))
	defer sub.Close()
	manifests := fmt.Sprintf(benchManifests, "", sub.URL)
	if kafka != "" {
		topic := fmt.Sprintf("bench-%d", time.Now().UnixNano())
		manifests = fmt.Sprintf(kafkaSettings, kafka) + fmt.Sprintf(benchManifests, fmt.Sprintf(kafkaClass, topic), sub.URL)
	}
	cfg, err := config.LoadSources(config.Sources{Documents: []config.Document{{Name: "bench.yaml", Data: []byte(manifests)}},
		Components: []config.Component{kafkalog.Component{}}})
	if err != nil {
		b.Fatal(err)
	}
	m := metrics.New()
	r := broker.New(broker.Options{Logger: zap.NewNop(), Deliverer: delivery.New(delivery.Options{}), Results: results, Metrics: m,
		OpenLog: func(bc *config.Broker, cfg *config.Config) (router.BrokerLog, error) {
			if bc.Class != "Kafka" {
				return nil, nil
			}
			k := cfg.Components[config.KafkaComponentPath].(*kafkalog.Spec)
			return kafkalog.New(kafkalog.Config{Brokers: k.BootstrapServers, Topic: bc.Topic, Group: bc.Topic, Partitions: 4}), nil
		}})
	r.Apply(cfg)
	in := httptest.NewServer(ingress.New(ingress.Options{Publisher: r, Logger: zap.NewNop(), Metrics: m, MaxBodyBytes: func() int64 { return 1 << 20 }}))
	defer in.Close()
	e := event.New()
	e.SetID("bench")
	e.SetSource("/bench")
	e.SetType("wanted")
	_ = e.SetData("application/json", map[string]string{"payload": string(bytes.Repeat([]byte("x"), 1000))})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	b.SetParallelism(8) // 16 producers on 2 cores: a Kafka produce waits for every replica's ack
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, in.URL+"/ns/b", nil)
			body := cehttp.WriteBinary(req.Header, &e)
			if uniqueIDs {
				req.Header.Set("Ce-Id", strconv.FormatInt(ids.Add(1), 10))
			}
			req.ContentLength = int64(len(body))
			var resp *http.Response
			// A 429 is the broker pacing its producers (a subscriber slower than ingress): back off
			// and send again, as a producer does; the run measures the sustained rate.
			for backoff := time.Millisecond; ; backoff = min(2*backoff, 50*time.Millisecond) {
				req.Body = io.NopCloser(bytes.NewReader(body))
				var err error
				if resp, err = client.Do(req); err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusTooManyRequests {
					break
				}
				time.Sleep(backoff)
			}
			if resp.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	deadline := time.Now().Add(time.Minute) // a failed run must end, not wait for events never sent
	for delivered.Load() < int64(b.N) && !b.Failed() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r.Shutdown(ctx)
	if closeStore != nil {
		_ = closeStore() // every outcome written before the clock stops
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	client.CloseIdleConnections()
}

// benchManifests is one broker (with extra metadata lines) and one trigger to the sink.
const benchManifests = `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: b
  namespace: ns
%s---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  broker: b
  filter: {attributes: {type: wanted}}
  subscriber: {uri: %s}
`

const kafkaSettings = `apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  kafka: {bootstrapServers: [%s], partitions: 4}
---
`

const kafkaClass = `  annotations:
    eventing.knative.dev/broker.class: Kafka
    kafka.eventing.knative.dev/external.topic: %s
`
