package ingress_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/ingress"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// acceptAll is a subscriber that answers 200 without a network: the fuzzer spends its time on
// ingress, routing and recording, and a delivery still goes through encoding and the outcome.
type acceptAll struct{}

func (acceptAll) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		req.Body.Close()
	}
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// FuzzFullPath feeds raw HTTP request bytes through the whole in-memory path: the HTTP parser,
// ingress (decode, validation, auth-free admission), the broker (TTL, reply budget, memory
// bound), filter matching against a catch-all and a CESQL trigger, delivery (encoding the event
// back into headers), outcome recording, and the Prometheus registry. Whatever the bytes, nothing
// panics (a panic in a delivery goroutine ends the fuzzing process), the answer is a status the
// ingress table allows, and an accepted event ends with an outcome for the catch-all trigger.
func FuzzFullPath(f *testing.F) {
	for _, seed := range []string{
		"POST /ns/b HTTP/1.1\r\nHost: x\r\nCe-Specversion: 1.0\r\nCe-Id: 1\r\nCe-Source: /s\r\nCe-Type: t\r\nContent-Length: 2\r\n\r\n{}",
		"POST /ns/b HTTP/1.1\r\nHost: x\r\nCe-Specversion: 1.0\r\nCe-Id: 1\r\nCe-Source: /s\r\nCe-Type: com.example.order.%FF\r\nContent-Length: 0\r\n\r\n",
		"POST /ns/b HTTP/1.1\r\nHost: x\r\nCe-Specversion: 1.0\r\nCe-Id: 1\r\nCe-Source: /s\r\nCe-Type: t\r\nCe-: x\r\nContent-Length: 0\r\n\r\n",
		"POST /ns/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents+json\r\nContent-Length: 62\r\n\r\n{\"specversion\":\"1.0\",\"id\":\"2\",\"source\":\"/s\",\"type\":\"t\",\"x\":\"y\"}",
		"POST /ns/b HTTP/1.1\r\nHost: x\r\nContent-Type: application/cloudevents-batch+json\r\nTransfer-Encoding: chunked\r\n\r\n38\r\n[{\"specversion\":\"1.0\",\"id\":\"3\",\"source\":\"/s\",\"type\":\"t\"}]\r\n0\r\n\r\n",
		"POST /ns/b HTTP/1.1\r\nHost: x\r\nCe-Specversion: 0.3\r\nCe-Id: 4\r\nCe-Source: /s\r\nCe-Type: t\r\nCe-Knativebrokerttl: 0\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	cfg, err := config.Parse("fuzz.yaml", []byte(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: fuzz}
spec:
  ingress: {queueSize: 100, maxUnfinishedBytes: 8388608}
  metrics: {maxEventTypes: 10}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: b, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: all, namespace: ns}
spec:
  broker: b
  subscriber: {uri: "http://fn.example/"}
  delivery: {retry: 0}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: cesql, namespace: ns}
spec:
  broker: b
  filters: [{cesql: "type LIKE 'com.%' AND EXISTS subject"}]
  subscriber: {uri: "http://fn.example/cesql"}
  delivery: {retry: 0}
`))
	if err != nil {
		f.Fatal(err)
	}
	m := metrics.New()
	results := memstore.New(1000)
	r := broker.New(broker.Options{Logger: zap.NewNop(), Results: results, Metrics: m,
		Deliverer: delivery.New(delivery.Options{Transport: acceptAll{}})})
	r.Apply(cfg)
	f.Cleanup(func() { r.Shutdown(context.Background()) })
	h := ingress.New(ingress.Options{Publisher: r, Logger: zap.NewNop(), Metrics: m, MaxBodyBytes: func() int64 { return 64 << 10 }})
	allowed := map[int]bool{202: true, 400: true, 404: true, 405: true, 413: true, 429: true, 503: true, 200: true}

	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return // not HTTP: the server would have answered 400 before any of our code ran
		}
		// What the HTTP server would have refused before our handler (an invalid header value
		// or name is a 400 there), it refuses here too.
		for k, vs := range req.Header {
			if k == "" || strings.ContainsAny(k, " \t\r\n:") {
				return
			}
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n\x00") {
					return
				}
			}
		}
		idHeader := req.Header.Clone()
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		req.Body = io.NopCloser(bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d for %q: %s", rec.Code, raw, rec.Body.String())
		}
		if _, err := m.Registry.Gather(); err != nil {
			t.Fatalf("metrics cannot be gathered after %q: %v", raw, err)
		}
		if rec.Code != http.StatusAccepted || req.URL.Path != "/ns/b" {
			return
		}
		events, err := cehttp.Decode(idHeader, body)
		if err != nil {
			t.Fatalf("accepted %q, which decodes with an error now: %v", raw, err)
		}
		for _, e := range events {
			waitForOutcome(t, results, e.ID(), router.TriggerRef{Namespace: "ns", Name: "all"})
		}
	})
}

func waitForOutcome(t *testing.T, results *memstore.Store, id string, trigger router.TriggerRef) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		outcomes, _ := results.EventOutcomes(context.Background(), id)
		for _, o := range outcomes {
			if o.Trigger == trigger {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("event %q was accepted but has no outcome for %s", id, trigger)
		}
		time.Sleep(time.Millisecond)
	}
}
