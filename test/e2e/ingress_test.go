package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestIngressStatusCodes checks every row of the ingress table of the semantics doc that answers
// synchronously.
func TestIngressStatusCodes(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"    maxBodyBytes: 65536\n")

	missing := func(attr string) ceRequest {
		req := binaryEvent("m-"+attr, "t")
		delete(req.Headers, "Ce-"+strings.ToUpper(attr[:1])+attr[1:])
		return req
	}
	structured := func(body string) ceRequest {
		return ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"}, Body: body}
	}
	cases := []struct {
		name     string
		path     string
		req      ceRequest
		want     int
		wantBody string
		header   map[string]string
	}{
		{name: "binary 1.0", path: "/default/default", req: binaryEvent("a", "t"), want: 202},
		{name: "binary 0.3", path: "/default/default", req: func() ceRequest { r := binaryEvent("b", "t"); r.Headers["Ce-Specversion"] = "0.3"; return r }(), want: 202},
		{name: "structured 1.0", path: "/default/default", req: structured(`{"specversion":"1.0","id":"c","source":"/s","type":"t","data":{"x":1}}`), want: 202},
		{name: "trailing slash", path: "/default/default/", req: binaryEvent("d", "t"), want: 202},
		{name: "query string ignored", path: "/default/default?x=1", req: binaryEvent("e", "t"), want: 202},
		{name: "unknown specversion binary", path: "/default/default", req: func() ceRequest { r := binaryEvent("f", "t"); r.Headers["Ce-Specversion"] = "9.9"; return r }(), want: 400, wantBody: "specversion"},
		{name: "unknown specversion structured", path: "/default/default", req: structured(`{"specversion":"2.0","id":"g","source":"/s","type":"t"}`), want: 400, wantBody: "specversion"},
		{name: "missing id", path: "/default/default", req: missing("id"), want: 400, wantBody: "id"},
		{name: "missing source", path: "/default/default", req: missing("source"), want: 400, wantBody: "source"},
		{name: "missing type", path: "/default/default", req: missing("type"), want: 400, wantBody: "type"},
		{name: "structured missing id", path: "/default/default", req: structured(`{"specversion":"1.0","source":"/s","type":"t"}`), want: 400, wantBody: "id"},
		{name: "plain JSON", path: "/default/default", req: ceRequest{Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"a":1}`}, want: 400, wantBody: "not a CloudEvent"},
		{name: "unknown broker", path: "/default/nope", req: binaryEvent("h", "t"), want: 404, wantBody: "default/nope"},
		{name: "root", path: "/", req: binaryEvent("i", "t"), want: 404},
		{name: "bad shape", path: "/a/b/c", req: binaryEvent("j", "t"), want: 400},
		{name: "one segment", path: "/default", req: binaryEvent("k", "t"), want: 400},
		{name: "GET", path: "/default/default", req: ceRequest{Method: http.MethodGet}, want: 405, header: map[string]string{"Allow": "POST, OPTIONS"}},
		{name: "PUT", path: "/default/default", req: ceRequest{Method: http.MethodPut}, want: 405, header: map[string]string{"Allow": "POST, OPTIONS"}},
		{name: "OPTIONS", path: "/default/default", req: ceRequest{Method: http.MethodOptions, Headers: map[string]string{"WebHook-Request-Origin": "example.com"}}, want: 200,
			header: map[string]string{"WebHook-Allowed-Origin": "*", "WebHook-Allowed-Rate": "*"}},
		{name: "too large", path: "/default/default", req: func() ceRequest {
			r := binaryEvent("l", "t")
			r.Body = `"` + strings.Repeat("x", 70000) + `"`
			return r
		}(), want: 413},
		{name: "TTL exhausted", path: "/default/default", req: func() ceRequest { r := binaryEvent("m", "t"); r.Headers["Ce-Knativebrokerttl"] = "0"; return r }(), want: 400, wantBody: "knativebrokerttl"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, h, body := r.send(t, c.path, c.req)
			if code != c.want {
				t.Fatalf("status %d, want %d (body %q)", code, c.want, body)
			}
			if c.wantBody != "" && !strings.Contains(body, c.wantBody) {
				t.Errorf("body %q does not mention %q", body, c.wantBody)
			}
			for k, v := range c.header {
				if h.Get(k) != v {
					t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
				}
			}
		})
	}
	// The five accepted events arrive, and nothing else.
	sub.waitFor(t, 5, 10*time.Second)
	sub.quiet(t, 5, 300*time.Millisecond)
}

// TestBatchedMode: a batch is validated whole, then every event is delivered; one bad event rejects
// the batch and nothing of it is delivered.
func TestBatchedMode(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"), "")
	batch := func(body string) ceRequest {
		return ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: body}
	}
	code, _, body := r.send(t, "/default/default", batch(`[{"specversion":"1.0","id":"b1","source":"/s","type":"t"},{"specversion":"1.0","source":"/s","type":"t"}]`))
	if code != 400 || !strings.Contains(body, "batch event 1") || !strings.Contains(body, "id") {
		t.Fatalf("bad batch: %d %q, want 400 naming event 1's id", code, body)
	}
	code, _, body = r.send(t, "/default/default", batch(`[{"specversion":"1.0","id":"b1","source":"/s","type":"t"},{"specversion":"1.0","id":"b2","source":"/s","type":"t","data":"x"},{"specversion":"1.0","id":"b3","source":"/s","type":"t"}]`))
	if code != 202 {
		t.Fatalf("good batch: %d %q", code, body)
	}
	got := sub.waitFor(t, 3, 10*time.Second)
	sub.quiet(t, 3, 200*time.Millisecond)
	ids := map[string]bool{}
	for _, g := range got {
		ids[g.Event.ID()] = true
	}
	for _, id := range []string{"b1", "b2", "b3"} {
		if !ids[id] {
			t.Errorf("event %s not delivered; got %v", id, ids)
		}
	}
}

// TestQueueFullAnswers429: a bounded queue behind a stuck subscriber fills, and ingress then answers
// 429 with Retry-After instead of accepting more than it can hold.
func TestQueueFullAnswers429(t *testing.T) {
	release := make(chan struct{})
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { <-release; w.WriteHeader(200) })
	defer close(release)
	r := startRouter(t, `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: stuck
  annotations:
    switchyard.dev/concurrency: "1"
spec:
  broker: default
  subscriber:
    uri: `+sub.URL+"\n", "    queueSize: 2\n", "--shutdown-grace=1s")
	// Settings cannot bound trigger pending per test cheaply, so send until the queue overflows.
	var got429 bool
	for i := 0; i < 2000 && !got429; i++ {
		code, h, _ := r.send(t, "/default/default", binaryEvent("q"+strconv.Itoa(i), "t"))
		switch code {
		case 202:
		case 429:
			got429 = true
			if h.Get("Retry-After") == "" {
				t.Errorf("429 without Retry-After")
			}
		default:
			t.Fatalf("unexpected status %d", code)
		}
	}
	if !got429 {
		t.Fatal("never got 429 from a full queue")
	}
}

// TestMaxInFlightPacesProducers: a broker annotated switchyard.dev/max-in-flight holds a producer
// whose event does not fit until an earlier one is delivered, then answers 202; when none finishes
// within maxInFlightWait it answers 429 with Retry-After and says why.
func TestMaxInFlightPacesProducers(t *testing.T) {
	release := make(chan struct{}, 10)
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { <-release; w.WriteHeader(200) })
	defer close(release)
	r := startRouter(t, `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: paced
  annotations:
    switchyard.dev/max-in-flight: "1"
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: slow
spec:
  broker: paced
  subscriber:
    uri: `+sub.URL+"\n", "    maxInFlightWait: 400ms\n", "--shutdown-grace=1s")
	if code, _, body := r.send(t, "/default/paced", binaryEvent("first", "t")); code != 202 {
		t.Fatalf("first event: %d %s", code, body)
	}
	waitFor(t, 5*time.Second, func() bool {
		_, metrics := r.get(t, "/metrics")
		return strings.Contains(metrics, `switchyard_broker_unfinished_events{broker_name="paced",namespace_name="default"} 1`)
	})
	start := time.Now()
	code, h, body := r.send(t, "/default/paced", binaryEvent("refused", "t"))
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, "max-in-flight") {
		t.Fatalf("second event with the first undelivered: %d, Retry-After %q, %q; want 429 naming max-in-flight", code, h.Get("Retry-After"), body)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("answered 429 after %s, before the 400ms wait", d)
	}
	type answer struct {
		code    int
		elapsed time.Duration
	}
	third := make(chan answer, 1)
	start = time.Now()
	go func() {
		code, _, _, err := r.trySend("/default/paced", binaryEvent("third", "t"))
		if err != nil {
			code = -1
		}
		third <- answer{code, time.Since(start)}
	}()
	time.Sleep(150 * time.Millisecond)
	release <- struct{}{} // the subscriber answers the first event: room for the third
	a := <-third
	if a.code != 202 || a.elapsed < 150*time.Millisecond {
		t.Errorf("third event: %d after %s; want 202 once the first was delivered (after 150ms)", a.code, a.elapsed)
	}
	release <- struct{}{}
	got := sub.waitFor(t, 2, 5*time.Second)
	if got[0].Header.Get("Ce-Id") != "first" || got[1].Header.Get("Ce-Id") != "third" {
		t.Errorf("delivered %s, %s; want first, third", got[0].Header.Get("Ce-Id"), got[1].Header.Get("Ce-Id"))
	}
}

// TestSenderAuth: a protected broker answers 401 without a valid bearer token (with
// WWW-Authenticate), 403 for a verified JWT whose subject is not allowed, and 202 otherwise; other
// brokers stay open.
func TestSenderAuth(t *testing.T) {
	t.Setenv("SY_TEST_TOKEN", "let-me-in")
	t.Setenv("SY_TEST_HMAC", "jwt-hmac-secret")
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("secure")+brokerYAML("open")+
		triggerYAML("s", "  broker: secure\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"    auth:\n      - brokers: [default/secure]\n        tokens:\n          - env: SY_TEST_TOKEN\n        jwt:\n          issuer: test\n          subjects: [producer]\n          hmacSecret:\n            env: SY_TEST_HMAC\n")
	jwtClaims := func(claims string) string {
		enc := func(v string) string { return base64.RawURLEncoding.EncodeToString([]byte(v)) }
		signed := enc(`{"alg":"HS256"}`) + "." + enc(claims)
		m := hmac.New(sha256.New, []byte("jwt-hmac-secret"))
		m.Write([]byte(signed))
		return signed + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	jwt := func(sub string) string {
		return jwtClaims(fmt.Sprintf(`{"iss":"test","sub":"%s","exp":%d}`, sub, time.Now().Add(10*time.Minute).Unix()))
	}
	for _, c := range []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/default/secure", "", 401},
		{"wrong token", "/default/secure", "Bearer nope", 401},
		{"static token", "/default/secure", "Bearer let-me-in", 202},
		{"jwt", "/default/secure", "Bearer " + jwt("producer"), 202},
		{"jwt wrong subject", "/default/secure", "Bearer " + jwt("someone"), 403},
		{"open broker", "/default/open", "", 202},
		// Issue #16, item 10: a JWT that never expires is refused; an unknown broker in a protected
		// namespace answers 401 to outsiders, as an existing one does, and 404 only to producers
		// with credentials.
		{"jwt without exp", "/default/secure", "Bearer " + jwtClaims(`{"iss":"test","sub":"producer"}`), 401},
		{"unknown broker, no token", "/default/nosuch", "", 401},
		{"unknown broker, token", "/default/nosuch", "Bearer let-me-in", 404},
	} {
		req := binaryEvent("a-"+c.name, "t")
		if c.auth != "" {
			req.Headers["Authorization"] = c.auth
		}
		code, h, body := r.send(t, c.path, req)
		if code != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, code, body, c.want)
		}
		if code == 401 && h.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
		if strings.Contains(body, "let-me-in") || strings.Contains(body, "jwt-hmac-secret") {
			t.Errorf("%s: the answer leaks a secret: %q", c.name, body)
		}
	}
	sub.waitFor(t, 2, 5*time.Second)
}

// TestSenderAuthCoversSinks: with sender authentication on, a sink's address is protected as a
// broker's by the policy covering its namespace/name: a KafkaSink and a CassandraSink answer 401
// (with WWW-Authenticate) without valid credentials, an unknown sink of the namespace 401 too and
// 404 only with credentials, a sink of an unprotected namespace stays open. A trigger's ref to the
// protected KafkaSink still delivers (the router's own deliveries carry its token), and only the
// authenticated events reach the topic.
func TestSenderAuthCoversSinks(t *testing.T) {
	kafka := testenv.Kafka(t)
	t.Setenv("SY_TEST_TOKEN", "let-me-in")
	topic := fmt.Sprintf("e2e-sink-auth-%d", time.Now().UnixNano())
	sink := func(ns, name string) string {
		return fmt.Sprintf("apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: %s, namespace: %s}\n"+
			"spec:\n  topic: %s\n  bootstrapServers: [%s]\n  numPartitions: 1\n  replicationFactor: 1\n---\n", name, ns, topic, kafka)
	}
	// Cassandra need not be there: the answers checked are given before the sink is.
	table := "apiVersion: switchyard.dev/v1alpha1\nkind: CassandraSink\nmetadata: {name: rows, namespace: default}\n" +
		"spec:\n  hosts: [127.0.0.1:1]\n  keyspace: nowhere\n  table: rows\n  columns: {id: id}\n---\n"
	r := startRouter(t, brokerYAML("secure")+sink("default", "archive")+sink("open", "archive")+table+
		triggerYAML("to-archive", "  broker: secure\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: archive}\n"),
		"    auth:\n      - brokers: [default/*]\n        tokens:\n          - env: SY_TEST_TOKEN\n")
	run := fmt.Sprint(time.Now().UnixNano())
	for _, c := range []struct {
		name, path, auth string
		want             int
	}{
		{"no token", "/sinks/kafka/default/archive", "", 401},
		{"wrong token", "/sinks/kafka/default/archive", "Bearer nope", 401},
		{"token", "/sinks/kafka/default/archive", "Bearer let-me-in", 202},
		{"cassandra, no token", "/sinks/cassandra/default/rows", "", 401},
		{"cassandra, wrong token", "/sinks/cassandra/default/rows", "Bearer nope", 401},
		{"unknown sink, no token", "/sinks/kafka/default/nosuch", "", 401},
		{"unknown sink, token", "/sinks/kafka/default/nosuch", "Bearer let-me-in", 404},
		{"unprotected namespace", "/sinks/kafka/open/archive", "", 202},
		{"broker, token", "/default/secure", "Bearer let-me-in", 202},
	} {
		req := binaryEvent(run+"-"+c.name, "t")
		if c.auth != "" {
			req.Headers["Authorization"] = c.auth
		}
		code, h, body := r.send(t, c.path, req)
		if code != c.want {
			t.Errorf("%s: %d %q, want %d", c.name, code, body, c.want)
		}
		if code == 401 && (h.Get("WWW-Authenticate") == "" || !strings.Contains(body, "Bearer token") && !strings.Contains(body, "accepts")) {
			t.Errorf("%s: 401 %q with WWW-Authenticate %q", c.name, body, h.Get("WWW-Authenticate"))
		}
	}
	// The trigger's copy of the broker's event went through the protected sink's address.
	readTopicUntil(t, kafka, topic, 30*time.Second, run+"-token", run+"-unprotected namespace", run+"-broker, token")
	waitFor(t, 10*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return metricValue(m, `switchyard_kafka_sink_records_total{namespace_name="default",result="written",sink_name="archive"}`) == 2
	})
	_, m := r.get(t, "/metrics")
	if n := metricValue(m, `switchyard_kafka_sink_records_total{namespace_name="default",result="written",sink_name="archive"}`); n != 2 {
		t.Errorf("the protected sink wrote %v records, want 2 (the token's and the trigger's)", n)
	}
}
