package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestInteropJavaScriptSDK sends binary, structured and batched events with the independent
// cloudevents@10.0.0 JavaScript SDK, and has that SDK parse what Switchyard delivers.
func TestInteropJavaScriptSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node is not installed, and CI must run the interop test")
		}
		t.Skip("node is not installed")
	}
	dir, _ := filepath.Abs("../interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "cloudevents")); err != nil {
		npm := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	}

	recv := exec.Command(node, "receive.js")
	recv.Dir = dir
	stdout, err := recv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = recv.Process.Kill(); _ = recv.Wait() }()
	lines := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
		close(lines)
	}()
	first := <-lines
	port, ok := first["listening"].(float64)
	if !ok {
		t.Fatalf("receiver did not start: %v", first)
	}
	jsURL := "http://127.0.0.1:" + strconv.Itoa(int(port))
	goSub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("js", "  broker: default\n  subscriber:\n    uri: "+jsURL+"\n")+
		triggerYAML("go", "  broker: default\n  subscriber:\n    uri: "+goSub.URL+"\n"), "")

	send := exec.Command(node, "send.js", r.Ingress+"/default/default")
	send.Dir = dir
	out, err := send.CombinedOutput()
	if err != nil {
		t.Fatalf("send.js: %v\n%s", err, out)
	}
	var statuses map[string]float64
	if err := json.Unmarshal(out, &statuses); err != nil {
		t.Fatalf("send.js printed %q", out)
	}
	for _, mode := range []string{"binary", "structured", "batch"} {
		if statuses[mode] != 202 {
			t.Errorf("%s mode answered %v, want 202", mode, statuses[mode])
		}
	}

	got := map[string]map[string]any{}
	deadline := time.After(10 * time.Second)
	for len(got) < 4 {
		select {
		case m := <-lines:
			if e, ok := m["error"]; ok {
				t.Fatalf("the JavaScript SDK could not parse a delivery: %v", e)
			}
			ev := m["event"].(map[string]any)
			if m["prefer"] != "reply" {
				t.Errorf("event %v came without Prefer: reply", ev["id"])
			}
			got[ev["id"].(string)] = ev
		case <-deadline:
			t.Fatalf("the JavaScript receiver got %d of 4 events: %v", len(got), got)
		}
	}
	// The JavaScript SDK neither percent-encodes nor percent-decodes ce- headers (the HTTP binding
	// says both must happen), so a value with a space reaches it as we encode it: "a%20b".
	b := got["node-binary"]
	if b["subject"] != "plain-subject" || b["nodeext"] != "a%20b" || b["type"] != "interop.binary" {
		t.Errorf("binary event as parsed by the JS SDK: %v", b)
	}
	if data, _ := b["data"].(map[string]any); data["n"] != float64(1) {
		t.Errorf("binary data %v", b["data"])
	}
	if s := got["node-structured"]; s["count"] == nil || s["type"] != "interop.structured" {
		t.Errorf("structured event as parsed by the JS SDK: %v", s)
	}
	for _, id := range []string{"node-batch-1", "node-batch-2"} {
		if got[id]["type"] != "interop.batch" {
			t.Errorf("batch event %s: %v", id, got[id])
		}
	}
	// Our own decoder sees the same four.
	seen := map[string]bool{}
	for _, req := range goSub.waitFor(t, 4, 10*time.Second) {
		seen[req.Event.ID()] = true
		if req.Event.ID() == "node-binary" && req.Event.Extensions()["nodeext"] != "a b" {
			t.Errorf("nodeext after a round trip through Switchyard: %q, want %q", req.Event.Extensions()["nodeext"], "a b")
		}
	}
	if len(seen) != 4 {
		t.Errorf("Go subscriber saw %v", seen)
	}
}
