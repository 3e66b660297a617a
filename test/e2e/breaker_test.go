package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestCircuitBreakerOpensAndCloses (issue #35, item 2): a subscriber that answers 503 for two
// seconds and then recovers, behind a trigger with switchyard.dev/circuit-breaker, on an
// in-memory and on a Kafka-class broker. While it fails the breaker opens (GET /v1/triggers and
// switchyard_trigger_circuit_open say so) and only a handful of attempts reach it, not one per
// retry of every event (one delivery in flight at a time, so that the attempts under way when it
// opens, which finish, are few); once a probe succeeds it closes, and every accepted event is
// delivered.
func TestCircuitBreakerOpensAndCloses(t *testing.T) {
	kafka := testenv.Kafka(t)
	for _, class := range []string{"memory", "kafka"} {
		t.Run(class, func(t *testing.T) {
			var failing atomic.Bool
			failing.Store(true)
			var mu sync.Mutex
			delivered := map[string]bool{}
			var duringFailure atomic.Int32
			sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
				if failing.Load() {
					duringFailure.Add(1)
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				mu.Lock()
				delivered[req.Event.ID()] = true
				mu.Unlock()
			})
			broker, spec := brokerYAML("default"), ""
			if class == "kafka" {
				broker = kafkaBroker("default", fmt.Sprintf("e2e-breaker-%d", time.Now().UnixNano()))
				spec = fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 2\n", kafka)
			}
			trigger := `apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: fragile
  namespace: default
  annotations:
    switchyard.dev/circuit-breaker: "failures=3,cooldown=400ms"
    switchyard.dev/concurrency: "1"
spec:
  broker: default
  subscriber:
    uri: ` + sub.URL + `
  delivery: {retry: 40, backoffPolicy: linear, backoffDelay: PT0.05S}
---
`
			r := startRouterIn(t, t.TempDir(), broker+trigger, "", spec)
			const n = 30
			for i := range n {
				if code, _, body := r.send(t, "/default/default", binaryEvent(fmt.Sprintf("cb-%02d", i), "t")); code != http.StatusAccepted {
					t.Fatalf("send: %d %s", code, body)
				}
			}
			circuit := func() string {
				_, body := r.get(t, "/v1/triggers")
				var got struct {
					Triggers []struct{ Name, Circuit string } `json:"triggers"`
				}
				_ = json.Unmarshal([]byte(body), &got)
				for _, tr := range got.Triggers {
					if tr.Name == "fragile" {
						return tr.Circuit
					}
				}
				return ""
			}
			// The failing starts with the first attempts (a Kafka-class broker's reader may take
			// seconds to join its group); then it lasts 2 s.
			for start := time.Now(); duringFailure.Load() < 3; time.Sleep(10 * time.Millisecond) {
				if time.Since(start) > 20*time.Second {
					t.Fatalf("only %d attempts reached the subscriber in 20 s", duringFailure.Load())
				}
			}
			seenOpen, metricOpen := false, false
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				seenOpen = seenOpen || circuit() == "open"
				_, metrics := r.get(t, "/metrics")
				metricOpen = metricOpen || strings.Contains(metrics, `switchyard_trigger_circuit_open{namespace_name="default",trigger_name="fragile"} 1`) ||
					strings.Contains(metrics, `switchyard_trigger_circuit_open{broker_name="default",namespace_name="default",trigger_name="fragile"} 1`)
			}
			attemptsWhileFailing := duringFailure.Load()
			failing.Store(false)
			if !seenOpen {
				t.Error("GET /v1/triggers never showed the breaker open while the subscriber failed")
			}
			if !metricOpen {
				_, metrics := r.get(t, "/metrics")
				var lines []string
				for _, l := range strings.Split(metrics, "\n") {
					if strings.HasPrefix(l, "switchyard_trigger_circuit_open") {
						lines = append(lines, l)
					}
				}
				t.Errorf("switchyard_trigger_circuit_open never read 1 while the subscriber failed; now:\n%s", strings.Join(lines, "\n"))
			}
			// 3 failures open it, then a probe per 400 ms cool-down in the 2 s of failures.
			if attemptsWhileFailing > 12 {
				t.Errorf("%d attempts reached the failing subscriber, want a handful (3, then a probe per cool-down)", attemptsWhileFailing)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				mu.Lock()
				got := len(delivered)
				mu.Unlock()
				if got == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d events delivered after the subscriber recovered", got, n)
				}
				time.Sleep(50 * time.Millisecond)
			}
			if c := circuit(); c != "closed" {
				t.Errorf("after recovery the breaker is %q, want closed", c)
			}
			t.Logf("%s: %d attempts reached the subscriber while it failed; all %d events delivered", class, attemptsWhileFailing, n)
		})
	}
}
