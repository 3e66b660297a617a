package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
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
}
