package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// pathNode is the admin API's event path, as the test reads it.
type pathNode struct {
	Via        string `json:"via"`
	EventID    string `json:"eventId"`
	Type       string `json:"type"`
	Broker     string `json:"broker"`
	Note       string `json:"note"`
	Deliveries []struct {
		Trigger, Status, Sink string
		Next                  *pathNode
	} `json:"deliveries"`
}

// flatten lists the path as lines "via type@broker > trigger status [sink]", depth first.
func (n *pathNode) flatten(out *[]string) {
	for _, d := range n.Deliveries {
		line := fmt.Sprintf("%s %s@%s > %s %s", n.Via, n.Type, n.Broker, d.Trigger, d.Status)
		if d.Sink != "" {
			line += " [" + d.Sink + "]"
		}
		*out = append(*out, strings.TrimSpace(line))
		if d.Next != nil {
			d.Next.flatten(out)
		}
	}
	if n.Note != "" {
		*out = append(*out, "note: "+n.Note)
	}
}

// TestEventPath (issue #35, item 4): a webhook's event goes to a function whose reply enters a
// Sequence of two steps, whose reply is stored in a CassandraSink; its path, from the admin API
// and `switchyard events trace`, shows every arrival and delivery in order, in memory and with
// the Cassandra result store.
func TestEventPath(t *testing.T) {
	for _, store := range []string{"memory", "cassandra"} {
		t.Run(store, func(t *testing.T) { testEventPath(t, store) })
	}
}

func testEventPath(t *testing.T, store string) {
	cassandraAddr := testenv.Cassandra(t)
	keyspace := fmt.Sprintf("sy_path_%s_%d", store[:3], time.Now().UnixNano()%1_000_000_000)
	keyspaceSession(t, cassandraAddr, keyspace)
	// Each function replies with the event's id, a type of its own and its data unchanged, after
	// a few milliseconds (the Cassandra store keeps received times to the millisecond).
	replying := func(typ string) *subscriber {
		return newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
			time.Sleep(5 * time.Millisecond)
			h := w.Header()
			h.Set("Ce-Specversion", "1.0")
			h.Set("Ce-Id", req.Event.ID())
			h.Set("Ce-Type", typ)
			h.Set("Ce-Source", "/functions/"+typ)
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(req.Event.Data())
		})
	}
	enrich, step0, step1 := replying("order.enriched"), replying("order.checked"), replying("order.stored")
	manifests := brokerYAML("default") + shopWebhookYAML + triggerYAML("enrich", "  broker: default\n  filter:\n    attributes: {type: order.created}\n  subscriber:\n    uri: "+enrich.URL+"\n") +
		triggerYAML("to-steps", "  broker: default\n  filter:\n    attributes: {type: order.enriched}\n  subscriber:\n    ref: {apiVersion: flows.knative.dev/v1, kind: Sequence, name: steps}\n") +
		triggerYAML("store", "  broker: default\n  filter:\n    attributes: {type: order.stored}\n  subscriber:\n    ref: {apiVersion: switchyard.dev/v1alpha1, kind: CassandraSink, name: orders}\n") +
		fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: steps, namespace: default}
spec:
  channelTemplate: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}
  steps:
    - uri: %s
    - uri: %s
  reply:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
---
apiVersion: switchyard.dev/v1alpha1
kind: CassandraSink
metadata: {name: orders, namespace: default}
spec:
  hosts: [%s]
  keyspace: %s
  table: orders
  consistency: ONE
  columns:
    order_id: data.order.id
    event_type: type
  createTable:
    partitionKey: [order_id]
    columns: {order_id: text, event_type: text}
