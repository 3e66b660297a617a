package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router/admin"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestCommandLineConventions (issue #21): help asked for is output (stdout, status 0), a mistake is
// an error (stderr, status 2) that names what is wrong; --version works as the version command.
func TestCommandLineConventions(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		if code, out, errOut := runCLI(args...); code != 0 || !strings.Contains(out, "usage: switchyard") || errOut != "" {
			t.Errorf("%v: status %d, stdout %q, stderr %q; want the usage on stdout and 0", args, code, out, errOut)
		}
	}
	if code, out, _ := runCLI("--version"); code != 0 || out != "switchyard dev\n" {
		t.Errorf("--version: %d %q", code, out)
	}
	if code, out, errOut := runCLI(); code != 2 || out != "" || !strings.Contains(errOut, "usage:") {
		t.Errorf("no command: %d, stdout %q, stderr %q; want the usage on stderr and 2", code, out, errOut)
	}
	if code, _, errOut := runCLI("sned"); code != 2 || !strings.Contains(errOut, `unknown command "sned"`) {
		t.Errorf("a typo: %d %q", code, errOut)
	}
	for _, cmd := range []string{"serve", "validate", "send", "function", "redrive", "replay", "migrate", "events", "triggers", "trigger"} {
		if code, out, errOut := runCLI(cmd, "-h"); code != 0 || out == "" || errOut != "" {
			t.Errorf("%s -h: status %d, stdout %q, stderr %q; want its help on stdout and 0", cmd, code, out, errOut)
		}
	}
	if code, _, errOut := runCLI("serve", "--no-such-flag"); code != 2 || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("an unknown flag: %d %q", code, errOut)
	}
	code, out, errOut := runCLI("send", "http://127.0.0.1:1/default/default", "--source", "/s")
	if code != 2 || out != "" || !strings.Contains(errOut, "missing --type") || strings.Count(errOut, "\n") > 3 {
		t.Errorf("send without --type: %d, stderr %q; want a short error naming --type", code, errOut)
	}
}

// TestSendHeadersTokenAndData (issue #21): send can talk to a broker with sender authentication
// (--token, --header) and read its data from a file or standard input.
func TestSendHeadersTokenAndData(t *testing.T) {
	type got struct {
		auth, custom, body, contentType string
	}
	seen := make(chan got, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- got{r.Header.Get("Authorization"), r.Header.Get("X-Tenant"), string(b), r.Header.Get("Content-Type")}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "order.json")
	if err := os.WriteFile(file, []byte(`{"order":7}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := send([]string{srv.URL, "--type", "t", "--source", "/s", "--token", "s3cret", "--header", "X-Tenant: acme", "--data", "@" + file}, nil, &out, &errOut); code != 0 {
		t.Fatalf("send: %d %s", code, errOut.String())
	}
	if g := <-seen; g.auth != "Bearer s3cret" || g.custom != "acme" || g.body != `{"order":7}` || g.contentType != "application/json" {
		t.Errorf("--token, --header and --data @FILE: the broker got %+v", g)
	}
	if code := send([]string{srv.URL, "--type", "t", "--source", "/s", "--data", "@-"}, strings.NewReader("from stdin"), &out, &errOut); code != 0 {
		t.Fatalf("send --data @-: %d %s", code, errOut.String())
	}
	if g := <-seen; g.body != "from stdin" || g.contentType != "text/plain" {
		t.Errorf("--data @-: the broker got %+v", g)
	}
	errOut.Reset()
	if code := send([]string{srv.URL, "--type", "t", "--source", "/s", "--header", "no-colon"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "Name: value") {
		t.Errorf("a malformed --header: %d %q", code, errOut.String())
	}
}

// TestTriggersTable (issue #21): switchyard triggers prints the admin API's triggers as a table
// like kubectl get's, or the JSON with -o json.
func TestTriggersTable(t *testing.T) {
	const list = `{"triggers":[{"namespace":"shop","name":"orders","broker":"default","subscriber":"http://orders.shop","matched":12,"delivered":10,"deadLettered":1,"failed":1,"retries":4,"inFlight":0}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/triggers" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, list)
	}))
	defer srv.Close()
	code, out, errOut := runCLI("triggers", "--admin-url", srv.URL)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "NAMESPACE") || strings.Join(strings.Fields(lines[1]), " ") != "shop orders default http://orders.shop 12 10 1 1 4 0" {
		t.Errorf("triggers: %d, %q, %q", code, out, errOut)
	}
	if code, out, _ := runCLI("triggers", "--admin-url", srv.URL, "-o", "json"); code != 0 || out != list {
		t.Errorf("triggers -o json: %d %q", code, out)
	}
	if code, _, errOut := runCLI("triggers", "--admin-url", srv.URL, "-o", "yaml"); code != 2 || !strings.Contains(errOut, "table or json") {
		t.Errorf("triggers -o yaml: %d %q", code, errOut)
	}
}

