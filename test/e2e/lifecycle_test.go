package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestHotReload: a valid change is applied without a restart; an invalid one is rejected, counted,
// and the previous configuration keeps serving.
func TestHotReload(t *testing.T) {
	a, b := newSubscriber(t, nil), newSubscriber(t, nil)
	settings := func(r *router) string {
		return fmt.Sprintf(settingsDoc, strings.TrimPrefix(r.Ingress, "http://"), "", strings.TrimPrefix(r.Admin, "http://"), "")
	}
	r := startRouter(t, brokerYAML("default")+triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+a.URL+"\n"), "")
	// Counters of both results exist from the start, at 0, and the last reload counts as good.
	_, m := r.get(t, "/metrics")
	for _, series := range []string{`switchyard_config_reloads_total{result="applied"} 0`, `switchyard_config_reloads_total{result="rejected"} 0`, "switchyard_config_last_reload_successful 1"} {
		if !strings.Contains(m, series+"\n") {
			t.Errorf("/metrics at start lacks %s", series)
		}
	}
	r.send(t, "/default/default", binaryEvent("h1", "x"))
	a.waitFor(t, 1, 5*time.Second)

	r.writeConfig(settings(r) + brokerYAML("default") + triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+b.URL+"\n"))
	waitFor(t, 5*time.Second, func() bool {
		_, body := r.get(t, "/v1/triggers")
		return strings.Contains(body, b.URL)
	})
	r.send(t, "/default/default", binaryEvent("h2", "x"))
	b.waitFor(t, 1, 5*time.Second)

	r.writeConfig(settings(r) + brokerYAML("default") + triggerYAML("t", "  broker: default\n  subscriber:\n    uri: not a url\n"))
	waitFor(t, 5*time.Second, func() bool {
		_, body := r.get(t, "/metrics")
		return strings.Contains(body, `switchyard_config_reloads_total{result="rejected"} 1`)
	})
	if !strings.Contains(r.log.String(), "config.yaml") {
		t.Errorf("the rejection log does not name the file")
	}
	// The refusal is visible without the logs: /readyz (still 200, the old configuration serves),
	// the admin API and a gauge.
	if code, body := r.get(t, "/readyz"); code != 200 || !strings.Contains(body, "was rejected") || !strings.Contains(body, "config.yaml") || !strings.Contains(body, "subscriber.uri") {
		t.Errorf("/readyz after a rejected change: %d %q", code, body)
	}
	if code, body := r.get(t, "/v1/config"); code != 200 || !strings.Contains(body, `"rejected"`) || !strings.Contains(body, "subscriber.uri") {
		t.Errorf("/v1/config after a rejected change: %d %s", code, body)
	}
	if _, m := r.get(t, "/metrics"); !strings.Contains(m, "switchyard_config_last_reload_successful 0\n") {
		t.Errorf("switchyard_config_last_reload_successful is not 0 after a rejected change")
	}
	r.send(t, "/default/default", binaryEvent("h3", "x"))
	b.waitFor(t, 2, 5*time.Second)
	if len(a.requests()) != 1 {
		t.Errorf("old subscriber got %d events after the reload", len(a.requests()))
	}
	// Mended, the next change clears it.
	r.writeConfig(settings(r) + brokerYAML("default") + triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+a.URL+"\n"))
	waitFor(t, 5*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return strings.Contains(m, "switchyard_config_last_reload_successful 1\n")
	})
	if _, body := r.get(t, "/readyz"); body != "ok\n" {
		t.Errorf("/readyz after a good change: %q", body)
	}
}

