package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/switchyard-events/switchyard/test/testenv"
)

func kafkaBroker(name, topic string) string {
	return fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: %s
  namespace: default
  annotations:
    eventing.knative.dev/broker.class: Kafka
    kafka.eventing.knative.dev/external.topic: %s
---
`, name, topic)
}

// orderedTrigger is a Trigger named ordered with Knative's ordered delivery annotation; spec holds
// more spec lines (indented by two spaces).
func orderedTrigger(broker, subscriber, spec string) string {
	return fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: ordered
  namespace: default
  annotations:
    kafka.eventing.knative.dev/delivery.order: ordered
spec:
  broker: %s
%s  subscriber:
    uri: %s
`, broker, spec, subscriber)
}

// TestKafkaBroker: a Kafka-class broker answers 202 once Kafka has the event and delivers it with
// the partition and offset extensions.
func TestKafkaBroker(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-basic-%d", time.Now().UnixNano())
	sub := newSubscriber(t, nil)
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic)+triggerYAML("k", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 3\n", kafka))
	req := binaryEvent("k1", "t")
	req.Headers["Ce-Partitionkey"] = "customer-7"
	req.Headers["X-Request-Id"] = "rid-1"
	if code, _, body := r.send(t, "/default/durable", req); code != 202 {
		t.Fatalf("send: %d %s", code, body)
	}
	got := sub.waitFor(t, 1, 30*time.Second)[0]
	ext := got.Event.Extensions()
	if ext["knativekafkapartition"] == nil || ext["knativekafkaoffset"] == nil {
		t.Errorf("no knativekafkapartition/offset: %v", ext)
	}
	for _, leaked := range []string{"kafkaoffset", "kafkapartition", "kafkatopic", "knativebrokerttl"} {
		if _, ok := ext[leaked]; ok {
			t.Errorf("extension %s leaked to the subscriber", leaked)
		}
	}
	if got.Header.Get("X-Request-Id") != "rid-1" || string(got.Body) != `{"hello":"world"}` || ext["partitionkey"] != "customer-7" {
		t.Errorf("delivered: headers %v body %s ext %v", got.Header, got.Body, ext)
	}
}

// TestKafkaBrokerSurvivesKill9: 20,000 events (times SWITCHYARD_SOAK_SCALE), the router killed
// with SIGKILL halfway and restarted: every event that got a 202 reaches the subscriber at least once.
func TestKafkaBrokerSurvivesKill9(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-kill-%d", time.Now().UnixNano())
	var mu sync.Mutex
	seen := map[string]int{}
	sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		mu.Lock()
		seen[req.Event.ID()]++
		mu.Unlock()
	})
	dir := t.TempDir()
	manifests := kafkaBroker("durable", topic) + triggerYAML("k", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 4\n", kafka)
	scale := soakScale(t)
	n := int64(20000 * scale)
	load := &loadSender{path: "/default/durable", workers: 16, event: func(i int64) ceRequest {
		return ceRequest{Headers: map[string]string{"Ce-Specversion": "1.0", "Ce-Id": fmt.Sprintf("kill-%05d", i), "Ce-Source": "/kill", "Ce-Type": "t",
			"Content-Type": "application/json"}, Body: `{}`}
	}}
	r := startRouterIn(t, dir, manifests, "", spec)
	// Kill while events are being sent and delivered: no drain, no final commit.
	killed := load.killAt(r, n/2)
	load.sendUpTo(r, n/2+2000) // the senders run into the dead router for a while
	<-killed
	<-r.exited
	r2 := startRouterIn(t, dir, manifests, "", spec)
	load.sendUpTo(r2, n)
	want := load.accepted()
	if int64(want) < n*8/10 { // the sends that ran into the killed router were refused, not accepted
		t.Fatalf("only %d of %d events were accepted", want, n)
	}
	load.waitDelivered(t, time.Duration(scale)*120*time.Second, func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[id] > 0
	})
	mu.Lock()
	dups := 0
	for _, c := range seen {
		dups += c - 1
	}
	distinct := len(seen)
	mu.Unlock()
	t.Logf("%d accepted events all delivered; %d duplicate deliveries after the kill (%d requests for %d distinct events: a few were written to Kafka but killed before their 202)", want, dups, len(sub.requests()), distinct)
}

// TestKafkaUnavailableAnswers503: when the broker's Kafka cannot take the event, ingress answers
// 503 (and recovers by itself once it can: the producer is connected lazily, on each attempt).
func TestKafkaUnavailableAnswers503(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", "e2e-unreachable")+triggerYAML("k", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"", "  kafka:\n    bootstrapServers: [127.0.0.1:1]\n")
	start := time.Now()
	code, _, body := r.send(t, "/default/durable", binaryEvent("u1", "t"))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot accept events now") {
		t.Fatalf("unreachable Kafka: %d %q, want 503", code, body)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the 503 took %s", took)
	}
}

