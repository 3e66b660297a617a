package cassandra

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/resultstoretest"
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

var (
	testOutcome = resultstoretest.Outcome
	waitFor     = resultstoretest.WaitFor
)

func eventCount(t *testing.T, s *Store, id string) int {
	out, err := s.EventOutcomes(context.Background(), id)
	if err != nil {
		return -1
	}
	return len(out)
}

// TestContract runs the ResultStore contract every store keeps, against the real Cassandra.
func TestContract(t *testing.T) {
	host := testenv.Cassandra(t)
	resultstoretest.Run(t, func(t *testing.T) (router.ResultStore, func()) {
		s := open(t, testConfig(t, host))
		return s, func() {
			if err := s.Close(); err != nil {
				t.Error(err)
			}
		}
	})
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

// TestShutdownWithAFullJournalDuringAnOutage (issue #18, item 2): with Cassandra unreachable and
// the journal at its bound, deliveries block in Record (backpressure) and Close used to wait for
// the writers while they waited for journal space, which only Close's stop would have ended:
// SIGTERM hung until SIGKILL and the buffered outcomes were lost. Now BeginShutdown (serve calls
// it when SIGTERM arrives) releases them, Close returns, and every outcome is in the journal.
func TestShutdownWithAFullJournalDuringAnOutage(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Hosts: []string{"127.0.0.1:1"}, JournalDir: dir, JournalMaxBytes: 4096, Writers: 4, Buffer: 10,
		Timeout: 200 * time.Millisecond, DisableHostLookup: true}
	s := open(t, cfg)
	const n = 200 // far more than 4 KiB of journal and the buffer of 10
	var recorded sync.WaitGroup
	for i := range n {
		recorded.Add(1)
		go func() { // as deliveries do: each records its own outcome
			defer recorded.Done()
			s.Record(testOutcome(fmt.Sprintf("o%03d", i), "t", router.StatusFailed, time.Now()))
		}()
	}
	time.Sleep(300 * time.Millisecond) // the journal fills, Records block
	all := make(chan struct{})
	go func() { recorded.Wait(); close(all) }()
	select {
	case <-all:
		t.Fatal("every Record returned with the journal full: the test does not reach the backpressure")
	default:
	}
	s.BeginShutdown()
	select {
	case <-all:
	case <-time.After(20 * time.Second):
		t.Fatal("Records still blocked after BeginShutdown")
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return: writers wait for journal space during the outage")
	}
	j, err := openJournal(dir, 4096, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if _, records := j.stats(); records != n {
		t.Errorf("%d outcomes in the journal after Close, want all %d", records, n)
	}
}

// TestDurableMeansOnDisk (issue #18, item 1): a Kafka-class broker commits an event's offset once
// its outcomes are durable. During an outage that is the journal: durable is called only once the
// outcome is fsynced there, never for one only in the buffer.
func TestDurableMeansOnDisk(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Hosts: []string{"127.0.0.1:1"}, JournalDir: dir, Timeout: 200 * time.Millisecond, DisableHostLookup: true})
	defer s.Close()
	durable := make(chan string, 10)
	for i := range 10 {
		id := fmt.Sprintf("dur-%d", i)
		s.RecordThen(testOutcome(id, "t", router.StatusFailed, time.Now()), func() {
			b, err := os.ReadFile(filepath.Join(dir, segmentName(0)))
			if err != nil || !strings.Contains(string(b), id) {
				t.Errorf("%s: durable called before it is in the journal (%v)", id, err)
			}
			durable <- id
		})
	}
	for range 10 {
		select {
		case <-durable:
		case <-time.After(20 * time.Second):
			t.Fatal("durable never called for an outcome the journal took")
		}
	}
}

