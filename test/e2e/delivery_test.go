package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router/cehttp"
)

// TestDeliveryHeaders: subscribers get binary mode with Prefer: reply, Kn-Namespace, forwarded
// headers and trace context, knativearrivaltime, and never knativebrokerttl.
func TestDeliveryHeaders(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"/path\n"), "")
	req := binaryEvent("h1", "t")
	req.Headers["Traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	req.Headers["X-Request-Id"] = "req-1"
	req.Headers["X-Not-Forwarded"] = "no"
	req.Headers["Ce-Knativebrokerttl"] = "7"
	req.Headers["Ce-Myext"] = "caf%C3%A9 au lait" // percent-encoded UTF-8 and a space
	if code, _, body := r.send(t, "/default/default", req); code != 202 {
		t.Fatalf("send: %d %s", code, body)
	}
	got := sub.waitFor(t, 1, 10*time.Second)[0]
	for k, want := range map[string]string{
		"Prefer": "reply", "Kn-Namespace": "default", "Ce-Id": "h1", "Ce-Specversion": "1.0",
		"Traceparent": req.Headers["Traceparent"], "X-Request-Id": "req-1", "Content-Type": "application/json",
		"Ce-Myext": "caf%C3%A9%20au%20lait",
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("header %s = %q, want %q", k, v, want)
		}
	}
	if got.Header.Get("X-Not-Forwarded") != "" {
		t.Error("X-Not-Forwarded was forwarded")
	}
	if got.Header.Get("Ce-Knativebrokerttl") != "" {
		t.Error("knativebrokerttl reached the subscriber")
	}
	if got.Event.Extensions()["myext"] != "café au lait" {
		t.Errorf("myext decoded as %q", got.Event.Extensions()["myext"])
	}
	arrival, _ := got.Event.Extensions()["knativearrivaltime"].(string)
	if _, err := time.Parse(time.RFC3339Nano, arrival); err != nil {
		t.Errorf("knativearrivaltime %q: %v", arrival, err)
	}
	if string(got.Body) != `{"hello":"world"}` {
		t.Errorf("body %q", got.Body)
	}
}

// TestFormatJSON: delivery.format json delivers structured mode; binary forces binary.
func TestFormatJSON(t *testing.T) {
	js, bin := newSubscriber(t, nil), newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("js", "  broker: default\n  subscriber:\n    uri: "+js.URL+"\n  delivery:\n    format: json\n")+
		triggerYAML("bin", "  broker: default\n  subscriber:\n    uri: "+bin.URL+"\n  delivery:\n    format: binary\n"), "")
	if code, _, _ := r.send(t, "/default/default", binaryEvent("f1", "t")); code != 202 {
		t.Fatal(code)
	}
	gj := js.waitFor(t, 1, 10*time.Second)[0]
	if ct := gj.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/cloudevents+json") {
		t.Errorf("json trigger got Content-Type %q", ct)
	}
	if gj.Event == nil || gj.Event.ID() != "f1" {
		t.Errorf("json trigger did not get event f1: %s", gj.Body)
	}
	gb := bin.waitFor(t, 1, 10*time.Second)[0]
	if gb.Header.Get("Ce-Id") != "f1" {
		t.Errorf("binary trigger got no ce-id header")
	}
}

