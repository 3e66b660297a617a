package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestKafkaTriggerStartFrom: triggers added by a reload to a Kafka-class broker that already
// holds events start where their switchyard.dev/start-from says: earliest gets every event the
// topic holds (in order: it is ordered), a time gets those stored from then on, latest (the
// default) only those that come after it, with the partition idle meanwhile (nothing new arrives
// to carry them). A kill -9, and then a changed annotation, move no trigger's position: latest
// does not get the older events, and nobody gets them again.
func TestKafkaTriggerStartFrom(t *testing.T) {
	kafka := testenv.Kafka(t)
	var mu sync.Mutex
	got := map[string][]string{} // subscriber name -> event ids, as received
	sub := func(name string) *subscriber {
		return newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
			if req.Event != nil {
				mu.Lock()
				got[name] = append(got[name], req.Event.ID())
				mu.Unlock()
			}
			w.WriteHeader(http.StatusOK)
		})
	}
	subs := map[string]*subscriber{}
	for _, name := range []string{"old", "earliest", "since", "latest"} {
		subs[name] = sub(name)
	}
	ids := func(name string) []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got[name]...) }
	waitIDs := func(name string, n int, within time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(within); len(ids(name)) < n; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d events within %s", name, len(ids(name)), n, within)
			}
		}
	}
	topic := fmt.Sprintf("e2e-start-from-%d", time.Now().UnixNano())
	dir := t.TempDir()
	manifests := kafkaBroker("durable", topic) + triggerYAML("old", "  broker: durable\n  subscriber:\n    uri: "+subs["old"].URL+"\n")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 1\n", kafka)
	r := startRouterIn(t, dir, manifests, "", spec)
	sendBatches(t, r, 0, 50) // A
	waitIDs("old", 50, 30*time.Second)
	time.Sleep(1500 * time.Millisecond) // record timestamps are in milliseconds: keep A apart from B
	since := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(100 * time.Millisecond)
	sendBatches(t, r, 50, 100) // B
	waitIDs("old", 100, 30*time.Second)

	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	added := func(name, ann string) string {
		meta := "  name: " + name + "\n  namespace: default\n"
		if ann != "" {
			meta += "  annotations:\n    switchyard.dev/start-from: \"" + ann + "\"\n"
			if name == "earliest" {
				meta += "    kafka.eventing.knative.dev/delivery.order: ordered\n"
			}
		}
		return "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n" + meta + "spec:\n  broker: durable\n  subscriber:\n    uri: " + subs[name].URL + "\n---\n"
	}
	newTriggers := added("earliest", "earliest") + added("since", since) + added("latest", "")
	r.writeConfig(string(cfg) + newTriggers)
	// Nothing new arrives: the partition is idle, and the new triggers still start.
	waitIDs("earliest", 100, 30*time.Second)
	waitIDs("since", 50, 30*time.Second)
	time.Sleep(2 * time.Second)
	if n := len(ids("latest")); n != 0 {
		t.Errorf("latest got %d of the events from before it", n)
	}
	sendBatches(t, r, 100, 150) // C
	for _, name := range []string{"old", "earliest", "since", "latest"} {
		waitIDs(name, map[string]int{"old": 150, "earliest": 150, "since": 100, "latest": 50}[name], 30*time.Second)
	}
	want := func(from, to int) []string {
		var s []string
		for i := from; i < to; i++ {
			s = append(s, fmt.Sprintf("w-%05d", i))
		}
		return s
	}
	if e := ids("earliest"); strings.Join(e, ",") != strings.Join(want(0, 150), ",") {
		t.Errorf("earliest (ordered) got %d events, not A, B and C in order: %v", len(e), e)
	}
	distinct := func(name string) map[string]int {
		m := map[string]int{}
		for _, id := range ids(name) {
			m[id]++
		}
		return m
	}
	s := distinct("since")
	for _, id := range want(50, 150) {
		if s[id] == 0 {
			t.Errorf("since %s did not get %s", since, id)
		}
	}
	for _, id := range want(0, 50) {
		if s[id] != 0 {
			t.Errorf("since %s got %s, stored before it", since, id)
		}
	}
	l := distinct("latest")
	for _, id := range want(100, 150) {
		if l[id] == 0 {
			t.Errorf("latest did not get %s", id)
		}
	}

	// kill -9, then start with latest's annotation changed to earliest: positions stay.
	time.Sleep(2 * time.Second) // past a commit of every trigger's position
	_ = r.cmd.Process.Kill()
	<-r.exited
	moved := strings.Replace(newTriggers, added("latest", ""), added("latest", "earliest"), 1)
	if moved == newTriggers {
		t.Fatal("the manifest change was not made")
	}
	before := map[string]int{}
	for name := range subs {
		before[name] = len(ids(name))
	}
	r2 := startRouterIn(t, dir, manifests+moved, "", spec)
	sendBatches(t, r2, 150, 160)
	for _, name := range []string{"old", "earliest", "since", "latest"} {
		waitIDs(name, before[name]+10, 30*time.Second)
	}
	time.Sleep(2 * time.Second)
	for name := range subs {
		if extra := len(ids(name)) - before[name]; extra != 10 {
			t.Errorf("%s got %d events after the restart, want the 10 new ones: %v", name, extra, ids(name)[before[name]:])
		}
	}
}
