package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitOutcome polls GET /v1/events/{id} until the event has an outcome with status, and checks the
// attempts. It returns that outcome.
func waitOutcome(t *testing.T, r *router, id, status string, attempts int) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		code, body := r.get(t, "/v1/events/"+id)
		last = body
		if code == 200 {
			var out struct {
				Outcomes []map[string]any `json:"outcomes"`
			}
			if err := json.Unmarshal([]byte(body), &out); err != nil {
				t.Fatalf("decoding %s: %v", body, err)
			}
			for _, o := range out.Outcomes {
				if o["status"] == status {
					if int(o["attempts"].(float64)) != attempts {
						t.Errorf("event %s: %v attempts, want %d", id, o["attempts"], attempts)
					}
					return o
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("event %s never got outcome %q; last answer: %s", id, status, last)
	return nil
}

// TestRedrive: events that failed while the subscriber was broken are found, redriven once it is
// fixed, delivered, and not redriven twice.
func TestRedrive(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		if broken.Load() {
			w.WriteHeader(http.StatusBadRequest)
		}
	})
	r := startRouter(t, brokerYAML("default")+triggerYAML("fix", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"), "")
	for i := 0; i < 5; i++ {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("rd%d", i), "t"))
	}
	for i := 0; i < 5; i++ {
		waitOutcome(t, r, fmt.Sprintf("rd%d", i), "failed", 1)
	}
	broken.Store(false)
	cli := func(args ...string) (int, string) {
		cmd := exec.Command(binary, args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return code, string(out)
	}
	code, out := cli("redrive", "--admin-url", r.Admin, "--trigger", "default/fix", "--event", "rd0")
	if code != 0 || !strings.Contains(out, `"redriven": 1`) {
		t.Fatalf("redrive one event: %d %s", code, out)
	}
	waitOutcome(t, r, "rd0", "delivered", 1)
	code, out = cli("redrive", "--admin-url", r.Admin, "--trigger", "default/fix")
	if code != 0 || !strings.Contains(out, `"redriven": 4`) {
		t.Fatalf("redrive the rest: %d %s", code, out)
	}
	for i := 1; i < 5; i++ {
		waitOutcome(t, r, fmt.Sprintf("rd%d", i), "delivered", 1)
	}
	code, out = cli("redrive", "--admin-url", r.Admin, "--trigger", "default/fix")
	if code != 0 || !strings.Contains(out, `"redriven": 0`) {
		t.Fatalf("a second redrive re-queued again: %d %s", code, out)
	}
	code, out = cli("events", "get", "rd3", "--admin-url", r.Admin)
	if code != 0 || !strings.Contains(out, `"status": "failed"`) || !strings.Contains(out, `"status": "delivered"`) {
		t.Errorf("events get shows the history: %d %s", code, out)
	}
	if code, _ := cli("redrive", "--admin-url", r.Admin, "--trigger", "default/nope"); code != 1 {
		t.Errorf("redrive of an unknown trigger exits %d, want 1", code)
	}
	if got := len(sub.requests()); got != 10 {
		t.Errorf("subscriber got %d requests, want 5 failed + 5 redriven", got)
	}

	// Redrive by filter, across the broker's triggers: a dry run counts and sends nothing; the
	// redrive sends only the events of the type asked for.
	broken.Store(true)
	for i, typ := range []string{"a", "a", "b"} {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("rf%d", i), typ))
	}
	for i := 0; i < 3; i++ {
		waitOutcome(t, r, fmt.Sprintf("rf%d", i), "failed", 1)
	}
	broken.Store(false)
	code, out = cli("redrive", "--admin-url", r.Admin, "--broker", "default/default", "--type", "a", "--dry-run")
	if code != 0 || !strings.Contains(out, `"total": 2`) || !strings.Contains(out, `"matching": 2`) || !strings.Contains(out, `"dryRun": true`) {
		t.Fatalf("dry run: %d %s", code, out)
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(sub.requests()); got != 13 {
		t.Fatalf("subscriber got %d requests after the dry run, want 13: a dry run sends nothing", got)
	}
	code, out = cli("redrive", "--admin-url", r.Admin, "--broker", "default/default", "--type", "a")
	if code != 0 || !strings.Contains(out, `"total": 2`) || !strings.Contains(out, `"redriven": 2`) {
		t.Fatalf("redrive by type: %d %s", code, out)
	}
	waitOutcome(t, r, "rf0", "delivered", 1)
	waitOutcome(t, r, "rf1", "delivered", 1)
	code, out = cli("events", "list", "--admin-url", r.Admin, "--trigger", "default/fix", "--status", "failed", "-o", "json")
	if code != 0 || !strings.Contains(out, `"rf2"`) {
		t.Errorf("rf2 (type b) should still be failed and listed: %d %s", code, out)
	}
	if code, out := cli("redrive", "--admin-url", r.Admin, "--type", "a"); code != 2 || !strings.Contains(out, "--trigger NAMESPACE/NAME or --broker NAMESPACE/NAME is required") {
		t.Errorf("redrive without a trigger or broker: %d %s", code, out)
	}
}