// TestDeduplicator (issue #18, item 7): webhook deliveries are claimed in Cassandra with a
// lightweight transaction, so every replica, and a restarted one, agrees on what was routed.
func TestDeduplicator(t *testing.T) {
	cfg := testConfig(t, testenv.Cassandra(t))
	a, b := open(t, cfg), open(t, cfg) // two replicas on one keyspace
	defer a.Close()
	defer b.Close()
	ctx := context.Background()
	waitFor(t, "both connected", func() bool { return a.session.Load() != nil && b.session.Load() != nil })
	reserve := func(s *Store, key string) router.DedupState {
		t.Helper()
		st, err := s.Reserve(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := reserve(a, "ns/gh/d-1"); st != router.DedupFresh {
		t.Fatalf("first claim: %v", st)
	}
	if st := reserve(b, "ns/gh/d-1"); st != router.DedupInFlight {
		t.Errorf("the other replica while the first routes: %v, want in flight", st)
	}
	if err := a.Settle(ctx, "ns/gh/d-1", true, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st := reserve(b, "ns/gh/d-1"); st != router.DedupAccepted {
		t.Errorf("the other replica once accepted: %v, want accepted", st)
	}
	if st := reserve(a, "ns/gh/d-2"); st != router.DedupFresh {
		t.Fatalf("another delivery: %v", st)
	}
	if err := a.Settle(ctx, "ns/gh/d-2", false, time.Minute); err != nil {
		t.Fatal(err)
	}
	if st := reserve(b, "ns/gh/d-2"); st != router.DedupFresh {
		t.Errorf("a released claim (the sink refused): %v, want fresh so the retry routes", st)
	}
}

func failedIDs(t *testing.T, s *Store, trigger string) map[string]bool {
	t.Helper()
	out, _, err := s.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: trigger}, OnlyFailed: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, o := range out {
		ids[o.EventID] = true
	}
	return ids
}

// TestLateWritesNeverUndoNewerOnes (issue #18, item 3): an outcome can reach Cassandra twice and
// late: replayed from the journal after a crash that came before the replay position was saved, or
// written again after a parallel replay batch failed part-way. Such a write used to bring back a
// failed-list row that a redrive had deleted meanwhile, and to overwrite the newer outcome of the
// event's new run. Rows are now stamped with the outcome's finish time, so the late write loses.
func TestLateWritesNeverUndoNewerOnes(t *testing.T) {
	s := open(t, testConfig(t, testenv.Cassandra(t)))
	defer s.Close()
	ctx := context.Background()
	failed := testOutcome("late1", "late", router.StatusFailed, time.Now().Add(-time.Minute))
	s.Record(failed)
	waitFor(t, "the failed outcome", func() bool { return failedIDs(t, s, "late")["late1"] })
	if err := s.Redriven(ctx, failed); err != nil {
		t.Fatal(err)
	}
	delivered := testOutcome("late1", "late", router.StatusDelivered, time.Now())
	delivered.Received = failed.Received // the same row of outcomes_by_event
	s.Record(delivered)
	waitFor(t, "the redriven run's outcome", func() bool {
		out, err := s.EventOutcomes(ctx, "late1")
		return err == nil && len(out) == 1 && out[0].Status == router.StatusDelivered
	})

	late, err := toRecord(failed) // the journal's copy of the first outcome, replayed late
	if err != nil {
		t.Fatal(err)
	}
	if err := s.insertAll(ctx, []*record{late})[0]; err != nil {
		t.Fatal(err)
	}
	if failedIDs(t, s, "late")["late1"] {
		t.Error("a late write of the failed outcome brought the redriven event back onto the failed list")
	}
	if out, err := s.EventOutcomes(ctx, "late1"); err != nil || len(out) != 1 || out[0].Status != router.StatusDelivered {
		t.Errorf("after a late write of the old outcome the event's outcome is %+v (%v), want the newer delivered one", out, err)
	}
}

// TestJournalBacklogDrains: a journal filled during an outage is written to Cassandra once it is
// back, in bounded batches with the writers' parallelism; the rate is what docs/cassandra.md
// publishes (SWITCHYARD_DRAIN_RECORDS sets the backlog, 10,000 by default).
func TestJournalBacklogDrains(t *testing.T) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("SWITCHYARD_DRAIN_RECORDS")); err == nil && v > 0 {
		n = v
	}
	cfg := testConfig(t, testenv.Cassandra(t))
	cfg.JournalSegmentBytes = 1 << 20
	j, err := openJournal(cfg.JournalDir, 1<<30, cfg.JournalSegmentBytes)
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Now()
	for i := range n {
		status := router.StatusDelivered
		if i%10 == 0 {
			status = router.StatusFailed // one in ten carries its event to the failed list
		}
		r, err := toRecord(testOutcome(fmt.Sprintf("drain-%06d", i), "drain", status, finished))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := j.append(r, nil); err != nil {
			t.Fatal(err)
		}
	}
	backlog, _ := j.stats()
	j.close()
	if err := Migrate(cfg); err != nil { // the schema first, so that the time is the drain's
		t.Fatal(err)
	}

	started := time.Now()
	s := open(t, cfg)
	defer s.Close()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if b, left := s.journal.stats(); b == 0 && left == 0 {
			break
		}
		if time.Now().After(deadline) {
			_, left := s.journal.stats()
			t.Fatalf("%d of %d journaled outcomes still wait after 5 minutes", left, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(started)
	t.Logf("drained %d outcomes (%d MiB of journal) in %v: %.0f outcomes/s with %d writers", n, backlog>>20, took.Round(time.Millisecond), float64(n)/took.Seconds(), s.cfg.Writers)
	for _, id := range []string{"drain-000000", fmt.Sprintf("drain-%06d", n/2), fmt.Sprintf("drain-%06d", n-1)} {
		if eventCount(t, s, id) != 1 {
			t.Errorf("%s is not in Cassandra after the drain", id)
		}
	}
	if files := segmentFiles(t, cfg.JournalDir); len(files) != 1 {
		t.Errorf("after the drain the journal has %d segment files, want one (empty)", len(files))
	}
}

// TestTraceIDColumnAddedToOlderTables: a keyspace made before outcomes carried a trace id gets
// the column at the next start, and trace ids are then stored and read back.
func TestTraceIDColumnAddedToOlderTables(t *testing.T) {
	cfg := testConfig(t, testenv.Cassandra(t))
	if err := Migrate(cfg); err != nil {
		t.Fatal(err)
	}
	c := gocql.NewCluster(testenv.Cassandra(t))
	c.ProtoVersion, c.Timeout, c.DisableInitialHostLookup = 4, 30*time.Second, true
	session, err := c.CreateSession()
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	for _, table := range []string{"outcomes_by_event", "outcomes_by_trigger", "failed_by_trigger"} {
		if err := session.Query("ALTER TABLE " + cfg.Keyspace + "." + table + " DROP trace_id").Exec(); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, cfg) // migrates again: the columns come back
	defer s.Close()
	o := testOutcome("traced", "t", router.StatusFailed, time.Now())
	o.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	s.Record(o)
	waitFor(t, "the outcome with its trace id", func() bool {
		out, _ := s.EventOutcomes(context.Background(), "traced")
		return len(out) == 1 && out[0].TraceID == o.TraceID
	})
	waitFor(t, "the failed list with its trace id", func() bool {
		failed, _, err := s.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: o.Trigger, OnlyFailed: true})
		return err == nil && len(failed) == 1 && failed[0].TraceID == o.TraceID
	})
}

