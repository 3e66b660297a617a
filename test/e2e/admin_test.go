package e2e

import (
	"encoding/json"
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
