package broker

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/memstore"
)

// TestCircuitBreakerCycle: a subscriber that fails for a second and then recovers. The breaker
// opens after 3 failures in a row, holds every attempt for its cool-down, lets one probe through
// per cool-down while the subscriber still fails, and closes on the first probe that succeeds;
// every event is delivered in the end, and the subscriber saw a handful of attempts while it was
// failing, not one per retry of every event.
func TestCircuitBreakerCycle(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	var mu sync.Mutex
	var duringFailure, total int
	sub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		total++
		if failing.Load() {
			duringFailure++
		}
		mu.Unlock()
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer sub.Close()
	annotations := fmt.Sprintf("    %s: \"failures=3,cooldown=300ms\"\n    %s: \"1\"\n", config.AnnotationCircuitBreaker, config.AnnotationConcurrency)
	cfg := retryConfig(t, annotations, sub.URL, "{retry: 30, backoffPolicy: linear, backoffDelay: PT0.05S}")
	results := memstore.New(100)
	r := newRouter(results)
	r.Apply(cfg)
	ctx := context.Background()
	ref := router.BrokerRef{Namespace: "ns", Name: "b"}
	const n = 20
	for i := range n {
		if err := r.Publish(ctx, ref, []*router.Envelope{ev(fmt.Sprintf("e%d", i), "any", nil)}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		seen[r.Triggers()[0].Circuit] = true
	}
	failing.Store(false)
	if !seen["open"] {
		t.Errorf("the breaker was never seen open while the subscriber failed: %v", seen)
	}
	waitDelivered(t, r, n)
	st := r.Triggers()[0]
	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r.Shutdown(shutdownCtx)
	if st.Circuit != "closed" || st.CircuitOpened < 2 {
		t.Errorf("after recovery: circuit %q, opened %d times; want closed, opened at least twice (a failed probe reopens it)", st.Circuit, st.CircuitOpened)
	}
	mu.Lock()
	defer mu.Unlock()
	// 3 failures open it; then one probe per 300 ms cool-down within the second of failures.
	if duringFailure > 8 {
		t.Errorf("%d attempts reached the failing subscriber; want at most 3 and a probe per cool-down", duringFailure)
	}
	if st.Delivered != n || st.Failed != 0 {
		t.Errorf("delivered %d, failed %d of %d", st.Delivered, st.Failed, n)
	}
	t.Logf("%d attempts in all, %d while the subscriber failed; opened %d times", total, duringFailure, st.CircuitOpened)
}