// TestOutcomesWrittenTogether (issue #22): the outcomes a writer takes at once are written with
// one trigger's rows in unlogged batches; every outcome is then readable by event, by trigger and
// (when failed) in the failed list, and each is reported durable once.
func TestOutcomesWrittenTogether(t *testing.T) {
	s := open(t, testConfig(t, testenv.Cassandra(t)))
	defer s.Close()
	waitFor(t, "the session", func() bool { return s.session.Load() != nil })
	var durable atomic.Int64
	finished := time.Now().Add(-time.Minute)
	var group []queued
	triggers := []string{"ta", "tb", "tc"}
	for i := range 300 {
		status := router.StatusDelivered
		if i%5 == 0 {
			status = router.StatusFailed
		}
		o := testOutcome(fmt.Sprintf("together-%03d", i), triggers[i%3], status, finished.Add(time.Duration(i)*time.Millisecond))
		group = append(group, queued{o, func() { durable.Add(1) }})
		if len(group) == maxWriteGroup || i == 299 {
			s.persistAll(group)
			group = nil
		}
	}
	if n := durable.Load(); n != 300 {
		t.Fatalf("%d outcomes reported durable, want 300", n)
	}
	if _, n := s.journal.stats(); n != 0 {
		t.Fatalf("%d outcomes journaled: Cassandra is up, every write should have succeeded", n)
	}
	for _, name := range triggers {
		all, _, err := s.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: name}, Limit: 1000})
		if err != nil || len(all) != 100 {
			t.Fatalf("trigger %s: %d outcomes (%v), want 100", name, len(all), err)
		}
		failed, _, err := s.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: name}, OnlyFailed: true, Limit: 1000})
		if err != nil || len(failed) != 20 {
			t.Fatalf("trigger %s: %d failed (%v), want 20", name, len(failed), err)
		}
		for _, o := range failed {
			if o.Event == nil || o.Event.ID() != o.EventID {
				t.Fatalf("failed outcome %s lost its event", o.EventID)
			}
		}
	}
	for _, id := range []string{"together-000", "together-151", "together-299"} {
		if n := eventCount(t, s, id); n != 1 {
			t.Errorf("%s: %d outcomes by event, want 1", id, n)
		}
	}
}

