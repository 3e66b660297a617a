package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// replyWith answers a delivery with a binary-mode CloudEvent reply: the received event's
// attributes, its JSON data's "message" changed by edit.
func replyWith(w http.ResponseWriter, req received, edit func(string) string) {
	var data struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(req.Event.Data(), &data)
	body, _ := json.Marshal(map[string]string{"message": edit(data.Message)})
	h := w.Header()
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", req.Event.ID())
	h.Set("Ce-Type", req.Event.Type())
	h.Set("Ce-Source", req.Event.Source())
	h.Set("Ce-Time", req.Event.Time().Format(time.RFC3339Nano))
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func message(t *testing.T, req received) string {
	t.Helper()
	if req.Event == nil {
		t.Fatalf("not a CloudEvent: %v %q", req.Header, req.Body)
	}
	var data struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(req.Event.Data(), &data); err != nil {
		t.Fatalf("data %q: %v", req.Event.Data(), err)
	}
	return data.Message
}

// TestKnativeSequenceSample: Knative's sequence sample (three appender steps, the reply to an
// event display, a PingSource into the Sequence) with the Services as local functions: every
// step runs in order on each event, and the display gets the last step's reply.
func TestKnativeSequenceSample(t *testing.T) {
	var steps [3]*subscriber
	for i := range steps {
		steps[i] = newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
			replyWith(w, req, func(m string) string { return fmt.Sprintf("%s - Handled by %d", m, i) })
		})
	}
	display := newSubscriber(t, nil)
	manifests := fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: sequence
  namespace: default
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
  steps:
    - uri: %s
    - uri: %s
    - uri: %s
  reply:
    uri: %s
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: ping-source
  namespace: default
spec:
  schedule: "@every 1s"
  contentType: "application/json"
  data: '{"message": "Hello world!"}'
  sink:
    ref:
      apiVersion: flows.knative.dev/v1
      kind: Sequence
      name: sequence
---
`, steps[0].URL, steps[1].URL, steps[2].URL, display.URL)
	r := startRouter(t, manifests, "")
	got := display.waitFor(t, 2, 10*time.Second)
	for _, req := range got[:2] {
		if m := message(t, req); m != "Hello world! - Handled by 0 - Handled by 1 - Handled by 2" {
			t.Errorf("the display got %q", m)
		}
		if req.Event.Type() != "dev.knative.sources.ping" || req.Event.Source() != "/apis/v1/namespaces/default/pingsources/ping-source" {
			t.Errorf("the reply's attributes: %s", req.Event)
		}
	}
	// Producers reach the Sequence at its address; each step's trigger is in the admin API.
	code, _, body := r.send(t, "/default/sequence-kn-sequence-0", ceRequest{Headers: map[string]string{
		"Ce-Specversion": "1.0", "Ce-Id": "direct", "Ce-Type": "t", "Ce-Source": "/s", "Content-Type": "application/json"}, Body: `{"message":"direct"}`})
	if code != http.StatusAccepted {
		t.Fatalf("POST to the Sequence's address: %d %s", code, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for found := false; !found; {
		for _, req := range display.requests() {
			found = found || req.Event != nil && req.Event.ID() == "direct" && message(t, req) == "direct - Handled by 0 - Handled by 1 - Handled by 2"
		}
		if time.Now().After(deadline) {
			t.Fatal("the event sent to the Sequence's address did not come out of its last step")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, triggers := r.get(t, "/v1/triggers")
	for i := range 3 {
		if !strings.Contains(triggers, fmt.Sprintf(`"sequence-kn-sequence-%d"`, i)) {
			t.Errorf("/v1/triggers lacks step %d: %s", i, triggers)
		}
	}
}

// TestKnativeParallelSample: Knative's parallel sample (even and odd filters on the event's time,
// a transformer per branch, the reply to an event display, a PingSource into the Parallel) with
// the Services as local functions; the filters decide on the second instead of the minute, so the
// test takes seconds. Each tick goes through exactly one branch, transformed by it.
func TestKnativeParallelSample(t *testing.T) {
	filter := func(even bool) *subscriber {
		return newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
			if (req.Event.Time().Second()%2 == 0) != even {
				w.WriteHeader(http.StatusAccepted) // no event: this branch ends here
				return
			}
			replyWith(w, req, func(m string) string { return m })
		})
	}
	transformer := func(msg string) *subscriber {
		return newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
			replyWith(w, req, func(string) string { return msg })
		})
	}
	display := newSubscriber(t, nil)
	manifests := fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Parallel
metadata:
  name: odd-even-parallel
  namespace: default
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
  branches:
    - filter:
        uri: %s
      subscriber:
        uri: %s
    - filter:
        uri: %s
      subscriber:
        uri: %s
  reply:
    uri: %s
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: ping-source
  namespace: default
spec:
  schedule: "@every 1s"
  contentType: "application/json"
  data: '{"message": "Even or odd?"}'
  sink:
    ref:
      apiVersion: flows.knative.dev/v1
      kind: Parallel
      name: odd-even-parallel
---
`, filter(true).URL, transformer("we are even!").URL, filter(false).URL, transformer("this is odd!").URL, display.URL)
	startRouter(t, manifests, "")
	got := display.waitFor(t, 4, 15*time.Second)
	ticks := map[string]bool{}
	for _, req := range got {
		m := message(t, req)
		even := req.Event.Time().Second()%2 == 0
		if want := map[bool]string{true: "we are even!", false: "this is odd!"}[even]; m != want {
			t.Errorf("tick at %s: %q, want %q", req.Event.Time(), m, want)
		}
		if ticks[req.Event.ID()] {
			t.Errorf("tick at %s came out of both branches", req.Event.Time())
		}
		ticks[req.Event.ID()] = true
	}
}
