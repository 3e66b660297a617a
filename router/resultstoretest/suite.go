// Package resultstoretest is the contract every router.ResultStore keeps, as one suite that each
// implementation's tests run (memstore's, and the Cassandra store's against a real Cassandra). A new
// store gets the whole contract by calling Run from its own tests.
//
// The contract, beyond the interface's doc comments: Record never blocks and its outcomes become
// visible (at once or shortly: the suite waits up to 30 s); EventOutcomes returns every trigger's
// outcome of an event; TriggerOutcomes pages a trigger's outcomes newest first, honours OnlyFailed,
// Since and Limit, and refuses a malformed page token; a failed outcome keeps its event; Redriven
// takes an outcome off the failed list and keeps its history; recording the same outcome twice
// stores it once; concurrent Records are safe; a DurableStore calls durable once per outcome,
// when it can be read; a closed store leaves no goroutine behind.
package resultstoretest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/goleak"

	"github.com/switchyard-events/switchyard/router"
)

// Open returns a new, empty store and the function that closes it (flushing what it buffers).
type Open func(t *testing.T) (router.ResultStore, func())

// Run runs the contract against stores made by open, one fresh store per case.
func Run(t *testing.T, open Open) {
	t.Run("Queries", func(t *testing.T) { queries(t, open) })
	t.Run("IdempotentAndConcurrent", func(t *testing.T) { idempotentAndConcurrent(t, open) })
	t.Run("DurableOnce", func(t *testing.T) { durableOnce(t, open) })
	t.Run("NoGoroutineLeftBehind", func(t *testing.T) {
		before := goleak.IgnoreCurrent()
		s, closeStore := open(t)
		s.Record(Outcome("leak", "t", router.StatusFailed, time.Now()))
		WaitFor(t, "the outcome", func() bool { return count(s, "leak") == 1 })
		closeStore()
		goleak.VerifyNone(t, before)
	})
}

// Outcome is an outcome of event id at trigger ns/trigger finished at finished; a failed one keeps
// its event.
func Outcome(id, trigger string, status router.Status, finished time.Time) *router.Outcome {
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

// WaitFor waits up to 30 s for cond, failing t with what it waited for.
func WaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(s router.ResultStore, id string) int {
	out, err := s.EventOutcomes(context.Background(), id)
	if err != nil {
		return -1
	}
	return len(out)
}

func queries(t *testing.T, open Open) {
	s, closeStore := open(t)
	defer closeStore()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	// 12 outcomes of trigger "a" 20 minutes apart (across hours, where a store partitions by time),
	// every third one dead-lettered; "b" as noise.
	for i := 0; i < 12; i++ {
		st := router.StatusDelivered
		if i%3 == 0 {
			st = router.StatusDeadLettered
		}
		s.Record(Outcome(fmt.Sprintf("e%02d", i), "a", st, now.Add(-time.Duration(i)*20*time.Minute)))
		s.Record(Outcome(fmt.Sprintf("e%02d", i), "b", router.StatusDelivered, now.Add(-time.Duration(i)*20*time.Minute)))
	}
	WaitFor(t, "every outcome", func() bool { return count(s, "e11") == 2 && count(s, "e00") == 2 })

	out, err := s.EventOutcomes(ctx, "e03")
	if err != nil || len(out) != 2 {
		t.Fatalf("EventOutcomes: %v %v", out, err)
	}
	for _, o := range out {
		if o.Trigger.Name == "a" && (o.Status != router.StatusDeadLettered || o.Event == nil || string(o.Event.Data()) != `{"id":"e03"}` || o.Attempts != 2 || o.LastCode != 503) {
			t.Errorf("outcome at a: %+v", o)
		}
	}
	if out, err := s.EventOutcomes(ctx, "never-seen"); err != nil || len(out) != 0 {
		t.Errorf("an unknown event: %v %v", out, err)
	}

	page := func(q router.OutcomeQuery) []string {
		var ids []string
		for i := 0; ; i++ {
			got, next, err := s.TriggerOutcomes(ctx, q)
			if err != nil {
				t.Fatalf("TriggerOutcomes: %v", err)
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
		t.Errorf("newest first, paged: %s", got)
	}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 2, OnlyFailed: true})); got != "[e00 e03 e06 e09]" {
		t.Errorf("failed only: %s", got)
	}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 100, Since: now.Add(-65 * time.Minute)})); got != "[e00 e01 e02 e03]" {
		t.Errorf("since: %s", got)
	}
	failed, _, _ := s.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: a, Limit: 1, OnlyFailed: true})
	if len(failed) != 1 || failed[0].Event == nil {
		t.Fatalf("a failed outcome keeps its event: %+v", failed)
	}
	if err := s.Redriven(ctx, &failed[0]); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(page(router.OutcomeQuery{Trigger: a, Limit: 10, OnlyFailed: true})); got != "[e03 e06 e09]" {
		t.Errorf("after redriving e00: %s", got)
	}
	if count(s, "e00") != 2 {
		t.Error("Redriven removed history")
	}
	if _, _, err := s.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: a, PageToken: "!!"}); err == nil {
		t.Error("a malformed page token was accepted")
	}
}