// TestConfigMapSymlinkSwap: a directory laid out like a Kubernetes ConfigMap volume (..data
// symlinked to a timestamped directory) is reloaded when the symlink is swapped.
func TestConfigMapSymlinkSwap(t *testing.T) {
	a, b := newSubscriber(t, nil), newSubscriber(t, nil)
	dir := t.TempDir()
	ingress, admin := freePort(t), freePort(t)
	write := func(version, uri string) {
		vdir := filepath.Join(dir, "..2026_"+version)
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf(settingsDoc, ingress, "", admin, "") + brokerYAML("default") + triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+uri+"\n")
		if err := os.WriteFile(filepath.Join(vdir, "config.yaml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		_ = os.Remove(tmp)
		if err := os.Symlink("..2026_"+version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("1", a.URL)
	if err := os.Symlink("..data/config.yaml", filepath.Join(dir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	r := &router{t: t, Ingress: "http://" + ingress, Admin: "http://" + admin, log: out}
	waitFor(t, 10*time.Second, func() bool { resp, err := http.Get(r.Admin + "/readyz"); return err == nil && resp.StatusCode == 200 })
	write("2", b.URL)
	waitFor(t, 5*time.Second, func() bool { _, body := r.get(t, "/v1/triggers"); return strings.Contains(body, b.URL) })
	r.send(t, "/default/default", binaryEvent("s1", "x"))
	b.waitFor(t, 1, 5*time.Second)
}

// TestGracefulShutdown: on SIGTERM, readiness drops, new events get 503, events in flight are all
// delivered, and the process exits 0.
func TestGracefulShutdown(t *testing.T) {
	var slow atomic.Bool
	slow.Store(true)
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		if slow.Load() {
			time.Sleep(300 * time.Millisecond)
		}
		w.WriteHeader(200)
	})
	r := startRouter(t, brokerYAML("default")+`apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: slow
  annotations:
    switchyard.dev/concurrency: "2"
spec:
  broker: default
  subscriber:
    uri: `+sub.URL+"\n", "", "--shutdown-grace=20s")
	const n = 10
	for i := 0; i < n; i++ {
		if code, _, _ := r.send(t, "/default/default", binaryEvent(fmt.Sprintf("g%d", i), "t")); code != 202 {
			t.Fatalf("send %d: %d", i, code)
		}
	}
	r.signal(syscall.SIGTERM)
	waitFor(t, 2*time.Second, func() bool {
		resp, err := http.Get(r.Admin + "/readyz")
		return err == nil && resp.StatusCode == http.StatusServiceUnavailable
	})
	if code, _, _ := r.send(t, "/default/default", binaryEvent("late", "t")); code != http.StatusServiceUnavailable {
		t.Errorf("event sent while draining got %d, want 503", code)
	}
	if err := r.wait(15 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	if got := len(sub.requests()); got != n {
		t.Errorf("subscriber got %d events, want all %d accepted ones", got, n)
	}
}

// TestShutdownGraceExpiry: events that cannot finish within the grace period are recorded as
// failed (logged), and the process still exits 0.
func TestShutdownGraceExpiry(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { <-block })
	r := startRouter(t, brokerYAML("default")+triggerYAML("stuck", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"), "", "--shutdown-grace=500ms")
	r.send(t, "/default/default", binaryEvent("stuck1", "t"))
	sub.waitFor(t, 1, 5*time.Second)
	r.signal(syscall.SIGTERM)
	if err := r.wait(10 * time.Second); err != nil {
		t.Fatalf("exit: %v", err)
	}
	log := r.log.String()
	if !strings.Contains(log, `"recorded_as_failed": 1`) && !strings.Contains(log, `"recorded_as_failed":1`) {
		t.Errorf("log does not report the aborted event:\n%s", log)
	}
	if !strings.Contains(log, "stuck1") {
		t.Errorf("log does not name the failed event")
	}
}

// TestMetrics: /metrics exports Knative-named counters with their labels.
func TestMetrics(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("m", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"), "")
	r.send(t, "/default/default", binaryEvent("m1", "com.example.m"))
	sub.waitFor(t, 1, 5*time.Second)
	waitFor(t, 5*time.Second, func() bool {
		_, body := r.get(t, "/metrics")
		return strings.Contains(body, `switchyard_trigger_event_count{broker_name="default",event_type="com.example.m",namespace_name="default",response_code="200",response_code_class="2xx",trigger_name="m"} 1`) &&
			strings.Contains(body, `switchyard_broker_event_count{broker_name="default",event_type="com.example.m",namespace_name="default",response_code="202",response_code_class="2xx"} 1`) &&
			strings.Contains(body, "switchyard_trigger_event_dispatch_latencies_bucket") &&
			strings.Contains(body, `switchyard_broker_queue_depth{broker_name="default",namespace_name="default"} 0`) &&
			strings.Contains(body, `switchyard_broker_unfinished_events{broker_name="default",namespace_name="default"} 0`) &&
			strings.Contains(body, `switchyard_trigger_in_flight{namespace_name="default",trigger_name="m"} 0`)
	})
}

func waitFor(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
