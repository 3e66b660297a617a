package e2e

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
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

// metricValue reads one sample's value from /metrics text; -1 when absent.
func metricValue(metrics, series string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestMemoryIsBoundedByBytes (issue #16, items 5 and 12): 200 events of 4 MB were all accepted
// (826 MB RSS), and 150 failed ones stayed in the result store (607 MB) after delivery ended; a
// batch larger than the queue got 429 for ever. Now in-memory brokers hold at most
// maxUnfinishedBytes of events (429 past it), the result store keeps at most maxEventBytes of failed
// events, and a batch that can never fit gets 413.
func TestMemoryIsBoundedByBytes(t *testing.T) {
	release := make(chan struct{})
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusInternalServerError)
	})
	manifests := brokerYAML("default") + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 0\n")
	// As in a pod with a 320 MiB memory limit, where Switchyard sets Go's soft limit to 80 % of it
	// (cmd/switchyard/gc.go): the bounds keep what is live under it, the soft limit keeps the
	// garbage of the refused bodies from piling up on top (GOGC is 400).
	t.Setenv("GOMEMLIMIT", "256MiB")
	r := startRouterIn(t, t.TempDir(), manifests, "    queueSize: 10\n    maxUnfinishedBytes: 67108864\n",
		"  results:\n    memory:\n      maxEventBytes: 16777216\n")
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	base := rssMB(t, r.cmd.Process.Pid)
	body := strings.Repeat("x", 4_000_000)
	var accepted, refused int
	for i := range 100 {
		req := binaryEvent(fmt.Sprintf("big-%d", i), "t")
		req.Body = body
		code, h, msg := r.send(t, "/default/default", req)
		switch {
		case code == 202:
			accepted++
		case code == 429 && h.Get("Retry-After") != "" && strings.Contains(msg, "maxUnfinishedBytes"):
			refused++
		default:
			t.Fatalf("event %d: %d %q", i, code, msg)
		}
	}
	peak := rssMB(t, r.cmd.Process.Pid) - base
	t.Logf("100 events of 4 MB to a stalled subscriber: %d accepted, %d refused with 429; RSS +%.0f MB", accepted, refused, peak)
	if accepted == 0 || accepted > 16 || refused == 0 {
		t.Errorf("accepted %d (want 1 to 16 under a 64 MiB bound), refused %d", accepted, refused)
	}
	if peak > 320 {
		t.Errorf("RSS grew by %.0f MB holding at most 64 MiB of events, past the pod's 320 MiB", peak)
	}

	batch := "["
	for i := range 11 {
		if i > 0 {
			batch += ","
		}
		batch += fmt.Sprintf(`{"specversion":"1.0","id":"batch-%d","source":"/s","type":"t"}`, i)
	}
	code, _, msg := r.send(t, "/default/default", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: batch + "]"})
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "queueSize") {
		t.Errorf("a batch of 11 for a queue of 10: %d %q, want 413 naming queueSize", code, msg)
	}

	close(release) // every accepted event now fails (500, no retry) and is kept for redrive
	sub.waitFor(t, accepted, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, metrics := r.get(t, "/metrics")
		unfinished := metricValue(metrics, "switchyard_unfinished_event_bytes")
		kept := metricValue(metrics, "switchyard_results_event_bytes")
		if unfinished == 0 && kept > 0 {
			if kept > 16<<20 {
				t.Errorf("the result store keeps %.0f bytes of failed events, bound 16 MiB", kept)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unfinished bytes %v, kept %v after every delivery failed", unfinished, kept)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAliasBombReloadIsRejected (issue #16, item 7): a configuration change whose aliases expand to
// billions of nodes used to pin a core and block every later reload. It is rejected at once with
// the file and line, the old configuration keeps serving, and the next good change applies.
func TestAliasBombReloadIsRejected(t *testing.T) {
	a, b := newSubscriber(t, nil), newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+a.URL+"\n"), "")
	settings := fmt.Sprintf(settingsDoc, strings.TrimPrefix(r.Ingress, "http://"), "", strings.TrimPrefix(r.Admin, "http://"), "")
	var bomb strings.Builder
	bomb.WriteString("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: bomb, namespace: default}\nspec:\n  broker: default\n  subscriber: {uri: \"http://fn\"}\n  filters:\n")
	bomb.WriteString("    - all: &a0 [" + strings.Repeat("{exact: {type: x}}, ", 8) + "{exact: {type: x}}]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&bomb, "    - all: &a%d [%s{all: *a%d}]\n", i, strings.Repeat(fmt.Sprintf("{all: *a%d}, ", i-1), 8), i-1)
	}
	r.writeConfig(settings + brokerYAML("default") + triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+a.URL+"\n") + bomb.String())
	waitFor(t, 5*time.Second, func() bool {
		_, body := r.get(t, "/metrics")
		return strings.Contains(body, `switchyard_config_reloads_total{result="rejected"} 1`)
	})
	if !strings.Contains(r.log.String(), "alias bomb") {
		t.Error("the rejection does not say why")
	}
	r.writeConfig(settings + brokerYAML("default") + triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+b.URL+"\n"))
	waitFor(t, 5*time.Second, func() bool {
		_, body := r.get(t, "/v1/triggers")
		return strings.Contains(body, b.URL)
	})
	r.send(t, "/default/default", binaryEvent("after-bomb", "x"))
	b.waitFor(t, 1, 5*time.Second)
}

