package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestKafkaSlowTriggerDoesNotStallOthers: on a Kafka-class broker, a trigger whose subscriber
// hangs holds its own events only; another trigger on the same broker gets every event meanwhile,
// and the hung one catches up once its subscriber answers. (Knative isolates triggers with a
// consumer group each; Switchyard reads once per broker and bounds what a slow trigger holds by
// the partition window instead.)
func TestKafkaSlowTriggerDoesNotStallOthers(t *testing.T) {
	kafka := testenv.Kafka(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	slow := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(free) // before the subscriber's Close, which waits for its hung handlers
	fast := newSubscriber(t, nil)
	topic := fmt.Sprintf("e2e-isolation-%d", time.Now().UnixNano())
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic)+
		triggerYAML("slow", "  broker: durable\n  subscriber:\n    uri: "+slow.URL+"\n  delivery:\n    timeout: PT120S\n")+
		triggerYAML("fast", "  broker: durable\n  subscriber:\n    uri: "+fast.URL+"\n"),
		"", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 2\n", kafka))

	const n = 1000 // well past the slow trigger's lane (64 in flight + 256 waiting)
	for i := range n {
		if code, _, body := r.send(t, "/default/durable", binaryEvent(fmt.Sprintf("iso-%d", i), "t")); code != 202 {
			t.Fatalf("event %d: %d %s", i, code, body)
		}
	}
	fast.waitFor(t, n, 60*time.Second)
	if got := len(slow.requests()); got > 64 {
		t.Errorf("the hung subscriber got %d requests at once, more than the trigger's concurrency of 64", got)
	}
	free()
	slow.waitFor(t, n, 60*time.Second)
}

// TestKafkaOrderedPartitionsDoNotWaitForEachOther: an ordered trigger delivers a partition's
// events one at a time, but a partition whose event hangs holds only itself: the events of keys
// on the other partitions all arrive meanwhile, each key in order.
func TestKafkaOrderedPartitionsDoNotWaitForEachOther(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-ordered-parts-%d", time.Now().UnixNano())
	const partitions, keys, perKey = 4, 8, 20
	// The router's producer places keys with sarama's default hash partitioner.
	partitionOf := func(key string) int32 {
		p, err := sarama.NewHashPartitioner(topic).Partition(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(key)}, partitions)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	stuck := partitionOf("k0")
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Event.Extensions()["partitionkey"] == "k0" {
			<-release
		}
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(free)
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic)+orderedTrigger("durable", sub.URL, "  delivery: {timeout: PT120S}\n"), "", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: %d\n", kafka, partitions))

	elsewhere := 0
	for seq := range perKey {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			req := binaryEvent(fmt.Sprintf("%s-%d", key, seq), "t")
			req.Headers["Ce-Partitionkey"] = key
			req.Headers["Ce-Subject"] = fmt.Sprint(seq)
			if code, _, body := r.send(t, "/default/durable", req); code != 202 {
				t.Fatalf("send: %d %s", code, body)
			}
			if partitionOf(key) != stuck {
				elsewhere++
			}
		}
	}
	if elsewhere == 0 {
		t.Fatal("every key hashes to the stuck partition; choose other keys")
	}
	// Everything not on the stuck partition arrives while k0's first event hangs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, rq := range sub.requests() {
			if partitionOf(fmt.Sprint(rq.Event.Extensions()["partitionkey"])) != stuck {
				n++
			}
		}
		if n == elsewhere {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events of the other partitions arrived while partition %d was stuck", n, elsewhere, stuck)
		}
		time.Sleep(50 * time.Millisecond)
	}
	free()
	got := sub.waitFor(t, keys*perKey, 30*time.Second)
	next := map[string]int{}
	for _, rq := range got {
		key := fmt.Sprint(rq.Event.Extensions()["partitionkey"])
		if seq := rq.Event.Subject(); seq != fmt.Sprint(next[key]) {
			t.Fatalf("key %s: got seq %s, want %d", key, seq, next[key])
		}
		next[key]++
	}
}