// TestByTriggerBatches: rows go to batches by partition (trigger and bucket), in order, each batch
// at most maxBatchBytes unless one row alone is larger.
func TestByTriggerBatches(t *testing.T) {
	s := &Store{cfg: Config{Bucket: time.Hour}}
	at := time.Date(2026, 12, 1, 10, 30, 0, 0, time.UTC)
	rec := func(trigger string, finished time.Time, errText string) *record {
		return &record{Trigger: trigger, EventID: "e", Finished: finished, LastError: errText}
	}
	huge := strings.Repeat("x", maxBatchBytes)
	recs := []*record{
		rec("a", at, ""), rec("b", at, ""), rec("a", at, ""), rec("a", at.Add(time.Hour), ""), // another bucket
		rec("b", at, huge), rec("b", at, ""),
	}
	got := s.byTriggerBatches(recs)
	want := [][]int{{0, 2}, {1}, {4}, {5}, {3}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", got, want)
	}
	many := make([]*record, 100)
	for i := range many {
		many[i] = rec("a", at, strings.Repeat("y", 100))
	}
	for _, b := range s.byTriggerBatches(many) {
		size := 0
		for _, i := range b {
			size += many[i].rowBytes()
		}
		if size > maxBatchBytes {
			t.Fatalf("a batch of %d bytes", size)
		}
	}
}

// TestNothingToWrite: a group whose outcomes all fail to encode leaves nothing to write (and
// must not reach Cassandra, or panic).
func TestNothingToWrite(t *testing.T) {
	s := &Store{}
	if errs := s.insertAll(context.Background(), nil); len(errs) != 0 {
		t.Fatalf("errors for no records: %v", errs)
	}
}

// BenchmarkDedupClaim measures a broker's duplicate refusal per event against the real Cassandra
// (switchyard.dev/dedup-window with this store): the claim (a lightweight transaction) and its
// settling, one after the other, as Publish makes them for one event.
func BenchmarkDedupClaim(b *testing.B) {
	cfg := Config{Hosts: []string{testenv.Cassandra(b)}, Keyspace: "sy_bench", Consistency: "ONE", JournalDir: b.TempDir(), DisableHostLookup: true}
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for s.session.Load() == nil { // connected in the background
		time.Sleep(50 * time.Millisecond)
	}
	base := time.Now().UnixNano()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("broker/ns/b\n/s\nbench-%d-%d", base, i)
		state, err := s.Reserve(ctx, key, 5*time.Minute)
		if err != nil || state != router.DedupFresh {
			b.Fatal(state, err)
		}
		if err := s.Settle(ctx, key, true, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDedupClaimParallel is BenchmarkDedupClaim with 16 claims in flight, as Publish makes a
// batch's (ns/op is then the time per event of the batch).
func BenchmarkDedupClaimParallel(b *testing.B) {
	cfg := Config{Hosts: []string{testenv.Cassandra(b)}, Keyspace: "sy_bench", Consistency: "ONE", JournalDir: b.TempDir(), DisableHostLookup: true}
	s, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for s.session.Load() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	base := time.Now().UnixNano()
	var n atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			key := fmt.Sprintf("broker/ns/b\n/s\nbench-%d-%d", base, n.Add(1))
			if state, err := s.Reserve(ctx, key, 5*time.Minute); err != nil || state != router.DedupFresh {
				b.Fatal(state, err)
			}
			if err := s.Settle(ctx, key, true, 5*time.Minute); err != nil {
				b.Fatal(err)
			}
		}
	})
}