// TestKnativeMetricNames (issue #19): Knative's dashboards query mt_broker_ingress_* and
// mt_broker_filter_* (broker_* in older releases); Switchyard exported switchyard_* only, so none of
// them drew. Both families are now exported as Knative's: ms, counters without _total, the filter
// counting attempts.
func TestKnativeMetricNames(t *testing.T) {
	sub := newSubscriber(t, func(n int, _ received, w http.ResponseWriter) {
		if n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // one failed attempt, then delivered
		}
	})
	r := startRouter(t, brokerYAML("default")+triggerYAML("orders", "  broker: default\n  filter:\n    attributes:\n      type: order.created\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 2\n    backoffDelay: PT0.01S\n"), "")
	if code, _, body := r.send(t, "/default/default", binaryEvent("m-1", "order.created")); code != http.StatusAccepted {
		t.Fatalf("send: %d %s", code, body)
	}
	sub.waitFor(t, 2, 10*time.Second)
	var m string
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, m = r.get(t, "/metrics")
		if metricValue(m, `mt_broker_filter_event_count{broker_name="default",filter_type="order.created",namespace_name="default",response_code="200",response_code_class="2xx",trigger_name="orders"}`) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, prefix := range []string{"mt_broker_", "broker_"} {
		for series, want := range map[string]float64{
			`ingress_event_count{broker_name="default",event_type="order.created",namespace_name="default",response_code="202",response_code_class="2xx"}`:                                            1,
			`ingress_event_dispatch_latencies_count{broker_name="default",event_type="order.created",namespace_name="default",response_code="202",response_code_class="2xx"}`:                         1,
			`filter_event_count{broker_name="default",filter_type="order.created",namespace_name="default",response_code="503",response_code_class="5xx",trigger_name="orders"}`:                      1,
			`filter_event_count{broker_name="default",filter_type="order.created",namespace_name="default",response_code="200",response_code_class="2xx",trigger_name="orders"}`:                      1,
			`filter_event_dispatch_latencies_count{broker_name="default",filter_type="order.created",namespace_name="default",response_code="200",response_code_class="2xx",trigger_name="orders"}`:   1,
			`filter_event_processing_latencies_count{broker_name="default",filter_type="order.created",namespace_name="default",response_code="200",response_code_class="2xx",trigger_name="orders"}`: 1,
		} {
			if got := metricValue(m, prefix+series); got != want {
				t.Errorf("%s%s = %v, want %v", prefix, series, got, want)
			}
		}
	}
	if !regexp.MustCompile(`(?m)^mt_broker_filter_event_dispatch_latencies_bucket\{[^}]*le="10000"\} 1$`).MatchString(m) {
		t.Error("the filter latency histogram lacks Knative's 10000 ms bucket")
	}
}