// TestKafkaHungTriggerPastTheWindow: on a one-partition Kafka-class broker, a trigger whose
// subscriber holds every request while more events than the partition's window (10,000) arrive
// holds back no other trigger: the other one receives every event meanwhile, across a kill -9 of
// the router too. The hung trigger's copies past its share wait in its park topic, not in memory;
// once its subscriber answers it receives every event, those accepted before the kill included.
// (Before parking, the partition paused for both triggers once the hung one held 10,000.)
func TestKafkaHungTriggerPastTheWindow(t *testing.T) {
	kafka := testenv.Kafka(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	var mu sync.Mutex
	hungSeen, fastSeen := map[string]bool{}, map[string]bool{}
	hung := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		<-release
		if req.Event != nil {
			mu.Lock()
			hungSeen[req.Event.ID()] = true // counted once answered: a request cut by the kill is not
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(free) // before the subscriber's Close, which waits for its hung handlers
	fast := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Event != nil {
			mu.Lock()
			fastSeen[req.Event.ID()] = true
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	})
	seen := func(m map[string]bool) int { mu.Lock(); defer mu.Unlock(); return len(m) }
	waitSeen := func(what string, m map[string]bool, n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for seen(m) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d distinct events arrived within %s", what, seen(m), n, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	topic := fmt.Sprintf("e2e-hung-window-%d", time.Now().UnixNano())
	dir := t.TempDir()
	manifests := kafkaBroker("durable", topic) +
		triggerYAML("hung", "  broker: durable\n  subscriber:\n    uri: "+hung.URL+"\n  delivery:\n    timeout: PT600S\n") +
		triggerYAML("fast", "  broker: durable\n  subscriber:\n    uri: "+fast.URL+"\n")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 1\n", kafka)
	const n = 12000 // past the partition's window of 10,000
	r := startRouterIn(t, dir, manifests, "", spec)
	sendBatches(t, r, 0, n)
	waitSeen("the fast trigger while the other hangs", fastSeen, n, 120*time.Second)
	if got := hung.count(); got > 64 {
		t.Errorf("the hung subscriber got %d requests at once, more than the trigger's concurrency of 64", got)
	}

	// kill -9 with the hung trigger's backlog parked and in memory; a new process resumes it.
	_ = r.cmd.Process.Kill()
	<-r.exited
	r2 := startRouterIn(t, dir, manifests, "", spec)
	sendBatches(t, r2, n, n+1000)
	waitSeen("the fast trigger after the kill", fastSeen, n+1000, 120*time.Second)

	free()
	waitSeen("the hung trigger once its subscriber answers", hungSeen, n+1000, 180*time.Second)
	t.Logf("fast: %d requests for %d events; hung: %d requests for %d events", fast.count(), n+1000, hung.count(), n+1000)
}

// sendBatches sends the events w-{from} to w-{to-1} to /default/durable, 500 to a batch, each with
// its number as subject, trying again while the broker answers otherwise than 202.
func sendBatches(t *testing.T, r *router, from, to int) {
	t.Helper()
	for b := from; b < to; b += 500 {
		var batch strings.Builder
		batch.WriteString("[")
		for i := b; i < b+500 && i < to; i++ {
			if i > b {
				batch.WriteString(",")
			}
			fmt.Fprintf(&batch, `{"specversion":"1.0","id":"w-%05d","source":"/s","type":"t","subject":"%d"}`, i, i)
		}
		batch.WriteString("]")
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			code, _, body := r.send(t, "/default/durable", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: batch.String()})
			if code == http.StatusAccepted || code == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch from %d: %d %s", b, code, body)
			}
		}
	}
}

