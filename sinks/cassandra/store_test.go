package cassandra

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gocql/gocql"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// testConfig gives each test its own keyspace on the real Cassandra.
func testConfig(t *testing.T, host string) Config {
	t.Helper()
	ks := fmt.Sprintf("sy_test_%d", time.Now().UnixNano())
	t.Cleanup(func() {
		c := gocql.NewCluster(testenv.Cassandra(t))
		c.ProtoVersion = 4
		c.Timeout = 30 * time.Second
		if s, err := c.CreateSession(); err == nil {
			_ = s.Query("DROP KEYSPACE IF EXISTS " + ks).Exec()
			s.Close()
		}
	})
	return Config{Hosts: []string{host}, Keyspace: ks, Consistency: "ONE", JournalDir: t.TempDir(),
		Logger: zaptest.NewLogger(t), Timeout: 10 * time.Second, DisableHostLookup: true}
}

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testOutcome(id, trigger string, status router.Status, finished time.Time) *router.Outcome {
	o := &router.Outcome{
		EventID: id, Source: "/src", Type: "t", Broker: router.BrokerRef{Namespace: "ns", Name: "b"},
		Trigger: router.TriggerRef{Namespace: "ns", Name: trigger}, Subscriber: "http://sub", Status: status,
		Attempts: 2, LastCode: 503, Received: finished.Add(-10 * time.Millisecond), Finished: finished,
	}
	if status != router.StatusDelivered {
		e := event.New()
		e.SetID(id)
		e.SetSource("/src")
		e.SetType("t")
		_ = e.SetData("application/json", map[string]string{"id": id})
		o.Event = &e
		o.LastError = "subscriber answered 503"
	}
	return o
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func eventCount(t *testing.T, s *Store, id string) int {
	out, err := s.EventOutcomes(context.Background(), id)
	if err != nil {
		return -1
	}
	return len(out)
}

func TestQueries(t *testing.T) {
	cfg := testConfig(t, testenv.Cassandra(t))
	s := open(t, cfg)
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	// 12 outcomes of trigger "a" spread over 4 hourly buckets, every third one failed; "b" as noise.
	for i := 0; i < 12; i++ {
		st := router.StatusDelivered
		if i%3 == 0 {
			st = router.StatusDeadLettered
		}
		s.Record(testOutcome(fmt.Sprintf("e%02d", i), "a", st, now.Add(-time.Duration(i)*20*time.Minute)))
		s.Record(testOutcome(fmt.Sprintf("e%02d", i), "b", router.StatusDelivered, now.Add(-time.Duration(i)*20*time.Minute)))
	}
	waitFor(t, "all outcomes written", func() bool { return eventCount(t, s, "e11") == 2 && eventCount(t, s, "e00") == 2 })

	out, err := s.EventOutcomes(ctx, "e03")
	if err != nil || len(out) != 2 {
		t.Fatalf("Q1: %v %v", out, err)
	}
	for _, o := range out {
		if o.Trigger.Name == "a" && (o.Status != router.StatusDeadLettered || o.Event == nil || string(o.Event.Data()) != `{"id":"e03"}` || o.Attempts != 2 || o.LastCode != 503) {
			t.Errorf("Q1 outcome at a: %+v", o)
		}
	}

	page := func(q router.OutcomeQuery) []string {
		var ids []string
		for i := 0; ; i++ {
			got, next, err := s.TriggerOutcomes(ctx, q)
			if err != nil {
				t.Fatalf("Q2/Q3: %v", err)
			}
			if len(got) > q.Limit {
				t.Fatalf("page of %d, limit %d", len(got), q.Limit)
			}
			for _, o := range got {
				ids = append(ids, o.EventID)
			}
			if next == "" || i > 20 {
				return ids
			}
			q.PageToken = next
		}
	}
	a := router.TriggerRef{Namespace: "ns", Name: "a"}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 5})); got != "[e00 e01 e02 e03 e04 e05 e06 e07 e08 e09 e10 e11]" {
		t.Errorf("Q2 newest first across buckets: %s", got)
	}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 2, OnlyFailed: true})); got != "[e00 e03 e06 e09]" {
		t.Errorf("Q3 failed only: %s", got)
	}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 100, Since: now.Add(-65 * time.Minute)})); got != "[e00 e01 e02 e03]" {
		t.Errorf("since: %s", got)
	}
	failed, _, _ := s.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: a, Limit: 1, OnlyFailed: true})
	if len(failed) != 1 || failed[0].Event == nil {
		t.Fatalf("Q4 keeps the event: %+v", failed)
	}
	if err := s.Redriven(ctx, &failed[0]); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 10, OnlyFailed: true})); got != "[e03 e06 e09]" {
		t.Errorf("after redrive of e00: %s", got)
	}
	if eventCount(t, s, "e00") != 2 {
		t.Error("redrive removed history")
	}
	if _, _, err := s.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: a, PageToken: "!!"}); err == nil {
		t.Error("a bad page token was accepted")
	}
}