// waitGroupMembers waits until the consumer group is stable with n members that each own
// partitions: until then the first process to join may read everything alone.
func waitGroupMembers(t *testing.T, kafka, group string, n int) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin([]string{kafka}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		groups, err := admin.DescribeConsumerGroups([]string{group})
		if err == nil && len(groups) == 1 && groups[0].State == "Stable" && len(groups[0].Members) == n {
			owning := 0
			for _, m := range groups[0].Members {
				if a, err := m.GetMemberAssignment(); err == nil && len(a.Topics) > 0 {
					owning++
				}
			}
			if owning == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer group %s did not settle with %d members owning partitions in 30s", group, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestKafkaBrokerTwoRouters: two router processes on the same Kafka share the broker's
// partitions through its consumer group and together deliver every event once.
func TestKafkaBrokerTwoRouters(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-two-%d", time.Now().UnixNano())
	sub := newSubscriber(t, nil)
	manifests := kafkaBroker("durable", topic) + triggerYAML("k", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 4\n", kafka)
	a := startRouterIn(t, t.TempDir(), manifests, "", spec)
	b := startRouterIn(t, t.TempDir(), manifests, "", spec)
	waitGroupMembers(t, kafka, "switchyard-broker-default-durable", 2)
	const n = 400
	for i := 0; i < n; i++ {
		r := a
		if i%2 == 1 {
			r = b
		}
		req := binaryEvent(fmt.Sprintf("two-%03d", i), "t")
		req.Headers["Ce-Partitionkey"] = fmt.Sprintf("key-%d", i) // spread over the partitions
		if code, _, body := r.send(t, "/default/durable", req); code != 202 {
			t.Fatalf("send %d: %d %s", i, code, body)
		}
	}
	got := sub.waitFor(t, n, 60*time.Second)
	sub.quiet(t, len(got), 500*time.Millisecond)
	ids := map[string]int{}
	for _, g := range got {
		ids[g.Event.ID()]++
	}
	if len(ids) != n {
		t.Errorf("%d distinct events delivered, want %d", len(ids), n)
	}
	delivered := func(r *router) string {
		_, body := r.get(t, "/v1/triggers")
		return body
	}
	for name, r := range map[string]*router{"first": a, "second": b} {
		if strings.Contains(delivered(r), `"delivered": 0,`) {
			t.Errorf("the %s router delivered nothing: the partitions were not shared\n%s", name, delivered(r))
		}
	}
}

// keyedArrivals records what an ordered trigger's subscriber receives as "partitionkey/subject".
type keyedArrivals struct {
	mu    sync.Mutex
	order []string
}

func (a *keyedArrivals) add(req received) {
	a.mu.Lock()
	a.order = append(a.order, fmt.Sprint(req.Event.Extensions()["partitionkey"])+"/"+req.Event.Subject())
	a.mu.Unlock()
}

// firsts reads the arrivals: each key's subjects in order of first arrival, how many distinct
// events arrived, and how many arrivals were repeats.
func (a *keyedArrivals) firsts() (byKey map[string][]string, distinct, dups int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	byKey = map[string][]string{}
	seen := map[string]bool{}
	for _, ks := range a.order {
		if seen[ks] {
			dups++
			continue
		}
		seen[ks] = true
		key, seq, _ := strings.Cut(ks, "/")
		byKey[key] = append(byKey[key], seq)
	}
	return byKey, len(seen), dups
}

// checkKeyOrder fails when a key's first arrivals go backwards (subjects are zero-padded numbers).
func checkKeyOrder(t *testing.T, byKey map[string][]string) {
	t.Helper()
	for key, seqs := range byKey {
		for i := 1; i < len(seqs); i++ {
			if seqs[i] < seqs[i-1] {
				t.Fatalf("%s: event %s arrived (first) after %s", key, seqs[i], seqs[i-1])
			}
		}
	}
}

// TestKafkaThreeRoutersScaleOut (issue #30's scale test): three routers share a Kafka-class broker
// of 12 partitions as one router would serve it: every event is delivered, none twice while no
// router fails, and each partition key's events arrive (first) in the order they were sent. When
// one router is killed with SIGKILL mid-load, the other two take its partitions and deliver
// everything, what it had not committed at least once, still in order per key.
func TestKafkaThreeRoutersScaleOut(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-three-%d", time.Now().UnixNano())
	arrivals := &keyedArrivals{}
	sub := newSubscriber(t, func(n int, req received, w http.ResponseWriter) {
		arrivals.add(req)
		time.Sleep(time.Duration(n%3) * time.Millisecond) // a backlog builds, so the kill finds work in flight
	})
	manifests := kafkaBroker("durable", topic) + orderedTrigger("durable", sub.URL, "")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 12\n", kafka)
	routers := []*router{
		startRouterIn(t, t.TempDir(), manifests, "", spec),
		startRouterIn(t, t.TempDir(), manifests, "", spec),
		startRouterIn(t, t.TempDir(), manifests, "", spec),
	}
	waitGroupMembers(t, kafka, "switchyard-broker-default-durable", 3)
	// 36 keys over 12 partitions: each router owns some keys (a router with none: p < 1e-6).
	const keys, perKey = 36, 40
	sendRange := func(rs []*router, from, to int) {
		i := 0
		for seq := from; seq < to; seq++ {
			for k := 0; k < keys; k++ {
				req := binaryEvent(fmt.Sprintf("three-%d-%d", k, seq), "t")
				req.Headers["Ce-Partitionkey"] = fmt.Sprintf("key%d", k)
				req.Headers["Ce-Subject"] = fmt.Sprintf("%03d", seq)
				// Any router takes any event: the ingress appends, the partition's owner delivers.
				if code, _, body := rs[i%len(rs)].send(t, "/default/durable", req); code != 202 {
					t.Fatalf("send: %d %s", code, body)
				}
				i++
			}
		}
	}
	waitAll := func(n int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			if _, got, _ := arrivals.firsts(); got == n {
				return
			}
			if time.Now().After(deadline) {
				_, got, _ := arrivals.firsts()
				t.Fatalf("%d of %d events delivered", got, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Three routers, no failure: everything once, in order, and every router delivers a share.
	sendRange(routers, 0, perKey/2)
	waitAll(keys * perKey / 2)
	sub.quiet(t, sub.count(), 500*time.Millisecond)
	byKey, _, dups := arrivals.firsts()
	checkKeyOrder(t, byKey)
	if dups != 0 {
		t.Errorf("%d events delivered twice while no router failed", dups)
	}
	for i, r := range routers {
		if _, body := r.get(t, "/v1/triggers"); strings.Contains(body, `"delivered": 0,`) {
			t.Errorf("router %d delivered nothing: the partitions were not shared\n%s", i, body)
		}
	}

	// Kill one mid-load: the other two take its partitions and nothing is lost.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(300 * time.Millisecond)
		_ = routers[2].cmd.Process.Kill()
	}()
	sendRange(routers[:2], perKey/2, perKey*3/4)
	<-done
	<-routers[2].exited
	sendRange(routers[:2], perKey*3/4, perKey)
	waitGroupMembers(t, kafka, "switchyard-broker-default-durable", 2)
	waitAll(keys * perKey)
	byKey, _, dups = arrivals.firsts()
	checkKeyOrder(t, byKey)
	t.Logf("after the kill: every one of %d events delivered, %d of them again (uncommitted on the killed router)", keys*perKey, dups)
}

// TestKafkaOrderedTriggerAcrossRestart: an ordered trigger receives each partition key's events
// in the order they were sent, also when the router is killed and restarted in between (the
// events after the last commit come again, in order; their first arrivals never go backwards).
func TestKafkaOrderedTriggerAcrossRestart(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-ordered-%d", time.Now().UnixNano())
	arrivals := &keyedArrivals{}
	sub := newSubscriber(t, func(n int, req received, w http.ResponseWriter) {
		arrivals.add(req)
		// Uneven answer times: concurrent deliveries would overtake each other.
		time.Sleep(time.Duration(n%4) * time.Millisecond)
	})
	manifests := kafkaBroker("durable", topic) + orderedTrigger("durable", sub.URL, "")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 3\n", kafka)
	dir := t.TempDir()
	const keys, perKey = 6, 100
	sendRange := func(r *router, from, to int) {
		for seq := from; seq < to; seq++ {
			for k := 0; k < keys; k++ {
				req := binaryEvent(fmt.Sprintf("o-%d-%d", k, seq), "t")
				req.Headers["Ce-Partitionkey"] = fmt.Sprintf("key%d", k)
				req.Headers["Ce-Subject"] = fmt.Sprintf("%03d", seq)
				if code, _, body := r.send(t, "/default/durable", req); code != 202 {
					t.Fatalf("send: %d %s", code, body)
				}
			}
		}
	}
	r := startRouterIn(t, dir, manifests, "", spec)
	sendRange(r, 0, perKey/2)
	_ = r.cmd.Process.Kill()
	<-r.exited
	r2 := startRouterIn(t, dir, manifests, "", spec)
	sendRange(r2, perKey/2, perKey)
	deadline := time.Now().Add(90 * time.Second)
	for {
		firsts, distinct, _ := arrivals.firsts()
		if distinct == keys*perKey {
			checkKeyOrder(t, firsts)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events delivered", distinct, keys*perKey)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKafkaClusterFromTheFlag (issue #17): plain Knative manifests (a Kafka-class Broker, a
// Trigger) and no Kafka block of ours: --kafka-bootstrap-servers gives the cluster, and the router
// starts and routes through Kafka. It used to exit: the flag was applied after the check.
func TestKafkaClusterFromTheFlag(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-flag-%d", time.Now().UnixNano())
	sub := newSubscriber(t, nil)
	r := startRouter(t, kafkaBroker("durable", topic)+triggerYAML("k", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"", "--kafka-bootstrap-servers", kafka)
	if code, _, body := r.send(t, "/default/durable", binaryEvent("flag-1", "t")); code != 202 {
		t.Fatalf("send: %d %s", code, body)
	}
	got := sub.waitFor(t, 1, 30*time.Second)[0]
	if got.Event == nil || got.Event.Extensions()["knativekafkaoffset"] == nil {
		t.Errorf("not delivered through Kafka: %+v", got.Event)
	}
}