// TestKafkaPausedTriggerKeepsItsBacklog: an ordered trigger paused by its manifest on a
// one-partition Kafka-class broker gets nothing while 12,000 events (past the window) arrive and
// the router is killed with -9 and restarted; its sibling gets every event meanwhile. Once the
// annotation goes (a reload), it receives the whole backlog in order, then live events.
func TestKafkaPausedTriggerKeepsItsBacklog(t *testing.T) {
	kafka := testenv.Kafka(t)
	var mu sync.Mutex
	var order []int
	pausedSeen, otherSeen := map[int]bool{}, map[int]bool{}
	paused := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		var seq int
		if req.Event != nil {
			fmt.Sscan(req.Event.Subject(), &seq)
			mu.Lock()
			if !pausedSeen[seq] {
				order = append(order, seq) // first deliveries only: at-least-once may repeat some
			}
			pausedSeen[seq] = true
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	})
	other := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		var seq int
		if req.Event != nil {
			fmt.Sscan(req.Event.Subject(), &seq)
			mu.Lock()
			otherSeen[seq] = true
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	})
	count := func(m map[int]bool) int { mu.Lock(); defer mu.Unlock(); return len(m) }
	waitCount := func(what string, m map[int]bool, n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for count(m) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d distinct events arrived within %s", what, count(m), n, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	topic := fmt.Sprintf("e2e-paused-%d", time.Now().UnixNano())
	dir := t.TempDir()
	manifests := kafkaBroker("durable", topic) + fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: paused
  namespace: default
  annotations:
    kafka.eventing.knative.dev/delivery.order: ordered
    switchyard.dev/paused: "true"
spec:
  broker: durable
  subscriber:
    uri: %s
---
`, paused.URL) + triggerYAML("other", "  broker: durable\n  subscriber:\n    uri: "+other.URL+"\n")
	spec := fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 1\n", kafka)

	const n = 12000
	r := startRouterIn(t, dir, manifests, "", spec)
	sendBatches(t, r, 0, n)
	waitCount("the other trigger while its sibling is paused", otherSeen, n, 120*time.Second)
	_ = r.cmd.Process.Kill()
	<-r.exited
	r2 := startRouterIn(t, dir, manifests, "", spec)
	sendBatches(t, r2, n, n+1000)
	waitCount("the other trigger after the kill", otherSeen, n+1000, 120*time.Second)
	if got := paused.count(); got != 0 {
		t.Fatalf("the paused trigger got %d deliveries", got)
	}
	// The paused trigger's lag is its whole backlog (and dated by its oldest parked copy); the
	// other one's is nothing.
	var status struct {
		Triggers []struct {
			Name       string  `json:"name"`
			Paused     bool    `json:"paused"`
			PausedBy   string  `json:"pausedBy"`
			LagRecords int64   `json:"lagRecords"`
			LagSeconds float64 `json:"lagSeconds"`
		} `json:"triggers"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if code, body := r2.get(t, "/v1/triggers"); code != 200 || json.Unmarshal([]byte(body), &status) != nil {
			t.Fatalf("GET /v1/triggers: %d %s", code, body)
		}
		lags := map[string]int64{}
		for _, tr := range status.Triggers {
			lags[tr.Name] = tr.LagRecords
		}
		if lags["paused"] >= n+1000 && lags["other"] == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, tr := range status.Triggers {
		switch {
		case tr.Name == "paused" && (!tr.Paused || tr.PausedBy != "manifest"):
			t.Errorf("GET /v1/triggers: %+v, want paused by its manifest", tr)
		case tr.Name == "paused" && (tr.LagRecords < n+1000 || tr.LagSeconds <= 0):
			t.Errorf("the paused trigger's lag: %d records, %.1f s; want at least %d records, dated", tr.LagRecords, tr.LagSeconds, n+1000)
		case tr.Name == "other" && tr.LagRecords != 0:
			t.Errorf("the running trigger's lag: %d records, want 0", tr.LagRecords)
		}
	}
	if code, body := r2.get(t, "/metrics"); code != 200 || !strings.Contains(body, `switchyard_trigger_lag_records{broker_name="durable",namespace_name="default",trigger_name="paused"}`) {
		t.Errorf("/metrics: %d, no switchyard_trigger_lag_records of the paused trigger", code)
	}
	t.Logf("lag while paused: %+v", status.Triggers)

	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	r2.writeConfig(strings.Replace(string(cfg), `switchyard.dev/paused: "true"`, `switchyard.dev/paused: "false"`, 1))
	waitCount("the resumed trigger", pausedSeen, n+1000, 180*time.Second)
	took := time.Since(resumed)
	sendBatches(t, r2, n+1000, n+1500) // live events after the backlog
	waitCount("the resumed trigger's live events", pausedSeen, n+1500, 60*time.Second)
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Fatalf("the resumed ordered trigger got event %d after %d", order[i], order[i-1])
		}
	}
	t.Logf("backlog of %d delivered in order %s after the resume (ordered: one at a time); %d requests in all", n+1000, took.Round(time.Millisecond), paused.count())
}

// TestKafkaHungTriggerBigEvents (issue #29, item 8): the window is bytes as well as records. With
// 100 KiB events and a 4 MiB window per partition, a hung trigger would fill the window after
// about 40 events and hold the partition for its sibling; its share is counted in bytes too, so
// its copies are parked after 1 MiB and its sibling receives all 400 meanwhile.
func TestKafkaHungTriggerBigEvents(t *testing.T) {
	kafka := testenv.Kafka(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	hung := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) {
		<-release
		w.WriteHeader(http.StatusOK)
	})
	t.Cleanup(free)
	fast := newSubscriber(t, nil)
	topic := fmt.Sprintf("e2e-big-window-%d", time.Now().UnixNano())
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic)+
		triggerYAML("hung", "  broker: durable\n  subscriber:\n    uri: "+hung.URL+"\n  delivery:\n    timeout: PT600S\n")+
		triggerYAML("fast", "  broker: durable\n  subscriber:\n    uri: "+fast.URL+"\n"),
		"", fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 1\n    partitionWindowBytes: 4194304\n", kafka))
	data := `"` + strings.Repeat("x", 100<<10) + `"`
	const n = 400
	for i := range n {
		req := binaryEvent(fmt.Sprintf("big-%d", i), "t")
		req.Body = data
		if code, _, body := r.send(t, "/default/durable", req); code != 202 {
			t.Fatalf("event %d: %d %s", i, code, body)
		}
	}
	fast.waitFor(t, n, 60*time.Second)
	free()
	hung.waitFor(t, n, 120*time.Second)
}