---
`, step0.URL, step1.URL, cassandraAddr, keyspace)
	spec := ""
	if store == "cassandra" {
		spec = fmt.Sprintf("  results:\n    cassandra:\n      hosts: [%s]\n      keyspace: %s_results\n      consistency: ONE\n      disableHostLookup: true\n", cassandraAddr, keyspace)
	}
	r := startRouterIn(t, t.TempDir(), manifests, "", spec)
	req, _ := http.NewRequest(http.MethodPost, r.Ingress+"/webhooks/default/shop", strings.NewReader(`{"kind":"order.created","order":{"id":"o-1"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Delivery-Id", "path-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook: %d", resp.StatusCode)
	}
	want := []string{
		"order.created@default/default > default/enrich delivered",
		"reply order.enriched@default/default > default/to-steps delivered",
		"forwarded order.enriched@default/steps-kn-sequence-0 > default/steps-kn-sequence-0 delivered",
		"reply order.checked@default/steps-kn-sequence-1 > default/steps-kn-sequence-1 delivered",
		"reply order.stored@default/default > default/store delivered [CassandraSink default/orders]",
	}
	var got []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := r.get(t, "/v1/events/path-1/path")
		var root pathNode
		got = nil
		if code == 200 && json.Unmarshal([]byte(body), &root) == nil {
			root.flatten(&got)
		}
		if strings.Join(got, "\n") == strings.Join(want, "\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the path (%s store):\n%s\nwant:\n%s\nAPI: %d %s", store, strings.Join(got, "\n"), strings.Join(want, "\n"), code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The terminal's tree has every node.
	out, err := exec.Command(binary, "events", "trace", "path-1", "--admin-url", r.Admin).CombinedOutput()
	if err != nil {
		t.Fatalf("events trace: %v\n%s", err, out)
	}
	for _, w := range []string{"path-1  order.created", "└── default/enrich  delivered", "└── reply path-1  order.enriched", "forwarded path-1  order.enriched  /functions/order.enriched  at default/steps-kn-sequence-0",
		"default/store  delivered", "CassandraSink default/orders"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("events trace lacks %q:\n%s", w, out)
		}
	}
	if code, _ := r.get(t, "/v1/events/nope/path"); code != http.StatusNotFound {
		t.Errorf("the path of an unknown event: %d", code)
	}
}

// TestEventPathThroughAParallel: an event sent to a Parallel of two branches (the first with a
// filter) whose replies keep its id and meet in the default broker; each branch's path leads to
// its own reply, though both are the same id in the same broker, and the slow branch's reply
// arrives after the fast one's.
func TestEventPathThroughAParallel(t *testing.T) {
	reply := func(typ string, after time.Duration) *subscriber {
		return newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
			time.Sleep(after)
			h := w.Header()
			h.Set("Ce-Specversion", "1.0")
			h.Set("Ce-Id", req.Event.ID())
			h.Set("Ce-Type", typ)
			h.Set("Ce-Source", "/branches")
			w.WriteHeader(http.StatusOK)
		})
	}
	filter, zero, one := reply("order.created", time.Millisecond), reply("branch.zero", time.Millisecond), reply("branch.one", 60*time.Millisecond)
	display := newSubscriber(t, nil)
	manifests := brokerYAML("default") + triggerYAML("collect", "  broker: default\n  subscriber:\n    uri: "+display.URL+"\n") + fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Parallel
metadata: {name: fan, namespace: default}
spec:
  channelTemplate: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}
  branches:
    - filter: {uri: %s}
      subscriber: {uri: %s}
    - subscriber: {uri: %s}
  reply:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
---
`, filter.URL, zero.URL, one.URL)
	r := startRouter(t, manifests, "")
	if code, _, body := r.send(t, "/default/fan-kn-parallel", binaryEvent("par-1", "order.created")); code != http.StatusAccepted {
		t.Fatalf("send: %d %s", code, body)
	}
	display.waitFor(t, 2, 10*time.Second)
	next := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := r.get(t, "/v1/events/par-1/path")
		var root pathNode
		var lines []string
		if code == 200 && json.Unmarshal([]byte(body), &root) == nil {
			root.flatten(&lines)
		}
		// Complete once both replies' outcomes are recorded (until then a branch's reply may
		// show as the sibling's, the only arrival there yet).
		joined := strings.Join(lines, "\n")
		if len(lines) == 5 && strings.Contains(joined, "branch.zero") && strings.Contains(joined, "branch.one") {
			for i := 0; i+1 < len(lines); i++ {
				next[lines[i]] = lines[i+1]
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Parallel's path:\n%s\nAPI: %d %s", strings.Join(lines, "\n"), code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for from, want := range map[string]string{
		"order.created@default/fan-kn-parallel > default/fan-kn-parallel-filter-0 delivered":  "reply order.created@default/fan-kn-parallel-0 > default/fan-kn-parallel-0 delivered",
		"reply order.created@default/fan-kn-parallel-0 > default/fan-kn-parallel-0 delivered": "reply branch.zero@default/default > default/collect delivered",
		"order.created@default/fan-kn-parallel > default/fan-kn-parallel-1 delivered":         "reply branch.one@default/default > default/collect delivered",
	} {
		if next[from] != want {
			t.Errorf("after %q: %q, want %q", from, next[from], want)
		}
	}
}