// TestAdminAPIIsGuarded (issue #16, item 9): the admin API used to take cross-site POSTs, deliver a
// redriven event once per request while the first was still in flight, and show subscriber URLs
// with their credentials. Now: roles with bearer tokens, cross-origin POSTs refused, one redrive
// per event at a time, credentials redacted.
func TestAdminAPIIsGuarded(t *testing.T) {
	dir := t.TempDir()
	for name, value := range map[string]string{"reader": "r3ader-token", "operator": "0perator-token"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var fixed atomic.Bool
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		if fixed.Load() {
			time.Sleep(time.Second) // the redriven run is in flight meanwhile
			return
		}
		w.WriteHeader(http.StatusBadRequest)
	})
	withCreds := strings.Replace(sub.URL, "http://", "http://fn-user:fn-s3cret@", 1)
	// Right after admin.addr in settingsDoc, so these lines belong to the admin block.
	auth := fmt.Sprintf("    auth:\n      readers: {tokens: [{file: %s}]}\n      operators: {tokens: [{file: %s}]}\n",
		filepath.Join(dir, "reader"), filepath.Join(dir, "operator"))
	r := startRouterIn(t, t.TempDir(), brokerYAML("default")+triggerYAML("fn", "  broker: default\n  subscriber:\n    uri: "+withCreds+"\n  delivery:\n    retry: 0\n"), "", auth)

	call := func(method, path, token string, header map[string]string) (int, string) {
		req, _ := http.NewRequest(method, r.Admin+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := call("GET", "/v1/triggers", "", nil); code != 401 {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := call("GET", "/v1/triggers", "wrong", nil); code != 401 {
		t.Errorf("wrong token: %d, want 401", code)
	}
	for _, open := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := call("GET", open, "", nil); code != 200 {
			t.Errorf("%s without a token: %d, want 200 (probes and scrapes stay open)", open, code)
		}
	}
	code, body := call("GET", "/v1/triggers", "r3ader-token", nil)
	if code != 200 || strings.Contains(body, "fn-s3cret") || !strings.Contains(body, "fn-user:xxxxx@") {
		t.Errorf("triggers as a reader: %d %s (want 200 with the subscriber's password redacted)", code, body)
	}
	if code, _ := call("POST", "/v1/triggers/default/fn/redrive", "r3ader-token", nil); code != 403 {
		t.Errorf("redrive as a reader: %d, want 403", code)
	}

	r.send(t, "/default/default", binaryEvent("adm-1", "t"))
	sub.waitFor(t, 1, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := call("GET", "/v1/events/adm-1", "r3ader-token", nil)
		if code == 200 && strings.Contains(body, `"failed"`) {
			if strings.Contains(body, "fn-s3cret") {
				t.Errorf("the outcome shows the subscriber's password: %s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed outcome: %d %s", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := call("POST", "/v1/triggers/default/fn/redrive?event=adm-1", "0perator-token", map[string]string{"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}); code != 403 {
		t.Errorf("cross-site redrive with an operator's token: %d %s, want 403", code, body)
	}
	fixed.Store(true)
	redriven := 0
	for range 5 { // the first starts a run that takes a second; the others come while it is in flight
		code, body := call("POST", "/v1/triggers/default/fn/redrive?event=adm-1", "0perator-token", nil)
		if code != 200 {
			t.Fatalf("redrive: %d %s", code, body)
		}
		var out struct{ Redriven int }
		_ = json.Unmarshal([]byte(body), &out)
		redriven += out.Redriven
	}
	if redriven != 1 {
		t.Errorf("5 redrives of one event while its run was in flight re-queued it %d times, want 1", redriven)
	}
	sub.waitFor(t, 2, 5*time.Second)
	sub.quiet(t, 2, 1500*time.Millisecond)
}

// TestEndlessSubscriberHeadersAreBounded (issue #16, item 3): a subscriber streaming headers for
// ever took the router to 6 GB RSS in 12 s. The attempt now fails once the head passes
// spec.subscribers.maxResponseHeaderBytes, memory stays flat, and the event is recorded as failed.
func TestEndlessSubscriberHeadersAreBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Read(make([]byte, 64<<10))
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\n")
				line := []byte(strings.Repeat("X-Filler: "+strings.Repeat("a", 100)+"\r\n", 40))
				for written.Load() < 1<<30 { // at most 1 GiB in all, then the test is over anyway
					select {
					case <-stop:
						return
					default:
					}
					n, err := c.Write(line)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	defer ln.Close()
	r := startRouter(t, brokerYAML("default")+triggerYAML("headers", "  broker: default\n  subscriber:\n    uri: http://"+ln.Addr().String()+"\n  delivery:\n    retry: 2\n    backoffDelay: PT0.1S\n"), "")
	base := rssMB(t, r.cmd.Process.Pid)
	for i := range 4 {
		if code, _, body := r.send(t, "/default/default", binaryEvent(fmt.Sprintf("hdr-%d", i), "t")); code != 202 {
			t.Fatalf("%d %s", code, body)
		}
	}
	for i := range 4 {
		o := waitOutcome(t, r, fmt.Sprintf("hdr-%d", i), "failed", 3)
		if !strings.Contains(fmt.Sprint(o["lastError"]), "response headers larger than") {
			t.Errorf("outcome does not name the bound: %v", o["lastError"])
		}
	}
	grown := rssMB(t, r.cmd.Process.Pid) - base
	t.Logf("12 attempts against a subscriber streaming headers: it wrote %d MB, RSS +%.0f MB", written.Load()>>20, grown)
	if grown > 50 {
		t.Errorf("RSS grew by %.0f MB", grown)
	}
}

// TestReplyLoopIsBounded (issue #16, item 8): two triggers whose subscribers both reply filled the
// 10,000-event queue from one seed event in 2.5 s, after which every producer got 429. The reply
// budget stops the lineage at spec.ingress.maxRepliesPerEvent, and producers are still served.
func TestReplyLoopIsBounded(t *testing.T) {
	var replies atomic.Int64
	echo := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		n := replies.Add(1)
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Id", fmt.Sprint("echo-", n))
		w.Header().Set("Ce-Source", "/echo")
		w.Header().Set("Ce-Type", "loop")
		w.WriteHeader(http.StatusOK)
	})
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("echo-a", "  broker: default\n  filter: {attributes: {type: loop}}\n  subscriber:\n    uri: "+echo.URL+"\n")+
		triggerYAML("echo-b", "  broker: default\n  filter: {attributes: {type: loop}}\n  subscriber:\n    uri: "+echo.URL+"\n"),
		"    maxRepliesPerEvent: 200\n")
	if code, _, body := r.send(t, "/default/default", binaryEvent("seed", "loop")); code != 202 {
		t.Fatalf("%d %s", code, body)
	}
	// Wait until the loop has died down.
	for last := int64(-1); ; {
		time.Sleep(300 * time.Millisecond)
		n := replies.Load()
		if n == last {
			break
		}
		last = n
	}
	if n := replies.Load(); n > 2*201 {
		t.Fatalf("%d deliveries from one seed event with a budget of 200 replies", n)
	}
	_, metrics := r.get(t, "/metrics")
	if !strings.Contains(metrics, "switchyard_trigger_replies_over_budget_total") {
		t.Error("replies over budget are not counted")
	}
	if code, _, body := r.send(t, "/default/default", binaryEvent("after-loop", "other")); code != 202 {
		t.Errorf("a producer after the loop: %d %s", code, body)
	}
}

// TestWebhookReplayIsNotRouted (issue #16, item 11): a captured GitHub delivery replayed under a
// new X-GitHub-Delivery and re-typed through the unsigned X-GitHub-Event was routed again; a
// Standard Webhooks "whsec_" secret (an empty key) is refused at load.
func TestWebhookReplayIsNotRouted(t *testing.T) {
	dir := t.TempDir()
	secret := "gh-hostile-0123456789"
	if err := os.WriteFile(filepath.Join(dir, "gh"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, nil)
	manifests := brokerYAML("default") + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n") + webhookSourceYAML("gh", "github", filepath.Join(dir, "gh"))
	r := startRouter(t, manifests, "")
	body := `{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"acme/shop"}}`
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	sig := "sha256=" + hex.EncodeToString(m.Sum(nil))
	post := func(event, delivery string) int {
		req, _ := http.NewRequest(http.MethodPost, r.Ingress+"/webhooks/default/gh", strings.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", sig)
		req.Header.Set("X-GitHub-Event", event)
		req.Header.Set("X-GitHub-Delivery", delivery)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post("push", "d-1"); code != 202 {
		t.Fatalf("original: %d", code)
	}
	if code := post("release", "d-2-forged"); code != 200 {
		t.Errorf("replay under a new delivery id: %d, want 200 without routing", code)
	}
	sub.waitFor(t, 1, 5*time.Second)
	sub.quiet(t, 1, 300*time.Millisecond)

	if err := os.WriteFile(filepath.Join(dir, "sw"), []byte("whsec_"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sw.yaml")
	if err := os.WriteFile(cfg, []byte(brokerYAML("default")+webhookSourceYAML("sw", "standardwebhooks", filepath.Join(dir, "sw"))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "validate", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the secret is 0 bytes; at least 16 are needed") {
		t.Errorf("validate of an empty whsec_ key: %v %s", err, out)
	}
}
