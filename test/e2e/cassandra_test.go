package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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

// TestWebhookDedupAcrossReplicas (issue #18, item 7): deduplication was per process, while the
// chart runs two replicas: a redelivered webhook reaching the other replica was routed again. With
// the Cassandra result store, deliveries are claimed in Cassandra: routed once, whichever replica
// and across restarts.
func TestWebhookDedupAcrossReplicas(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	secrets := t.TempDir()
	secret := "gh-replicas-0123456789"
	if err := os.WriteFile(filepath.Join(secrets, "gh"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, nil)
	keyspace := fmt.Sprintf("sy_e2e_dedup_%d", time.Now().UnixNano())
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %%s\n", cassandraAddr, keyspace)
	manifests := brokerYAML("default") + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n") + webhookSourceYAML("gh", "github", filepath.Join(secrets, "gh"))
	a := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	b := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	body := `{"ref":"refs/heads/main","after":"replicas","repository":{"full_name":"acme/shop"}}`
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	post := func(r *router) int {
		req, _ := http.NewRequest(http.MethodPost, r.Ingress+"/webhooks/default/gh", strings.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "replicated-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Both replicas connected to Cassandra (until then a replica deduplicates in its own memory,
	// and says so in its log): their outcome queries answer.
	for _, r := range []*router{a, b} {
		waitFor(t, 30*time.Second, func() bool {
			code, _ := r.get(t, "/v1/events/none")
			return code == http.StatusNotFound
		})
	}
	if code := post(a); code != 202 {
		t.Fatalf("the delivery at replica A: %d", code)
	}
	if code := post(b); code != 200 {
		t.Errorf("the provider's redelivery at replica B: %d, want 200 without routing", code)
	}
	sub.waitFor(t, 1, 10*time.Second)
	sub.quiet(t, 1, 500*time.Millisecond)
}

// TestBrokerDedupAcrossReplicas (issue #29, item 6): a broker with switchyard.dev/dedup-window
// refuses an event whose source and id it accepted within the window: answered 202, not appended
// again, whichever replica the retry reaches when the Cassandra result store is shared; an event of
// the same id from another source is its own.
func TestBrokerDedupAcrossReplicas(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	sub := newSubscriber(t, nil)
	keyspace := fmt.Sprintf("sy_e2e_bdedup_%d", time.Now().UnixNano())
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %%s\n", cassandraAddr, keyspace)
	manifests := "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n  namespace: default\n  annotations:\n    switchyard.dev/dedup-window: 5m\n---\n" +
		triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n")
	a := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	b := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	for _, r := range []*router{a, b} {
		waitFor(t, 30*time.Second, func() bool {
			code, _ := r.get(t, "/v1/events/none")
			return code == http.StatusNotFound
		})
	}
	for i, r := range []*router{a, b, a} {
		if code, _, body := r.send(t, "/default/default", binaryEvent("order-1", "t")); code != 202 {
			t.Fatalf("send %d: %d %s", i, code, body)
		}
	}
	other := binaryEvent("order-1", "t")
	other.Headers["Ce-Source"] = "/another-source"
	if code, _, body := b.send(t, "/default/default", other); code != 202 {
		t.Fatalf("the same id from another source: %d %s", code, body)
	}
	sub.waitFor(t, 2, 10*time.Second)
	sub.quiet(t, 2, time.Second)
	if code, m := b.get(t, "/metrics"); code != 200 || !strings.Contains(m, `switchyard_broker_deduplicated_total{broker_name="default",namespace_name="default"} 1`) {
		t.Errorf("replica B's switchyard_broker_deduplicated_total is not 1")
	}
}
