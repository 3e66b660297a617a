package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// archivedBrokerYAML is broker default, archiving what it accepts for a day.
const archivedBrokerYAML = `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: default
  namespace: default
  annotations:
    switchyard.dev/archive-retention: 24h
---
`

func cassandraResults(cassandraAddr, keyspace, journal string) string {
	return fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %s\n", cassandraAddr, keyspace, journal)
}

// replayed returns the ids of the requests s received that carry switchyardreplay = run, sorted,
// and how many such requests there were.
func replayed(s *subscriber, run string) ([]string, int) {
	seen := map[string]bool{}
	n := 0
	for _, r := range s.requests() {
		if r.Header.Get("Ce-Switchyardreplay") == run && run != "" {
			seen[r.Header.Get("Ce-Id")] = true
			n++
		}
	}
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, n
}

func archiveWritten(t *testing.T, r *router) float64 {
	resp, err := http.Get(r.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return metricValue(string(b), `switchyard_archive_events_total{result="written"}`)
}

func waitArchived(t *testing.T, r *router, n float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for archiveWritten(t, r) < n {
		if time.Now().After(deadline) {
			t.Fatalf("archive holds %v events after 20s, want %v", archiveWritten(t, r), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// followedReplay runs switchyard replay --follow of [from, until) of broker to trigger, checks that
// its last line says done, and returns the run (the first JSON value printed).
func followedReplay(t *testing.T, r *router, broker string, from, until time.Time, trigger, done string) (run struct{ ID string }) {
	t.Helper()
	code, out := runCLI("replay", "--admin-url", r.Admin, "--broker", broker, "--from", from.Format(time.RFC3339Nano),
		"--to", until.Format(time.RFC3339Nano), "--trigger", trigger, "--follow")
	if code != 0 || !strings.Contains(out, done) {
		t.Fatalf("replay: exit %d, want %q\n%s", code, done, out)
	}
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&run); err != nil || run.ID == "" {
		t.Fatalf("replay printed no run: %v\n%s", err, out)
	}
	return run
}

func runCLI(args ...string) (int, string) {
	cmd := exec.Command(binary, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return cmd.ProcessState.ExitCode(), string(out)
	}
	return 0, string(out)
}

// TestArchiveReplay: an in-memory broker archives what it accepts in Cassandra; a replay of a time
// range delivers exactly the archived events of that range, to the named trigger only, marked as
// replayed, and records them; a dry run with a candidate configuration counts what each trigger
// would match and delivers nothing.
func TestArchiveReplay(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	keyspace := fmt.Sprintf("sy_e2e_archive_%d", time.Now().UnixNano())
	keyspaceSession(t, cassandraAddr, keyspace)
	// orders answers replayed events with a result (a replayed function's output): it is published
	// like any reply, marked with the run, and reaches the results trigger.
	orders := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Header.Get("Ce-Switchyardreplay") == "" {
			return
		}
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Id", "result-"+req.Header.Get("Ce-Id"))
		w.Header().Set("Ce-Type", "order.result")
		w.Header().Set("Ce-Source", "/orders-fn")
		w.WriteHeader(http.StatusOK)
	})
	audit, results := newSubscriber(t, nil), newSubscriber(t, nil)
	dir := t.TempDir()
	manifests := archivedBrokerYAML +
		triggerYAML("orders", "  broker: default\n  filter:\n    attributes:\n      type: order.created\n  subscriber:\n    uri: "+orders.URL+"\n") +
		triggerYAML("audit", "  broker: default\n  filters:\n    - cesql: \"NOT EXISTS switchyardreplay\"\n  subscriber:\n    uri: "+audit.URL+"\n") +
		triggerYAML("results", "  broker: default\n  filter:\n    attributes:\n      type: order.result\n  subscriber:\n    uri: "+results.URL+"\n")
	r := startRouterIn(t, dir, manifests, "", cassandraResults(cassandraAddr, keyspace, t.TempDir()))

	from := time.Now().UTC()
	for i := 0; i < 5; i++ {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("a%d", i), "order.created"))
	}
	for i := 0; i < 2; i++ {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("o%d", i), "payment.captured"))
	}
	time.Sleep(20 * time.Millisecond)
	until := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 3; i++ {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("b%d", i), "order.created"))
	}
	waitArchived(t, r, 10)
	waitOutcome(t, r, "b2", "delivered", 1)

	// A replay of [from, until) to orders only.
	run := followedReplay(t, r, "default/default", from, until, "default/orders", "done: read 7, delivered 5, failed 0, not matching 2")
	if ids, n := replayed(orders, run.ID); strings.Join(ids, ",") != "a0,a1,a2,a3,a4" || n != 5 {
		t.Errorf("orders got the replayed events %v (%d requests), want a0..a4 once each", ids, n)
	}
	if ids, _ := replayed(audit, run.ID); len(ids) != 0 {
		t.Errorf("audit, not named and filtering replay traffic out, got %v", ids)
	}
	waitFor(t, 10*time.Second, func() bool { ids, _ := replayed(results, run.ID); return len(ids) == 5 })
	if ids, n := replayed(results, run.ID); strings.Join(ids, ",") != "result-a0,result-a1,result-a2,result-a3,result-a4" || n != 5 {
		t.Errorf("results got %v (%d requests), want the five replies, marked with the run", ids, n)
	}
	time.Sleep(200 * time.Millisecond)
	if n := archiveWritten(t, r); n != 10 {
		t.Errorf("the archive holds %v events after the replay, want 10: replies to replayed events are not archived again", n)
	}
	// The replayed run is recorded like any other: the event now has two outcomes at orders.
	code, out := runCLI("events", "get", "a3", "--admin-url", r.Admin)
	if code != 0 || strings.Count(out, `"trigger": "default/orders"`) != 2 {
		t.Errorf("a3's outcomes after the replay: %d\n%s", code, out)
	}
	code, out = runCLI("replay", "status", run.ID, "--admin-url", r.Admin)
	if code != 0 || !strings.Contains(out, `"state": "done"`) || !strings.Contains(out, `"read": 7`) {
		t.Errorf("replay status: %d %s", code, out)
	}

	if code, out := runCLI("replay", "list", "--admin-url", r.Admin); code != 0 || !strings.Contains(out, run.ID) {
		t.Errorf("replay list: %d %s", code, out)
	}
	if code, out := runCLI("replay", "cancel", "rp-nope", "--admin-url", r.Admin); code != 1 || !strings.Contains(out, "404") {
		t.Errorf("cancel of an unknown replay: %d %s", code, out)
	}
	// Mistakes are refused before anything runs.
	if code, out := runCLI("replay", "--admin-url", r.Admin, "--broker", "default/default", "--from", from.Format(time.RFC3339Nano), "--trigger", "default/nope"); code != 1 || !strings.Contains(out, "404") {
		t.Errorf("replay to an unknown trigger: %d %s", code, out)
	}
	if code, out := runCLI("replay", "--admin-url", r.Admin, "--broker", "default/default", "--from", from.Format(time.RFC3339Nano)); code != 1 || !strings.Contains(out, "name the triggers") {
		t.Errorf("replay without triggers: %d %s", code, out)
	}

	// A dry run: orders would take payments instead of orders; a new trigger would take all.
	before := len(orders.requests()) + len(audit.requests())
	candidate := filepath.Join(t.TempDir(), "candidate.yaml")
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(cfg), "type: order.created", "type: payment.captured", 1) + "\n---\n" +
		triggerYAML("everything", "  broker: default\n  subscriber:\n    uri: "+audit.URL+"\n")
	if err := os.WriteFile(candidate, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out = runCLI("replay", "--dry-run", "--config", candidate, "--admin-url", r.Admin, "--broker", "default/default",
		"--from", from.Format(time.RFC3339Nano), "--to", until.Format(time.RFC3339Nano))
	var rep struct {
		Events   int `json:"events"`
		Triggers []struct {
			Trigger                                             string
			Current, Candidate, NewlyMatching, NoLongerMatching int
			Samples                                             []struct{ EventID, Change, Why string }
		} `json:"triggers"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Events != 7 || len(rep.Triggers) != 4 {
		t.Fatalf("dry run: %d %v\n%s", code, err, out)
	}
	got := map[string]string{}
	for _, tr := range rep.Triggers {
		got[tr.Trigger] = fmt.Sprintf("%d→%d +%d -%d", tr.Current, tr.Candidate, tr.NewlyMatching, tr.NoLongerMatching)
	}
	want := map[string]string{"default/orders": "5→2 +2 -5", "default/audit": "7→7 +0 -0", "default/everything": "0→7 +7 -0", "default/results": "0→0 +0 -0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dry run counts %v, want %v\n%s", got, want, out)
	}
	if !strings.Contains(out, `type is \"order.created\", not \"payment.captured\"`) {
		t.Errorf("dry run samples do not say why an order stops matching:\n%s", out)
	}
	time.Sleep(200 * time.Millisecond)
	if after := len(orders.requests()) + len(audit.requests()); after != before {
		t.Errorf("a dry run delivered %d events", after-before)
	}
}