// TestRedeliveryWithExponentialBackoff: a subscriber that fails the first 3 attempts gets the event
// on the 4th, with waits that grow 0.2s, 0.4s, 0.8s.
func TestRedeliveryWithExponentialBackoff(t *testing.T) {
	sub := newSubscriber(t, func(n int, _ received, w http.ResponseWriter) {
		if n <= 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	r := startRouter(t, brokerYAML("default")+triggerYAML("flaky", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 5\n    backoffPolicy: exponential\n    backoffDelay: PT0.2S\n"), "")
	if code, _, _ := r.send(t, "/default/default", binaryEvent("r1", "t")); code != 202 {
		t.Fatal(code)
	}
	got := sub.waitFor(t, 4, 15*time.Second)
	sub.quiet(t, 4, 300*time.Millisecond)
	for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond} {
		gap := got[i+1].At.Sub(got[i].At)
		if gap < want || gap > want+400*time.Millisecond {
			t.Errorf("wait before retry %d = %s, want %s (+ jitter)", i+1, gap, want)
		}
	}
	waitOutcome(t, r, "r1", "delivered", 4)
}

// TestLinearBackoffAndNoRetryOn400: linear backoff waits delay·n; a 400 is final at once.
func TestLinearBackoffAndNoRetryOn400(t *testing.T) {
	lin := newSubscriber(t, func(n int, _ received, w http.ResponseWriter) {
		if n <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	bad := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { w.WriteHeader(http.StatusBadRequest) })
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("lin", "  broker: default\n  filter:\n    attributes:\n      type: lin\n  subscriber:\n    uri: "+lin.URL+"\n  delivery:\n    retry: 3\n    backoffPolicy: linear\n    backoffDelay: PT0.3S\n")+
		triggerYAML("bad", "  broker: default\n  filter:\n    attributes:\n      type: bad\n  subscriber:\n    uri: "+bad.URL+"\n  delivery:\n    retry: 3\n    backoffDelay: PT0.1S\n"), "")
	r.send(t, "/default/default", binaryEvent("l1", "lin"))
	r.send(t, "/default/default", binaryEvent("b1", "bad"))
	got := lin.waitFor(t, 3, 10*time.Second)
	for i, want := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
		if gap := got[i+1].At.Sub(got[i].At); gap < want || gap > want+400*time.Millisecond {
			t.Errorf("linear wait %d = %s, want %s", i+1, gap, want)
		}
	}
	bad.quiet(t, 1, 500*time.Millisecond)
	waitOutcome(t, r, "b1", "failed", 1)
}

// TestRetryAfter: with retryAfterMax set, a 429 with Retry-After: 1 makes the router wait about a
// second although the backoff is 0.1s.
func TestRetryAfter(t *testing.T) {
	sub := newSubscriber(t, func(n int, _ received, w http.ResponseWriter) {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	r := startRouter(t, brokerYAML("default")+triggerYAML("ra", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 2\n    backoffDelay: PT0.1S\n    retryAfterMax: PT5S\n"), "")
	r.send(t, "/default/default", binaryEvent("ra1", "t"))
	got := sub.waitFor(t, 2, 10*time.Second)
	if gap := got[1].At.Sub(got[0].At); gap < time.Second || gap > 1600*time.Millisecond {
		t.Errorf("wait after Retry-After: 1 was %s, want about 1s", gap)
	}
}

// TestDeadLetterSink: 422 with a body is not retried and reaches the dead-letter sink with the error
// extensions; an unreachable subscriber is retried, then dead-lettered with code 500.
func TestDeadLetterSink(t *testing.T) {
	unprocessable := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = w.Write([]byte("order 42 has no lines"))
	})
	dls := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("t422", "  broker: default\n  filter:\n    attributes:\n      type: a\n  subscriber:\n    uri: "+unprocessable.URL+"/fn\n  delivery:\n    retry: 2\n    backoffDelay: PT0.05S\n    deadLetterSink:\n      uri: "+dls.URL+"\n")+
		triggerYAML("gone", "  broker: default\n  filter:\n    attributes:\n      type: b\n  subscriber:\n    uri: http://127.0.0.1:1/nothing\n  delivery:\n    retry: 1\n    backoffDelay: PT0.05S\n    deadLetterSink:\n      uri: "+dls.URL+"\n"), "")
	r.send(t, "/default/default", binaryEvent("d1", "a"))
	r.send(t, "/default/default", binaryEvent("d2", "b"))
	got := dls.waitFor(t, 2, 10*time.Second)
	unprocessable.quiet(t, 1, 100*time.Millisecond) // 422 is final
	byID := map[string]*event.Event{}
	for _, g := range got {
		byID[g.Event.ID()] = g.Event
	}
	e := byID["d1"]
	if e == nil {
		t.Fatal("d1 not dead-lettered")
	}
	ext := e.Extensions()
	if ext["knativeerrordest"] != unprocessable.URL+"/fn" || ext["knativeerrorcode"] != "422" {
		t.Errorf("d1 extensions: %v", ext)
	}
	data, _ := base64.StdEncoding.DecodeString(fmt.Sprint(ext["knativeerrordata"]))
	if string(data) != "order 42 has no lines" {
		t.Errorf("knativeerrordata decodes to %q", data)
	}
	if string(e.Data()) != `{"hello":"world"}` || e.Type() != "a" {
		t.Errorf("dead-lettered event is not the original: %s", e)
	}
	e = byID["d2"]
	if e == nil {
		t.Fatal("d2 not dead-lettered")
	}
	if e.Extensions()["knativeerrorcode"] != "500" || e.Extensions()["knativeerrordest"] != "http://127.0.0.1:1/nothing" {
		t.Errorf("d2 extensions: %v", e.Extensions())
	}
	waitOutcome(t, r, "d1", "dead-lettered", 1)
	waitOutcome(t, r, "d2", "dead-lettered", 2)
}

// TestDeadLetterSinkAlsoFails: nothing is lost: the outcome is recorded as failed.
func TestDeadLetterSinkAlsoFails(t *testing.T) {
	failing := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { w.WriteHeader(500) })
	r := startRouter(t, brokerYAML("default")+triggerYAML("f", "  broker: default\n  subscriber:\n    uri: "+failing.URL+"\n  delivery:\n    retry: 1\n    backoffDelay: PT0.01S\n    deadLetterSink:\n      uri: "+failing.URL+"/dls\n"), "")
	r.send(t, "/default/default", binaryEvent("x1", "t"))
	o := waitOutcome(t, r, "x1", "failed", 2)
	if !strings.Contains(o["lastError"].(string), "dead-letter sink failed too") {
		t.Errorf("lastError %q", o["lastError"])
	}
	code, body := r.get(t, "/v1/triggers/default/f/outcomes?failed=true")
	if code != 200 || !strings.Contains(body, `"x1"`) {
		t.Errorf("failed outcomes of trigger f: %d %s", code, body)
	}
}

// TestNonCloudEventReplyIsAFailure: a 2xx with a body that is not a CloudEvent is retried and then
// dead-lettered with code 502, as Knative does.
func TestNonCloudEventReplyIsAFailure(t *testing.T) {
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { _, _ = w.Write([]byte("thanks!")) })
	dls := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("n", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 1\n    backoffDelay: PT0.01S\n    deadLetterSink:\n      uri: "+dls.URL+"\n"), "")
	r.send(t, "/default/default", binaryEvent("n1", "t"))
	got := dls.waitFor(t, 1, 10*time.Second)
	if len(sub.requests()) != 2 {
		t.Errorf("subscriber got %d attempts, want 2", len(sub.requests()))
	}
	if got[0].Event.Extensions()["knativeerrorcode"] != "502" {
		t.Errorf("knativeerrorcode %v, want 502", got[0].Event.Extensions()["knativeerrorcode"])
	}
}

// TestReplyChainWith36KBEvents: a 36 KB event reaches the first subscriber, whose 36 KB reply is
// published into the same broker and reaches the second trigger's subscriber.
func TestReplyChainWith36KBEvents(t *testing.T) {
	big := strings.Repeat("z", 36*1024)
	first := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		reply := event.New()
		reply.SetID("reply-of-" + req.Event.ID())
		reply.SetSource("/first")
		reply.SetType("step.two")
		_ = reply.SetData("text/plain", big+"!")
		body := cehttp.WriteBinary(w.Header(), &reply)
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	second := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("one", "  broker: default\n  filter:\n    attributes:\n      type: step.one\n  subscriber:\n    uri: "+first.URL+"\n")+
		triggerYAML("two", "  broker: default\n  filter:\n    attributes:\n      type: step.two\n  subscriber:\n    uri: "+second.URL+"\n"), "")
	req := binaryEvent("big1", "step.one")
	req.Headers["Content-Type"] = "text/plain"
	req.Body = big
	if code, _, body := r.send(t, "/default/default", req); code != 202 {
		t.Fatalf("%d %s", code, body)
	}
	if got := first.waitFor(t, 1, 10*time.Second)[0]; string(got.Body) != big {
		t.Errorf("first subscriber got %d bytes, want %d", len(got.Body), len(big))
	}
	got := second.waitFor(t, 1, 10*time.Second)[0]
	if got.Event.ID() != "reply-of-big1" || string(got.Body) != big+"!" {
		t.Errorf("second subscriber got %s with %d bytes", got.Event.ID(), len(got.Body))
	}
	o := waitOutcome(t, r, "big1", "delivered", 1)
	if o["replyId"] != "reply-of-big1" {
		t.Errorf("outcome replyId %v", o["replyId"])
	}
}

// TestTTLEndsReplyLoop: a subscriber that answers every event with another event of the same type
// would loop forever; the hop limit ends it after maxTTL deliveries.
func TestTTLEndsReplyLoop(t *testing.T) {
	sub := newSubscriber(t, func(n int, _ received, w http.ResponseWriter) {
		reply := event.New()
		reply.SetID(fmt.Sprintf("loop-%d", n))
		reply.SetSource("/loop")
		reply.SetType("loop")
		cehttp.WriteBinary(w.Header(), &reply)
		w.WriteHeader(http.StatusOK)
	})
	r := startRouter(t, brokerYAML("default")+triggerYAML("loop", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"), "    maxTTL: 5\n")
	r.send(t, "/default/default", binaryEvent("loop-0", "loop"))
	sub.waitFor(t, 5, 10*time.Second)
	sub.quiet(t, 5, 500*time.Millisecond)
}

// TestExactlyOnceSourceToSink mirrors Knative's source-to-sink test: every accepted event reaches
// its destination exactly once, also when some are rejected by the subscriber and the dead-letter
// sink itself fails the first attempt of each.
func TestExactlyOnceSourceToSink(t *testing.T) {
	const n = 200
	sink := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if strings.HasSuffix(req.Event.ID(), "-bad") {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
	})
	var dlsMu sync.Mutex
	dlsSeen := map[string]bool{}
	dls := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		dlsMu.Lock()
		first := !dlsSeen[req.Event.ID()]
		dlsSeen[req.Event.ID()] = true
		dlsMu.Unlock()
		if first {
			w.WriteHeader(http.StatusServiceUnavailable) // flaky: every first attempt fails
		}
	})
	r := startRouter(t, brokerYAML("default")+triggerYAML("sink", "  broker: default\n  subscriber:\n    uri: "+sink.URL+"\n  delivery:\n    retry: 3\n    backoffDelay: PT0.01S\n    deadLetterSink:\n      uri: "+dls.URL+"\n"), "")
	bad := 0
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("once-%d", i)
		if i%10 == 0 {
			id += "-bad"
			bad++
		}
		if code, _, body := r.send(t, "/default/default", binaryEvent(id, "t")); code != 202 {
			t.Fatalf("send %s: %d %s", id, code, body)
		}
	}
	sink.waitFor(t, n, 20*time.Second)
	dls.waitFor(t, 2*bad, 20*time.Second)
	sink.quiet(t, n, 300*time.Millisecond)
	count := map[string]int{}
	for _, req := range sink.requests() {
		count[req.Event.ID()]++
	}
	dlsCount := map[string]int{}
	for _, req := range dls.requests() {
		dlsCount[req.Event.ID()]++
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("once-%d", i)
		if i%10 == 0 {
			id += "-bad"
			if count[id] != 1 || dlsCount[id] != 2 {
				t.Errorf("%s: subscriber %d times (want 1), dead-letter sink %d attempts (want 2: one flaky, one accepted)", id, count[id], dlsCount[id])
			}
			continue
		}
		if count[id] != 1 || dlsCount[id] != 0 {
			t.Errorf("%s: subscriber %d times, dead-letter sink %d times; want exactly once to the subscriber", id, count[id], dlsCount[id])
		}
	}
}