// TestEventsGet (issue #33, item 8): `events get -h` is help, not an id; -o json (the default),
// yaml and table; the id before or after the flags; and --since accepts a duration back from now
// as well as an RFC 3339 time (sent to the admin API as the time it means).
func TestEventsGet(t *testing.T) {
	const answer = `{"id":"o-1","outcomes":[{"eventId":"o-1","trigger":"shop/orders","status":"failed","attempts":3,"lastCode":503,"lastError":"subscriber answered 503","latencyMs":12.5,"finished":"2026-12-07T10:00:00Z"}]}`
	var gotSince string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/events/o-1":
			_, _ = io.WriteString(w, answer)
		case "/v1/events":
			gotSince = r.URL.Query().Get("since")
			_, _ = io.WriteString(w, `{"outcomes":[]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	if code, out, errOut := runCLI("events", "get", "-h"); code != 0 || !strings.Contains(out, "usage: switchyard events get") || errOut != "" {
		t.Errorf("events get -h: %d, %q, %q; want the usage", code, out, errOut)
	}
	if code, out, _ := runCLI("events", "get", "o-1", "--admin-url", srv.URL); code != 0 || out != answer {
		t.Errorf("events get: %d %q, want the API's JSON", code, out)
	}
	if code, out, _ := runCLI("events", "get", "--admin-url", srv.URL, "-o", "yaml", "o-1"); code != 0 || !strings.Contains(out, "status: failed") || !strings.Contains(out, "lastCode: 503") {
		t.Errorf("events get -o yaml (the id last): %d %q", code, out)
	}
	code, out, _ := runCLI("events", "get", "o-1", "--admin-url", srv.URL, "-o", "table")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "TRIGGER") || !strings.Contains(lines[1], "shop/orders") || !strings.Contains(lines[1], "subscriber answered 503") {
		t.Errorf("events get -o table: %d %q", code, out)
	}
	if code, _, errOut := runCLI("events", "get", "o-1", "--admin-url", srv.URL, "-o", "xml"); code != 2 || !strings.Contains(errOut, "json, yaml or table") {
		t.Errorf("events get -o xml: %d %q", code, errOut)
	}
	before := time.Now().Add(-10 * time.Minute)
	if code, _, errOut := runCLI("events", "list", "--admin-url", srv.URL, "--since", "10m"); code != 0 {
		t.Fatalf("events list --since 10m: %d %q", code, errOut)
	}
	if since, err := time.Parse(time.RFC3339Nano, gotSince); err != nil || since.Before(before.Add(-time.Second)) || since.After(time.Now().Add(-10*time.Minute+time.Second)) {
		t.Errorf("--since 10m sent since=%q (%v), want the time 10 minutes ago", gotSince, err)
	}
	if code, _, errOut := runCLI("events", "list", "--admin-url", srv.URL, "--since", "yesterday"); code != 2 || !strings.Contains(errOut, "duration back from now") {
		t.Errorf("--since yesterday: %d %q", code, errOut)
	}
}

// TestTriggerPauseResume: `switchyard trigger pause|resume NS/NAME` posts to the admin API with the
// token and prints its answer; a refusal is status 1 with the API's reason, a usage mistake 2.
func TestTriggerPauseResume(t *testing.T) {
	type call struct{ method, path, auth string }
	calls := make(chan call, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- call{r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization")}
		switch r.URL.EscapedPath() {
		case "/v1/triggers/shop/orders/pause":
			_, _ = io.WriteString(w, `{"trigger":"shop/orders","paused":true,"pausedBy":"operator"}`)
		case "/v1/triggers/shop/orders/resume":
			_, _ = io.WriteString(w, `{"trigger":"shop/orders","paused":false}`)
		case "/v1/triggers/shop/held/resume":
			http.Error(w, "resume: paused by its manifest: remove the switchyard.dev/paused annotation of trigger shop/held to resume it", http.StatusConflict)
		default:
			http.Error(w, "pause: trigger not found", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	if code, out, errOut := runCLI("trigger", "pause", "shop/orders", "--admin-url", srv.URL, "--token", "op"); code != 0 || !strings.Contains(out, `"pausedBy":"operator"`) {
		t.Errorf("trigger pause: %d %q %q", code, out, errOut)
	}
	if c := <-calls; c != (call{"POST", "/v1/triggers/shop/orders/pause", "Bearer op"}) {
		t.Errorf("trigger pause sent %+v", c)
	}
	if code, out, errOut := runCLI("trigger", "resume", "--admin-url", srv.URL, "shop/orders"); code != 0 || !strings.Contains(out, `"paused":false`) {
		t.Errorf("trigger resume (the name last): %d %q %q", code, out, errOut)
	}
	if c := <-calls; c != (call{"POST", "/v1/triggers/shop/orders/resume", ""}) {
		t.Errorf("trigger resume sent %+v", c)
	}
	if code, _, errOut := runCLI("trigger", "resume", "shop/held", "--admin-url", srv.URL); code != 1 || !strings.Contains(errOut, "409 Conflict") || !strings.Contains(errOut, "switchyard.dev/paused") {
		t.Errorf("resume refused by the manifest: %d %q", code, errOut)
	}
	if code, _, errOut := runCLI("trigger", "pause", "shop/nope", "--admin-url", srv.URL); code != 1 || !strings.Contains(errOut, "404 Not Found") {
		t.Errorf("pause of an unknown trigger: %d %q", code, errOut)
	}
	for len(calls) > 0 {
		<-calls
	}
	for _, args := range [][]string{{"trigger"}, {"trigger", "stop", "shop/orders"}, {"trigger", "pause"}, {"trigger", "pause", "orders"},
		{"trigger", "pause", "shop/orders", "shop/audit"}, {"trigger", "pause", "shop/orders", "--no-such-flag"}} {
		if code, out, errOut := runCLI(append(args, "--admin-url", srv.URL)...); code != 2 || out != "" || errOut == "" {
			t.Errorf("%v: %d, stdout %q, stderr %q; want a usage error, status 2", args, code, out, errOut)
		}
	}
	if len(calls) != 0 {
		t.Errorf("usage errors called the admin API: %+v", <-calls)
	}
	if code, out, _ := runCLI("trigger", "pause", "-h"); code != 0 || !strings.Contains(out, "-admin-url") {
		t.Errorf("trigger pause -h: %d %q", code, out)
	}
}

// TestDrawPath (issue #35): `events trace` draws the path as a tree: siblings with ├── and └──,
// the lines under a delivery continued with │, sinks and the next arrival under their delivery.
func TestDrawPath(t *testing.T) {
	at := time.Date(2026, 12, 8, 10, 2, 11, 481e6, time.UTC)
	outcome := func(trigger, status string, attempts, code int, subscriber, lastError string) admin.OutcomeJSON {
		return admin.OutcomeJSON{Trigger: trigger, Status: status, Attempts: attempts, LastCode: code, Subscriber: subscriber, Finished: at, LastError: lastError}
	}
	root := &admin.PathNode{EventID: "e-1", Type: "order.created", Source: "/shop", Broker: "shop/default", Received: at, Deliveries: []admin.PathDelivery{
		{OutcomeJSON: outcome("shop/enrich", "delivered", 1, 200, "http://fn", ""),
			Next: &admin.PathNode{Via: "reply", EventID: "e-1", Type: "order.enriched", Source: "/fn", Broker: "shop/default", Received: at,
				Deliveries: []admin.PathDelivery{{OutcomeJSON: outcome("shop/store", "delivered", 2, 202, "http://r/sinks/cassandra/shop/orders", ""), Sink: "CassandraSink shop/orders"}}}},
		{OutcomeJSON: outcome("shop/audit", "dead-lettered", 3, 500, "http://audit", "HTTP 500"), Sink: "dead-letter sink http://dls"},
	}}
	var b strings.Builder
	drawPath(&b, root, "", "")
	want := `e-1  order.created  /shop  at shop/default  10:02:11.481
├── shop/enrich  delivered  1 attempt, 200  → http://fn  10:02:11.481
│   └── reply e-1  order.enriched  /fn  at shop/default  10:02:11.481
│       └── shop/store  delivered  2 attempts, 202  → http://r/sinks/cassandra/shop/orders  10:02:11.481
│           └── CassandraSink shop/orders
└── shop/audit  dead-lettered  3 attempts, 500  → http://audit  10:02:11.481  HTTP 500
    └── dead-letter sink http://dls
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}