// TestReplaySurvivesKill9: a replay whose router is killed with SIGKILL mid-run is taken over by
// the restarted router from its last checkpoint and finishes: every archived event of the range
// is delivered, the chunk in flight at the kill at most once more.
func TestReplaySurvivesKill9(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	keyspace := fmt.Sprintf("sy_e2e_replaykill_%d", time.Now().UnixNano())
	keyspaceSession(t, cassandraAddr, keyspace)
	var slow atomic.Bool
	sub := newSubscriber(t, func(_ int, req received, _ http.ResponseWriter) {
		if slow.Load() && req.Header.Get("Ce-Switchyardreplay") != "" {
			time.Sleep(5 * time.Millisecond)
		}
	})
	dir := t.TempDir()
	manifests := archivedBrokerYAML + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n")
	spec := cassandraResults(cassandraAddr, keyspace, t.TempDir())
	r := startRouterIn(t, dir, manifests, "", spec)
	const events = 1500
	from := time.Now().UTC()
	for i := 0; i < events; i++ {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("k%04d", i), "t"))
	}
	waitArchived(t, r, events)
	slow.Store(true)
	code, out := runCLI("replay", "--admin-url", r.Admin, "--broker", "default/default", "--from", from.Format(time.RFC3339Nano), "--trigger", "default/all")
	if code != 0 {
		t.Fatalf("replay: %d %s", code, out)
	}
	var run struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal([]byte(out), &run)
	// Kill once the first chunk is past its checkpoint and the second is under way.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, out = runCLI("replay", "status", run.ID, "--admin-url", r.Admin)
		var st struct {
			Checkpoint string
			Read       int
		}
		_ = json.Unmarshal([]byte(out), &st)
		if st.Checkpoint != "" && st.Read > 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replay made no checkpoint in 30s: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.signal(syscall.SIGKILL)
	_ = r.wait(10 * time.Second)
	r2 := startRouterIn(t, dir, manifests, "", spec)
	// The restarted router takes the run over once its old owner has been silent for 30 s.
	var final struct {
		State   string
		Read    int
		Resumed int
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		code, out = runCLI("replay", "status", run.ID, "--admin-url", r2.Admin)
		if code == 0 {
			_ = json.Unmarshal([]byte(out), &final)
			if final.State != "running" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replay was not finished by the restarted router in 90s: %d %s", code, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ids, n := replayed(sub, run.ID)
	if final.State != "done" || final.Resumed != 1 || len(ids) != events {
		t.Fatalf("after the kill: state %s, resumed %d, %d of %d events replayed", final.State, final.Resumed, len(ids), events)
	}
	if n > events+500 {
		t.Errorf("%d replayed deliveries for %d events: more than the one chunk in flight was sent again", n, events)
	}
	t.Logf("%d events, %d replayed deliveries (the chunk in flight at the kill sent again)", events, n)
}

// TestKafkaBrokerReplay: a Kafka-class broker's topic is its archive: a replay of a time range
// finds it with offsets-for-times in every partition and delivers exactly the events of the range
// to the named trigger, marked as replayed.
func TestKafkaBrokerReplay(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("sy-e2e-replay-%d", time.Now().UnixNano())
	orders, audit := newSubscriber(t, nil), newSubscriber(t, nil)
	manifests := kafkaBroker("durable", topic) +
		triggerYAML("orders", "  broker: durable\n  filter:\n    attributes:\n      type: order.created\n  subscriber:\n    uri: "+orders.URL+"\n") +
		triggerYAML("audit", "  broker: durable\n  subscriber:\n    uri: "+audit.URL+"\n")
	r := startRouterIn(t, t.TempDir(), manifests, "", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 3\n", kafka))
	r.send(t, "/default/durable", binaryEvent("early", "order.created"))
	waitOutcome(t, r, "early", "delivered", 1)
	time.Sleep(50 * time.Millisecond)
	from := time.Now().UTC()
	var want []string
	for i := 0; i < 20; i++ {
		id := fmt.Sprintf("k%02d", i)
		typ := "order.created"
		if i%5 == 0 {
			typ = "payment.captured"
		} else {
			want = append(want, id)
		}
		r.send(t, "/default/durable", binaryEvent(id, typ))
	}
	time.Sleep(50 * time.Millisecond)
	until := time.Now().UTC()
	time.Sleep(50 * time.Millisecond)
	r.send(t, "/default/durable", binaryEvent("late", "order.created"))
	waitOutcome(t, r, "late", "delivered", 1)
	run := followedReplay(t, r, "default/durable", from, until, "default/orders", "done: read 20, delivered 16, failed 0, not matching 4")
	sort.Strings(want)
	if ids, n := replayed(orders, run.ID); strings.Join(ids, ",") != strings.Join(want, ",") || n != len(want) {
		t.Errorf("orders got the replayed events %v (%d requests), want %v once each", ids, n, want)
	}
	if ids, _ := replayed(audit, run.ID); len(ids) != 0 {
		t.Errorf("audit, not named, got replayed events %v", ids)
	}
}
