package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestEventsListAndTail (issue #21): outcomes are listed across triggers with filters (broker,
// trigger, status, type, source, since, until) and paging, and followed as they are recorded,
// from the admin API and the command line.
func TestEventsListAndTail(t *testing.T) {
	ok := newSubscriber(t, nil)
	bad := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { w.WriteHeader(http.StatusInternalServerError) })
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("ok", "  broker: default\n  subscriber:\n    uri: "+ok.URL+"\n")+
		triggerYAML("bad", "  broker: default\n  filter:\n    attributes: {type: a}\n  subscriber:\n    uri: "+bad.URL+"\n  delivery:\n    retry: 0\n"), "")
	for i, typ := range []string{"a", "b", "a"} {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("ev-%d", i), typ))
	}
	cli := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(binary, append(append([]string{"events"}, args...), "--admin-url", r.Admin)...).CombinedOutput()
		if err != nil {
			t.Fatalf("events %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Count(cli("list", "-o", "json"), `"eventId"`) == 5 })

	if out := cli("list", "--status", "failed"); strings.Count(out, "default/bad") != 2 || strings.Contains(out, "default/ok") || !strings.HasPrefix(out, "FINISHED") {
		t.Errorf("--status failed:\n%s", out)
	}
	if out := cli("list", "--type", "b"); strings.Count(out, "ev-1") != 1 || strings.Contains(out, "ev-0") {
		t.Errorf("--type b:\n%s", out)
	}
	if out := cli("list", "--broker", "default/default", "--trigger", "default/ok", "--limit", "2"); strings.Count(out, "default/ok") != 2 || !strings.Contains(out, "more: ") {
		t.Errorf("--trigger --limit 2:\n%s", out)
	}
	if out := cli("list", "--until", "2000-01-01T00:00:00Z"); strings.Count(out, "\n") != 1 {
		t.Errorf("--until in the past lists nothing but the header:\n%s", out)
	}
	code, body := r.get(t, "/v1/events?status=lost")
	if code != http.StatusBadRequest || !strings.Contains(body, "want delivered, dead-lettered") {
		t.Errorf("a bad status: %d %s", code, body)
	}

	// tail shows what is recorded from now on, and nothing older.
	tail := exec.Command(binary, "events", "tail", "--admin-url", r.Admin, "--for", "1500ms")
	var out strings.Builder
	tail.Stdout = &out
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r.send(t, "/default/default", binaryEvent("tailed-1", "a"))
	if err := tail.Wait(); err != nil {
		t.Fatalf("tail: %v", err)
	}
	if got := out.String(); strings.Count(got, "tailed-1") != 2 || strings.Contains(got, "ev-0") {
		t.Errorf("tail:\n%s", got)
	}
}

// TestEventsListWithCassandra: the Cassandra store lists per trigger (its tables are keyed so),
// with the other filters applied as its partitions are read; across triggers it says what to add.
func TestEventsListWithCassandra(t *testing.T) {
	cassandraAddr := testenv.Cassandra(t)
	ok := newSubscriber(t, nil)
	keyspace := fmt.Sprintf("sy_e2e_list_%d", time.Now().UnixNano())
	spec := fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s\n      consistency: ONE\n      disableHostLookup: true\n      journal:\n        dir: %s\n", cassandraAddr, keyspace, t.TempDir())
	r := startRouterIn(t, t.TempDir(), brokerYAML("default")+triggerYAML("ok", "  broker: default\n  subscriber:\n    uri: "+ok.URL+"\n"), "", spec)
	for i, typ := range []string{"a", "b", "a"} {
		r.send(t, "/default/default", binaryEvent(fmt.Sprintf("cev-%d", i), typ))
	}
	var body string
	waitFor(t, 10*time.Second, func() bool {
		_, body = r.get(t, "/v1/events?trigger=default/ok&type=a")
		return strings.Count(body, `"eventId"`) == 2
	})
	if strings.Contains(body, "cev-1") {
		t.Errorf("type=a listed a type b event: %s", body)
	}
	if code, body := r.get(t, "/v1/events?type=a"); code != http.StatusBadRequest || !strings.Contains(body, "trigger=NAMESPACE/NAME") {
		t.Errorf("across triggers with Cassandra: %d %s", code, body)
	}
	// The tail streams a trigger's outcomes from Cassandra; across triggers it says why it cannot.
	tail := exec.Command(binary, "events", "tail", "--admin-url", r.Admin, "--trigger", "default/ok", "--for", "2500ms", "-o", "json")
	var out bytes.Buffer
	tail.Stdout = &out
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r.send(t, "/default/default", binaryEvent("cev-tailed", "a"))
	if err := tail.Wait(); err != nil || !strings.Contains(out.String(), `"eventId":"cev-tailed"`) || strings.Contains(out.String(), "cev-0") {
		t.Errorf("tail with Cassandra: %v\n%s", err, out.String())
	}
	cmd := exec.Command(binary, "events", "tail", "--admin-url", r.Admin, "--for", "5s")
	msg, err := cmd.CombinedOutput()
	if err == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(msg), "trigger=NAMESPACE/NAME") {
		t.Errorf("tail across triggers with Cassandra: %v\n%s", err, msg)
	}
}
