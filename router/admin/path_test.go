package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// pathRoutes has brokers shop/default and shop/seq-0, and the triggers' reply settings.
type pathRoutes struct{ fixedTriggers }

func (pathRoutes) QueueDepths() []metrics.QueueDepth {
	return []metrics.QueueDepth{{Namespace: "shop", Broker: "default"}, {Namespace: "shop", Broker: "seq-0"}}
}

// TestEventPathTree: arrivals are told apart by broker and received time even when replies keep
// the event's id; a forward to a broker of this router, a dead-letter sink, a CassandraSink, a
// dropped reply and the depth bound each show as they should.
func TestEventPathTree(t *testing.T) {
	store := memstore.New(1000)
	t0 := time.Unix(1_800_000_000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	rec := func(id, typ, brk, trig, sub string, st router.Status, received, finished int, reply string) {
		store.Record(&router.Outcome{EventID: id, Type: typ, Source: "/s", Broker: router.BrokerRef{Namespace: "shop", Name: brk},
			Trigger: router.TriggerRef{Namespace: "shop", Name: trig}, Subscriber: sub, Status: st, Attempts: 1,
			Received: at(received), Finished: at(finished), ReplyID: reply})
	}
	// e-1 arrives at shop/default: enrich replies (same id), audit dead-letters, archive goes to a
	// CassandraSink. The reply goes to to-seq, which forwards it to the broker seq-0, whose step
	// replies to the next step's broker (seq-1: no outcome there, it matched nothing).
	rec("e-1", "order.created", "default", "enrich", "http://fn", router.StatusDelivered, 0, 3, "e-1")
	rec("e-1", "order.created", "default", "audit", "http://audit", router.StatusDeadLettered, 0, 9, "")
	rec("e-1", "order.created", "default", "archive", "http://router:8080/sinks/cassandra/shop/orders", router.StatusDelivered, 0, 4, "")
	rec("e-1", "order.created", "default", "log", "http://router:8080/sinks/kafka/shop/audit-log", router.StatusDelivered, 0, 8, "")
	rec("e-1", "order.enriched", "default", "to-seq", "http://router:8080/shop/seq-0", router.StatusDelivered, 2, 5, "")
	rec("e-1", "order.enriched", "seq-0", "seq-0", "http://step", router.StatusDelivered, 4, 7, "e-1")
	// A dropped reply, and a reply chain of another id deeper than the bound.
	rec("e-1", "order.created", "default", "ttl", "http://loop", router.StatusDelivered, 0, 6, "")
	for i := 0; i < pathMaxDepth+3; i++ {
		rec("loop", "t", "default", "loop", "http://loop", router.StatusDelivered, 100+i, 100+i, "loop")
	}
	routes := pathRoutes{fixedTriggers{
		{Namespace: "shop", Name: "audit", TriggerSettings: broker.TriggerSettings{Delivery: broker.DeliverySettings{DeadLetterSink: "http://dls"}}},
		{Namespace: "shop", Name: "seq-0", TriggerSettings: broker.TriggerSettings{Reply: "broker shop/seq-1"}},
	}}
	s := New(store, routes, metrics.New())
	root, err := s.eventPath(context.Background(), "e-1")
	if err != nil || root == nil {
		t.Fatalf("path: %v %v", root, err)
	}
	var lines []string
	var walk func(n *PathNode, depth int)
	walk = func(n *PathNode, depth int) {
		pad := strings.Repeat("  ", depth)
		lines = append(lines, pad+n.Via+" "+n.EventID+" "+n.Type+" @"+n.Broker+" "+n.Note)
		for _, d := range n.Deliveries {
			lines = append(lines, pad+"- "+d.Trigger+" "+d.Status+" "+d.Sink)
			if d.Next != nil {
				walk(d.Next, depth+1)
			}
		}
	}
	walk(root, 0)
	want := []string{
		" e-1 order.created @shop/default ",
		"- shop/enrich delivered ",
		"  reply e-1 order.enriched @shop/default ",
		"  - shop/to-seq delivered ",
		"    forwarded e-1 order.enriched @shop/seq-0 ",
		"    - shop/seq-0 delivered ",
		"      reply e-1  @shop/seq-1 no outcome recorded for it here: it matched no trigger, is not final yet, or was forgotten",
		"- shop/archive delivered CassandraSink shop/orders",
		"- shop/ttl delivered ",
		"- shop/log delivered KafkaSink shop/audit-log",
		"- shop/audit dead-lettered dead-letter sink http://dls",
	}
	if got := strings.Join(lines, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("path:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}

	deep, _ := s.eventPath(context.Background(), "loop")
	depth, n := 0, deep
	for len(n.Deliveries) > 0 && n.Deliveries[0].Next != nil {
		n, depth = n.Deliveries[0].Next, depth+1
	}
	if depth != pathMaxDepth || !strings.Contains(n.Note, "cut: the path is more than 16 steps deep") {
		t.Errorf("a reply loop: %d deep, last note %q", depth, n.Note)
	}
	if none, err := s.eventPath(context.Background(), "nope"); none != nil || err != nil {
		t.Errorf("unknown event: %v %v", none, err)
	}

	// A Parallel's two branches reply with the event's id into one broker: each reply is the
	// arrival received while its own branch's delivery ran.
	rec("p-1", "order.created", "fan", "b0", "http://zero", router.StatusDelivered, 300, 310, "p-1")
	rec("p-1", "order.created", "fan", "b1", "http://one", router.StatusDelivered, 300, 305, "p-1")
	rec("p-1", "branch.one", "default", "collect", "http://c", router.StatusDelivered, 304, 306, "")
	rec("p-1", "branch.zero", "default", "collect", "http://c", router.StatusDelivered, 309, 311, "")
	routes.fixedTriggers = append(routes.fixedTriggers,
		broker.TriggerStatus{Namespace: "shop", Name: "b0", TriggerSettings: broker.TriggerSettings{Reply: "broker shop/default"}},
		broker.TriggerStatus{Namespace: "shop", Name: "b1", TriggerSettings: broker.TriggerSettings{Reply: "broker shop/default"}})
	s = New(store, routes, metrics.New())
	par, _ := s.eventPath(context.Background(), "p-1")
	for _, d := range par.Deliveries {
		want := map[string]string{"shop/b0": "branch.zero", "shop/b1": "branch.one"}[d.Trigger]
		if d.Next == nil || d.Next.Type != want {
			t.Errorf("branch %s led to %+v, want its own reply, %s", d.Trigger, d.Next, want)
		}
	}

	// Over HTTP, an id with a slash in it (escaped), and 404 for none.
	rec("a/b", "t", "default", "enrich", "http://fn", router.StatusDelivered, 200, 201, "")
	srv := httptest.NewServer(s)
	defer srv.Close()
	for path, want := range map[string]int{"/v1/events/a%2Fb/path": 200, "/v1/events/nope/path": 404} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && !strings.Contains(string(body), `"eventId": "a/b"`) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
}