func idempotentAndConcurrent(t *testing.T, open Open) {
	s, closeStore := open(t)
	defer closeStore()
	base := time.Now().UTC().Truncate(time.Millisecond)
	var wg sync.WaitGroup
	// Eight writers, two per trigger: every outcome is recorded twice, concurrently.
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				s.Record(Outcome(fmt.Sprintf("c%03d", i), fmt.Sprintf("t%d", g%4), router.StatusFailed, base.Add(time.Duration(i)*time.Millisecond)))
			}
		}(g)
	}
	wg.Wait()
	WaitFor(t, "every outcome", func() bool { return count(s, "c099") == 4 && count(s, "c000") == 4 })
	for i := 0; i < 100; i += 7 {
		if n := count(s, fmt.Sprintf("c%03d", i)); n != 4 {
			t.Errorf("c%03d has %d outcomes, want 4 (one per trigger, the duplicate folded)", i, n)
		}
	}
	failed, _, err := s.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: "t1"}, OnlyFailed: true, Limit: 1000})
	if err != nil || len(failed) != 100 {
		t.Errorf("t1's failed list has %d, want 100 (%v)", len(failed), err)
	}
}

// durableOnce: a DurableStore calls durable exactly once per outcome, and the outcome can be read
// once it has (a store that is not one is durable at Record: nothing to check).
func durableOnce(t *testing.T, open Open) {
	s, closeStore := open(t)
	defer closeStore()
	ds, ok := s.(router.DurableStore)
	if !ok {
		t.Skip("not a DurableStore: outcomes count as durable at Record")
	}
	const n = 50
	var calls sync.Map
	var wg sync.WaitGroup
	base := time.Now().UTC().Truncate(time.Millisecond)
	for i := 0; i < n; i++ {
		wg.Add(1)
		id := fmt.Sprintf("d%02d", i)
		counter := new(int32)
		calls.Store(id, counter)
		go func() {
			defer wg.Done()
			ds.RecordThen(Outcome(id, "t", router.StatusFailed, base.Add(time.Duration(i)*time.Millisecond)), func() {
				if count(s, id) != 1 {
					t.Errorf("%s: durable called before the outcome can be read", id)
				}
				atomicAdd(counter)
			})
		}()
	}
	wg.Wait()
	WaitFor(t, "every durable call", func() bool {
		done := 0
		calls.Range(func(_, v any) bool {
			if atomicLoad(v.(*int32)) > 0 {
				done++
			}
			return true
		})
		return done == n
	})
	time.Sleep(100 * time.Millisecond) // a second call would come now
	calls.Range(func(k, v any) bool {
		if c := atomicLoad(v.(*int32)); c != 1 {
			t.Errorf("%s: durable called %d times", k, c)
		}
		return true
	})
}

func atomicAdd(p *int32)        { atomic.AddInt32(p, 1) }
func atomicLoad(p *int32) int32 { return atomic.LoadInt32(p) }