// TestIdempotentAndConcurrent: eight writers record overlapping outcomes, each twice; every
// outcome is stored exactly once.
func TestIdempotentAndConcurrent(t *testing.T) {
	cfg := testConfig(t, testenv.Cassandra(t))
	s := open(t, cfg)
	defer s.Close()
	base := time.Now().UTC()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				o := testOutcome(fmt.Sprintf("c%03d", i), fmt.Sprintf("t%d", g%4), router.StatusFailed, base.Add(time.Duration(i)*time.Millisecond))
				s.Record(o)
			}
		}(g)
	}
	wg.Wait()
	waitFor(t, "writes", func() bool { return eventCount(t, s, "c099") == 4 })
	for i := 0; i < 100; i += 7 {
		if n := eventCount(t, s, fmt.Sprintf("c%03d", i)); n != 4 {
			t.Errorf("c%03d has %d outcomes, want 4 (one per trigger, duplicates folded)", i, n)
		}
	}
	failed, _, err := s.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: "t1"}, OnlyFailed: true, Limit: 1000})
	if err != nil || len(failed) != 100 {
		t.Errorf("t1 failed list has %d, want 100 (%v)", len(failed), err)
	}
}

func TestRetention(t *testing.T) {
	cfg := testConfig(t, testenv.Cassandra(t))
	cfg.Retention = 2 * time.Second
	s := open(t, cfg)
	defer s.Close()
	s.Record(testOutcome("ttl1", "a", router.StatusFailed, time.Now()))
	waitFor(t, "write", func() bool { return eventCount(t, s, "ttl1") == 1 })
	waitFor(t, "expiry", func() bool { return eventCount(t, s, "ttl1") == 0 })
}

// TestOutage: Cassandra goes away while outcomes flow; they wait in the journal and all arrive,
// none duplicated, once it is back. Then the store is closed with records still journaled, and a
// new store started on the same journal writes them.
func TestOutage(t *testing.T) {
	px := testenv.NewProxy(t, testenv.Cassandra(t))
	cfg := testConfig(t, px.Addr())
	s := open(t, cfg)
	const n = 300
	base := time.Now().UTC()
	for i := 0; i < n/3; i++ {
		s.Record(testOutcome(fmt.Sprintf("o%03d", i), "a", router.StatusDelivered, base.Add(time.Duration(i)*time.Millisecond)))
	}
	// Wait for every first write: writers are concurrent, so the last id being there says nothing
	// about the others, and a write still in flight at the cut would be journaled too.
	waitFor(t, "first writes", func() bool {
		for i := 0; i < n/3; i++ {
			if eventCount(t, s, fmt.Sprintf("o%03d", i)) != 1 {
				return false
			}
		}
		return true
	})

	px.Cut()
	for i := n / 3; i < 2*n/3; i++ {
		s.Record(testOutcome(fmt.Sprintf("o%03d", i), "a", router.StatusFailed, base.Add(time.Duration(i)*time.Millisecond)))
	}
	waitFor(t, "outcomes journaled", func() bool { _, recs := s.journal.stats(); return recs == n/3 })
	px.Restore()
	waitFor(t, "journal replayed", func() bool { _, recs := s.journal.stats(); return recs == 0 })
	for i := n / 3; i < 2*n/3; i += 10 {
		if c := eventCount(t, s, fmt.Sprintf("o%03d", i)); c != 1 {
			t.Errorf("o%03d has %d outcomes after the outage, want 1", i, c)
		}
	}

	px.Cut()
	for i := 2 * n / 3; i < n; i++ {
		s.Record(testOutcome(fmt.Sprintf("o%03d", i), "a", router.StatusDelivered, base.Add(time.Duration(i)*time.Millisecond)))
	}
	waitFor(t, "outcomes journaled again", func() bool { _, recs := s.journal.stats(); return recs >= n/3 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	px.Restore()
	s2 := open(t, cfg) // same journal dir: a restarted router
	defer s2.Close()
	waitFor(t, "journal replayed after restart", func() bool { _, recs := s2.journal.stats(); return recs == 0 })
	all, _, err := s2.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: "a"}, Limit: 1000})
	if err != nil || len(all) != n {
		t.Fatalf("trigger a has %d outcomes, want %d (%v)", len(all), n, err)
	}
	seen := map[string]bool{}
	for _, o := range all {
		if seen[o.EventID] {
			t.Errorf("%s stored twice", o.EventID)
		}
		seen[o.EventID] = true
	}
}

// BenchmarkRecord measures outcomes written per second to the real Cassandra.
func BenchmarkRecord(b *testing.B) {
	cfg := Config{Hosts: []string{testenv.Cassandra(b)}, Keyspace: "sy_bench", Consistency: "ONE", JournalDir: b.TempDir(), DisableHostLookup: true}
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().UTC()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Record(testOutcome(fmt.Sprintf("b%d-%d", base.UnixNano(), i), "bench", router.StatusDelivered, base.Add(time.Duration(i)*time.Microsecond)))
	}
	_ = s.Close() // waits until every outcome is written
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "outcomes/s")
}
