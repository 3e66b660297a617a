package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestCassandraResults routes a few thousand events through the binary with the Cassandra result
// store: every outcome is queryable with the right status, failed ones redrive and then succeed,
// and outcomes recorded while Cassandra is unreachable (even across a router restart) arrive.
func TestCassandraResults(t *testing.T) {
	px := testenv.NewProxy(t, testenv.Cassandra(t))
	var broken atomic.Bool
	broken.Store(true)
	sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if broken.Load() && strings.HasSuffix(req.Event.ID(), "7") {
			w.WriteHeader(http.StatusUnprocessableEntity)
		}
	})
	keyspace := fmt.Sprintf("sy_e2e_%d", time.Now().UnixNano())
	journal := t.TempDir()
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %s\n", px.Addr(), keyspace, journal)
	manifests := brokerYAML("default") + triggerYAML("store", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 0\n")
	dir := t.TempDir()
	r := startRouterIn(t, dir, manifests, "", spec)

	const n = 2000
	for i := 0; i < n; i++ {
		if code, _, body := r.send(t, "/default/default", binaryEvent(fmt.Sprintf("cs%04d", i), "t")); code != 202 {
			t.Fatalf("send %d: %d %s", i, code, body)
		}
	}
	sub.waitFor(t, n, 60*time.Second)
	for i := 0; i < n; i++ {
		status := "delivered"
		if i%10 == 7 {
			status = "failed"
		}
		waitOutcome(t, r, fmt.Sprintf("cs%04d", i), status, 1)
	}

	broken.Store(false)
	code, body := r.post(t, "/v1/triggers/default/store/redrive")
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"redriven": %d`, n/10)) {
		t.Fatalf("redrive: %d %s", code, body)
	}
	sub.waitFor(t, n+n/10, 30*time.Second)
	for i := 7; i < n; i += 10 {
		waitOutcome(t, r, fmt.Sprintf("cs%04d", i), "delivered", 1)
	}

	// Cassandra unreachable: routing goes on, outcomes wait in the journal, across a restart.
	px.Cut()
	for i := n; i < n+100; i++ {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("cs%04d", i), "t"))
	}
	sub.waitFor(t, n+n/10+100, 30*time.Second)
	waitFor(t, 20*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return strings.Contains(m, "switchyard_results_journal_records 100")
	})
	r.signal(syscall.SIGTERM)
	if err := r.wait(30 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	px.Restore()
	r2 := startRouterIn(t, dir, manifests, "", spec)
	for i := n; i < n+100; i += 9 {
		waitOutcome(t, r2, fmt.Sprintf("cs%04d", i), "delivered", 1)
	}
	waitFor(t, 20*time.Second, func() bool {
		_, m := r2.get(t, "/metrics")
		return strings.Contains(m, "switchyard_results_journal_records 0")
	})
}
