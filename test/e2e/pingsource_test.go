package e2e

import (
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// pingSourceYAML is a Knative v1 PingSource, as its docs write one, into the default broker.
func pingSourceYAML(name, schedule string) string {
	return fmt.Sprintf(`apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: %s
  namespace: default
spec:
  schedule: %q
  contentType: "application/json"
  data: '{"message": "Hello world!"}'
  sink:
    ref:
      apiVersion: eventing.knative.dev/v1
      kind: Broker
      name: default
---
`, name, schedule)
}

// TestPingSourceRealTick: a PingSource from Knative's docs ticks on the wall clock and its event
// goes through the broker to a trigger's subscriber, as Knative's PingSource sends it.
func TestPingSourceRealTick(t *testing.T) {
	sub := newSubscriber(t, nil)
	manifests := brokerYAML("default") + pingSourceYAML("heartbeat", "@every 1s") +
		triggerYAML("pings", "  broker: default\n  filter:\n    attributes:\n      type: dev.knative.sources.ping\n  subscriber:\n    uri: "+sub.URL+"\n")
	r := startRouter(t, manifests, "")
	got := sub.waitFor(t, 2, 10*time.Second)
	for _, req := range got[:2] {
		e := req.Event
		if e == nil {
			t.Fatalf("not a CloudEvent: %v %q", req.Header, req.Body)
		}
		if e.Type() != "dev.knative.sources.ping" || e.Source() != "/apis/v1/namespaces/default/pingsources/heartbeat" ||
			e.DataContentType() != "application/json" || string(e.Data()) != `{"message": "Hello world!"}` {
			t.Errorf("event: %s", e)
		}
		if lag := req.At.Sub(e.Time()); e.Time().Nanosecond() != 0 || lag < 0 || lag > 2*time.Second {
			t.Errorf("a tick at %s arrived at %s: want whole seconds, delivered within 2 s", e.Time(), req.At)
		}
	}
	if got[0].Event.ID() == got[1].Event.ID() || !got[1].Event.Time().After(got[0].Event.Time()) {
		t.Errorf("two ticks: %s then %s", got[0].Event, got[1].Event)
	}
	if v := pingMetric(t, r, `switchyard_pingsource_ticks_total{namespace_name="default",result="sent",source_name="heartbeat"}`); v < 2 {
		t.Errorf("sent ticks counted: %v", v)
	}
	// Each tick's outcome is findable by the event's id, under pingsource:NAME.
	code, body := r.get(t, "/v1/events/"+got[0].Event.ID())
	if code != 200 || !strings.Contains(body, "pingsource:heartbeat") {
		t.Errorf("GET /v1/events/%s: %d %s", got[0].Event.ID(), code, body)
	}
}

// TestPingSourceTicksOnceAcrossReplicas: two replicas sharing the Cassandra result store send each
// tick once between them (a lightweight transaction per tick), one of them killed with SIGKILL
// and started again on the way; after it, ticks go on, none twice.
func TestPingSourceTicksOnceAcrossReplicas(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	sub := newSubscriber(t, nil)
	keyspace := fmt.Sprintf("sy_e2e_ping_%d", time.Now().UnixNano())
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %%s\n", cassandraAddr, keyspace)
	manifests := brokerYAML("default") + pingSourceYAML("heartbeat", "@every 1s") +
		triggerYAML("pings", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n")
	a := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	b := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	sub.waitFor(t, 4, 15*time.Second)

	// kill -9 one replica; the other goes on ticking alone, then the first comes back.
	_ = b.cmd.Process.Kill()
	<-b.exited
	n := sub.count()
	sub.waitFor(t, n+3, 10*time.Second)
	startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	n = sub.count()
	sub.waitFor(t, n+4, 10*time.Second)

	seen := map[string]time.Time{}
	var ticks []time.Time
	for _, req := range sub.requests() {
		e := req.Event
		if e == nil {
			t.Fatalf("not a CloudEvent: %q", req.Body)
		}
		if prev, dup := seen[e.ID()]; dup {
			t.Errorf("tick %s delivered twice (id %s)", prev, e.ID())
		}
		seen[e.ID()] = e.Time()
		ticks = append(ticks, e.Time())
	}
	// Whole seconds, none skipped while a replica ran: from the first to the last, every second
	// is there (the kill may cost at most the tick the killed replica had claimed).
	first, last := ticks[0], ticks[0]
	for _, tk := range ticks {
		if tk.Before(first) {
			first = tk
		}
		if tk.After(last) {
			last = tk
		}
	}
	span := int(last.Sub(first)/time.Second) + 1
	if len(seen) < span-1 {
		t.Errorf("%d distinct ticks over %d seconds: more than one lost", len(seen), span)
	}
	sentA := pingMetric(t, a, `switchyard_pingsource_ticks_total{namespace_name="default",result="sent",source_name="heartbeat"}`)
	otherA := pingMetric(t, a, `switchyard_pingsource_ticks_total{namespace_name="default",result="other_replica",source_name="heartbeat"}`)
	if otherA == 0 || sentA == 0 {
		t.Errorf("replica a sent %v ticks and saw %v claimed by another: want both above 0 (the claim decides)", sentA, otherA)
	}
}

// pingMetric reads one series from a router's /metrics.
func pingMetric(t *testing.T, r *router, series string) float64 {
	t.Helper()
	_, m := r.get(t, "/metrics")
	return metricValue(m, series)
}

// TestPingSourceSendsTheTickMissedWhileDown: the only replica is killed with SIGKILL; ticks fall
// due while nothing runs; the replica started again finds in Cassandra that the last of them was
// never claimed and sends it, late, with its scheduled time.
func TestPingSourceSendsTheTickMissedWhileDown(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	sub := newSubscriber(t, nil)
	keyspace := fmt.Sprintf("sy_e2e_pingmiss_%d", time.Now().UnixNano())
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %%s\n", cassandraAddr, keyspace)
	manifests := brokerYAML("default") + pingSourceYAML("heartbeat", "@every 2s") +
		triggerYAML("pings", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n")
	a := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	sub.waitFor(t, 1, 10*time.Second)
	_ = a.cmd.Process.Kill()
	<-a.exited
	down := time.Now()
	time.Sleep(4500 * time.Millisecond) // two ticks fall due
	n := sub.count()
	b := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf(spec, t.TempDir()))
	up := time.Now()
	// The earliest tick of what arrives after the restart is the one sent late: due while nothing
	// ran (after the kill, before the new replica was up), and older than any tick the new
	// replica sends on schedule (which of the two arrives first is a race: told apart by time).
	sub.waitFor(t, n+1, 5*time.Second)
	time.Sleep(200 * time.Millisecond)
	var earliest time.Time
	for _, req := range sub.requests()[n:] {
		if e := req.Event; e != nil && (earliest.IsZero() || e.Time().Before(earliest)) {
			earliest = e.Time()
		}
	}
	if !earliest.After(down) || !earliest.Before(up) {
		t.Fatalf("the earliest tick after the restart is of %s; want one due while nothing ran (%s to %s)", earliest, down, up)
	}
	if v := pingMetric(t, b, `switchyard_pingsource_ticks_total{namespace_name="default",result="sent_late",source_name="heartbeat"}`); v != 1 {
		t.Errorf("sent_late = %v, want 1", v)
	}
}

// TestPingSourceRedrive: a tick the sink refused is on pingsource:NAME's failed list and is sent
// again, with its id, by switchyard redrive once the sink takes events.
func TestPingSourceRedrive(t *testing.T) {
	var refuse atomic.Bool
	refuse.Store(true)
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		if refuse.Load() {
			w.WriteHeader(http.StatusBadRequest) // refused for good: not retried
		}
	})
	manifests := strings.Replace(pingSourceYAML("heartbeat", "@every 1s"), "    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n", "    uri: "+sub.URL+"\n", 1)
	r := startRouter(t, brokerYAML("default")+manifests, "")
	first := sub.waitFor(t, 1, 10*time.Second)[0].Event.ID()
	waitFor(t, 5*time.Second, func() bool {
		_, body := r.get(t, "/v1/triggers/default/pingsource:heartbeat/outcomes?failed=true")
		return strings.Contains(body, first)
	})
	refuse.Store(false)
	out, err := exec.Command(binary, "redrive", "--admin-url", r.Admin, "--trigger", "default/pingsource:heartbeat", "--event", first).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"redriven": 1`) {
		t.Fatalf("redrive: %v\n%s", err, out)
	}
	waitFor(t, 5*time.Second, func() bool {
		n := 0
		for _, req := range sub.requests() {
			if req.Event != nil && req.Event.ID() == first {
				n++
			}
		}
		return n == 2
	})
}
