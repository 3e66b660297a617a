package memstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/resultstoretest"
)

func outcome(id string, trigger string, status router.Status, at time.Time) *router.Outcome {
	return &router.Outcome{EventID: id, Trigger: router.TriggerRef{Namespace: "ns", Name: trigger}, Status: status, Finished: at}
}

func TestEvictionAndEventLookup(t *testing.T) {
	s := New(3)
	ctx := context.Background()
	t0 := time.Unix(1000, 0)
	s.Record(outcome("a", "t1", router.StatusDelivered, t0))
	s.Record(outcome("a", "t2", router.StatusFailed, t0))
	s.Record(outcome("b", "t1", router.StatusDelivered, t0))
	if got, _ := s.EventOutcomes(ctx, "a"); len(got) != 2 {
		t.Fatalf("a has %d outcomes, want 2", len(got))
	}
	s.Record(outcome("c", "t1", router.StatusDelivered, t0)) // evicts a@t1
	got, _ := s.EventOutcomes(ctx, "a")
	if len(got) != 1 || got[0].Trigger.Name != "t2" {
		t.Fatalf("after eviction a has %+v", got)
	}
	s.Record(outcome("d", "t1", router.StatusDelivered, t0)) // evicts a@t2
	if got, _ := s.EventOutcomes(ctx, "a"); len(got) != 0 {
		t.Fatalf("a still has %+v", got)
	}
	if len(s.byEvent) != 3 {
		t.Errorf("index holds %d ids, want 3 (b, c, d)", len(s.byEvent))
	}
}

func TestConcurrentRecord(t *testing.T) {
	s := New(50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				s.Record(outcome(fmt.Sprintf("%d-%d", g, i%7), "t", router.StatusDelivered, time.Now()))
				_, _ = s.EventOutcomes(context.Background(), "0-1")
			}
		}(g)
	}
	wg.Wait()
	held := 0
	for _, seqs := range s.byEvent {
		held += len(seqs)
	}
	if held != 50 {
		t.Errorf("index holds %d outcomes, want the store's 50", held)
	}
}

// TestEventBytesAreBounded (issue #16, item 5): failed outcomes keep their event for redrive, but
// only up to the byte bound: 150 failed 4 MB events used to stay in memory (607 MB) after delivery
// ended. Past the bound the oldest outcomes lose their event and say so; the newest stay redrivable.
func TestEventBytesAreBounded(t *testing.T) {
	s := New(1000)
	s.SetMaxEventBytes(10 << 20)
	ctx := context.Background()
	data := make([]byte, 1<<20)
	for i := range 30 {
		o := outcome(fmt.Sprintf("e%d", i), "t", router.StatusFailed, time.Unix(int64(i), 0))
		e := event.New()
		e.SetID(o.EventID)
		e.SetSource("/s")
		e.SetType("t")
		e.DataEncoded = data
		o.Event = &e
		s.Record(o)
	}
	if got := s.EventBytes(); got > 10<<20 {
		t.Fatalf("%d event bytes held, bound 10 MiB", got)
	}
	newest, _ := s.EventOutcomes(ctx, "e29")
	oldest, _ := s.EventOutcomes(ctx, "e0")
	if newest[0].Event == nil {
		t.Error("the newest failed outcome lost its event")
	}
	if oldest[0].Event != nil || !strings.Contains(oldest[0].LastError, "event not kept") {
		t.Errorf("the oldest failed outcome: event kept %v, error %q", oldest[0].Event != nil, oldest[0].LastError)
	}
	// Evicting outcomes gives their bytes back.
	for i := range 1000 {
		s.Record(outcome(fmt.Sprintf("d%d", i), "t", router.StatusDelivered, time.Unix(100, 0)))
	}
	if got := s.EventBytes(); got != 0 {
		t.Errorf("%d event bytes counted after every failed outcome was evicted", got)
	}
}

// TestOutcomeBytesAreBounded (issue #36, case 3): producers choose ids, sources and types of any
// length, and delivered outcomes keep them without their event. The records are bounded in bytes
// too: past the bound the oldest are forgotten, their bytes given back, and the rest still read
// as before.
func TestOutcomeBytesAreBounded(t *testing.T) {
	s := New(1000)
	s.SetMaxOutcomeBytes(16 << 20)
	ctx := context.Background()
	long := strings.Repeat("i", 1<<20)
	for i := range 100 {
		o := outcome(fmt.Sprintf("%d-%s", i, long), "t", router.StatusDelivered, time.Unix(int64(i), 0))
		o.Source, o.Type = long, long
		s.Record(o)
		if got := s.OutcomeBytes(); got > 16<<20+4<<20 {
			t.Fatalf("after %d outcomes of 4 MiB of strings: %d bytes held, bound 16 MiB", i+1, got)
		}
	}
	if got, _ := s.EventOutcomes(ctx, "0-"+long); len(got) != 0 {
		t.Error("the oldest outcome is still held")
	}
	if got, _ := s.EventOutcomes(ctx, "99-"+long); len(got) != 1 {
		t.Error("the newest outcome is not held")
	}
	page, _, err := s.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "ns", Name: "t"}, Limit: 1000})
	if err != nil || len(page) == 0 || len(page) > 5 {
		t.Fatalf("listing after the bound: %d outcomes, %v; want the few that fit", len(page), err)
	}
	if len(s.byEvent) != len(page) {
		t.Errorf("index holds %d ids, the ring %d", len(s.byEvent), len(page))
	}
	// Small outcomes after the long ones: the ring fills by count again, every byte accounted.
	for i := range 2000 {
		s.Record(outcome(fmt.Sprintf("s%d", i), "t", router.StatusDelivered, time.Unix(200, 0)))
	}
	if got, want := s.OutcomeBytes(), int64(1000*outcomeOverhead); got < want || got > want+1000*2*6 {
		t.Errorf("%d bytes counted for 1,000 small outcomes, want about %d", got, want)
	}
	if page, _, _ := s.TriggerOutcomes(ctx, router.OutcomeQuery{Limit: 5000}); len(page) != 1000 {
		t.Errorf("%d outcomes listed, want the ring's 1,000", len(page))
	}
}

// TestContract runs the ResultStore contract every store keeps.
func TestContract(t *testing.T) {
	resultstoretest.Run(t, func(*testing.T) (router.ResultStore, func()) { return New(1000), func() {} })
}

// BenchmarkRecordSameID: producers may reuse one event id for ever; recording must not grow with
// the outcomes that id already has (100,000 here).
func BenchmarkRecordSameID(b *testing.B) {
	s := New(100000)
	t0 := time.Now()
	for i := range 100000 {
		s.Record(outcome("same", "t", router.StatusDelivered, t0.Add(time.Duration(i))))
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		s.Record(outcome("same", "t", router.StatusDelivered, t0.Add(time.Duration(100000+i))))
	}
}
