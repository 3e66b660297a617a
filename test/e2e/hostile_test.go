package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// hostileManifests: a catch-all trigger (so any event reaches the metrics and delivery path) and a
// generic webhook source without verification whose event type comes from a header.
func hostileManifests(sub *subscriber) string {
	return brokerYAML("default") + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n") + `apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata:
  name: open
  namespace: default
spec:
  provider: generic
  generic:
    verification: none
    type: {header: X-Event-Type}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
---
`
}

// TestHostileAttributesAreRefused (issue #16, items 1 and 2): attribute values and names that used
// to kill the process (the Prometheus client panicking on a non-UTF-8 event_type label in the
// delivery goroutine) or panic inside sdk-go (an empty extension name) are answered 400 naming the
// attribute, in every content mode and through webhooks, and the process goes on serving.
func TestHostileAttributesAreRefused(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, hostileManifests(sub), "")
	binary := func(extra map[string]string) ceRequest {
		req := binaryEvent("h-1", "com.example.order")
		for k, v := range extra {
			req.Headers[k] = v
		}
		return req
	}
	structured := func(body string) ceRequest {
		return ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"}, Body: body}
	}
	cases := []struct {
		name string
		req  ceRequest
		want string
	}{
		{"binary percent-encoded invalid UTF-8", binary(map[string]string{"Ce-Type": "com.example.order.%FF"}), "type: value is not valid UTF-8"},
		{"binary raw invalid UTF-8", binary(map[string]string{"Ce-Type": "com.example.order.\xff"}), "type: value is not valid UTF-8"},
		{"binary control character", binary(map[string]string{"Ce-Subject": "a%01b"}), "subject: value contains U+0001"},
		{"empty extension name", binary(map[string]string{"Ce-": "x"}), "empty name"},
		{"bad extension name", binary(map[string]string{"Ce-Bad_name": "x"}), `"bad_name"`},
		{"structured invalid UTF-8", structured("{\"specversion\":\"1.0\",\"id\":\"s\",\"source\":\"/s\",\"type\":\"t\xff\"}"), "type: value is not valid UTF-8"},
		{"batch invalid UTF-8", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"},
			Body: "[{\"specversion\":\"1.0\",\"id\":\"b\",\"source\":\"/s\",\"type\":\"t\xff\"}]"}, "batch event 0: invalid CloudEvent: type: value is not valid UTF-8"},
	}
	for _, c := range cases {
		code, _, body := r.send(t, "/default/default", c.req)
		if code != http.StatusBadRequest || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want 400 containing %q", c.name, code, body, c.want)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, r.Ingress+"/webhooks/default/open", strings.NewReader(`{"a":1}`))
	req.Header.Set("X-Event-Type", "com.example.order.\xff")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("webhook with an invalid type: %d, want 400", resp.StatusCode)
	}

	// Still alive, still delivering, and /metrics still renders.
	if code, _, body := r.send(t, "/default/default", binaryEvent("after", "com.example.order")); code != 202 {
		t.Fatalf("valid event after the hostile ones: %d %s", code, body)
	}
	got := sub.waitFor(t, 1, 10*time.Second)
	if got[0].Event == nil || got[0].Event.ID() != "after" {
		t.Fatalf("subscriber got %+v; nothing hostile should have been delivered", got[0])
	}
	if code, _ := r.get(t, "/metrics"); code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	select {
	case <-r.exited:
		t.Fatalf("switchyard exited: %v", r.exitError)
	default:
	}
}

// TestEventTypeLabelsAreBounded (issue #16, item 6): producers choose event types, so each broker
// gets at most spec.metrics.maxEventTypes event_type values; the rest are counted under "(other)".
func TestEventTypeLabelsAreBounded(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouterIn(t, t.TempDir(), hostileManifests(sub), "", "  metrics:\n    maxEventTypes: 20\n")
	const types = 60
	for i := range types {
		if code, _, body := r.send(t, "/default/default", binaryEvent(fmt.Sprintf("c-%d", i), fmt.Sprintf("com.example.t%d", i))); code != 202 {
			t.Fatalf("event %d: %d %s", i, code, body)
		}
	}
	sub.waitFor(t, types, 20*time.Second)
	_, metrics := r.get(t, "/metrics")
	for _, name := range []string{"switchyard_broker_event_count", "switchyard_trigger_event_count"} {
		distinct := map[string]bool{}
		for _, m := range regexp.MustCompile(name+`\{[^}]*event_type="([^"]*)"`).FindAllStringSubmatch(metrics, -1) {
			distinct[m[1]] = true
		}
		if len(distinct) != 21 || !distinct["(other)"] {
			t.Errorf("%s has %d event_type values (want 20 and \"(other)\"): %v", name, len(distinct), distinct)
		}
	}
	if !strings.Contains(metrics, `switchyard_event_type_overflow_total{broker_name="default",namespace_name="default"}`) {
		t.Error("no switchyard_event_type_overflow_total series")
	}
}

// TestSlowBodiesAreBounded (issue #16, item 4): bodies announced large and sent slowly used to be
// allocated at their announced length (1,000 connections announcing 4 MiB: 4.2 GB of heap), and a
// chunked body that never ended was held without an answer. Now memory follows the bytes that
// arrived, and the read timeout answers 408.
func TestSlowBodiesAreBounded(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, hostileManifests(sub), "    readTimeout: 2s\n")
	host := strings.TrimPrefix(r.Ingress, "http://")
	base := rssMB(t, r.cmd.Process.Pid)

	const conns = 300
	var open []net.Conn
	defer func() {
		for _, c := range open {
			c.Close()
		}
	}()
	for i := range conns {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
		path := "/default/default"
		if i%2 == 1 {
			path = "/webhooks/default/open"
		}
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nCe-Specversion: 1.0\r\nCe-Id: slow-%d\r\nCe-Source: /s\r\nCe-Type: t\r\nContent-Length: 4194304\r\n\r\nx", path, i)
	}
	time.Sleep(time.Second) // the router has read every head and the one byte
	held := rssMB(t, r.cmd.Process.Pid) - base
	t.Logf("%d connections announcing 4 MiB and sending 1 byte: RSS %.0f MB above the start", conns, held)
	if held > 100 {
		t.Errorf("RSS grew by %.0f MB: bodies are allocated as announced, not as received", held)
	}

	// A chunked body that never ends is answered 408 once the read timeout (2s) has passed.
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprint(c, "POST /default/default HTTP/1.1\r\nHost: x\r\nCe-Specversion: 1.0\r\nCe-Id: chunked\r\nCe-Source: /s\r\nCe-Type: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n")
	go func() { // keep trickling, as a slow-loris would
		for i := 0; i < 20; i++ {
			if _, err := fmt.Fprint(c, "1\r\ny\r\n"); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to an endless chunked body after %s: %v", time.Since(start), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 5*time.Second {
		t.Errorf("endless chunked body: %d after %s, want 408 after about 2s", resp.StatusCode, time.Since(start))
	}
	// The announced-large bodies got the same answer, and nothing of theirs was routed.
	for _, c := range open[:4] {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("stalled body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("stalled body: %d, want 408", resp.StatusCode)
		}
	}
	sub.quiet(t, 0, 100*time.Millisecond)
}
