package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/filter"
)

// sliceArchive is an archive in a slice; its checkpoints are indexes.
type sliceArchive []router.ArchivedEvent

func (a sliceArchive) ReadArchive(ctx context.Context, q router.ArchiveQuery, fn func(router.ArchivedEvent) error) error {
	start := 0
	if q.After != "" {
		start, _ = strconv.Atoi(string(q.After))
	}
	for i := start; i < len(a); i++ {
		if a[i].Received.Before(q.From) || !a[i].Received.Before(q.To) {
			continue
		}
		ae := a[i]
		e := ae.Event.Clone()
		ae.Event, ae.At = &e, router.Checkpoint(strconv.Itoa(i+1))
		if err := fn(ae); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// fakeBroker delivers to trigger "t" the events whose type is "a", and remembers them.
type fakeBroker struct {
	mu    sync.Mutex
	got   []string
	block chan struct{} // when set, deliveries wait for it
}

func (b *fakeBroker) CanReplay(ref router.BrokerRef, only []router.TriggerRef) error {
	for _, t := range only {
		if t.Name != "t" {
			return fmt.Errorf("%w: %s", router.ErrBrokerNotFound, t)
		}
	}
	return nil
}

func (b *fakeBroker) Replay(_ context.Context, _ router.BrokerRef, _ []router.TriggerRef, e *event.Event, observe func(router.Status), done func()) (int, error) {
	if e.Type() != "a" {
		done()
		return 0, nil
	}
	b.mu.Lock()
	b.got = append(b.got, e.ID()+"@"+fmt.Sprint(e.Extensions()[router.ExtReplay]))
	b.mu.Unlock()
	go func() {
		if b.block != nil {
			<-b.block
		}
		observe(router.StatusDelivered)
		done()
	}()
	return 1, nil
}

func archiveOf(n int, start time.Time) sliceArchive {
	var a sliceArchive
	for i := 0; i < n; i++ {
		e := event.New()
		e.SetID(fmt.Sprintf("e%04d", i))
		e.SetSource("/s")
		e.SetType(map[bool]string{true: "a", false: "b"}[i%4 != 0])
		a = append(a, router.ArchivedEvent{Event: &e, Received: start.Add(time.Duration(i) * time.Millisecond)})
	}
	return a
}

func waitState(t *testing.T, m *Manager, id, state string) Run {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		run, _ := m.Get(id)
		if run.State == state {
			return run
		}
		if time.Now().After(deadline) {
			t.Fatalf("run %s is %s after 10s, want %s: %+v", id, run.State, state, run)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunReplaysTheRangeInChunks(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	archive := archiveOf(1200, start)
	b := &fakeBroker{}
	m := New(Options{Logger: zap.NewNop(), Deliver: b, Reader: func(router.BrokerRef) (router.ArchiveReader, error) { return archive, nil }})
	defer m.Close()
	ref := router.BrokerRef{Namespace: "ns", Name: "default"}
	// [100 ms, 1100 ms): events 100..1099, three of four of type a.
	run, err := m.Start(Spec{Broker: ref, Triggers: []router.TriggerRef{{Namespace: "ns", Name: "t"}}, From: start.Add(100 * time.Millisecond), To: start.Add(1100 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	final := waitState(t, m, run.ID, StateDone)
	if final.Read != 1000 || final.Delivered != 750 || final.NotMatching != 250 || final.Failed != 0 {
		t.Errorf("final %+v", final)
	}
	if len(b.got) != 750 || b.got[0] != "e0101@"+run.ID || b.got[749] != "e1099@"+run.ID {
		t.Errorf("delivered %d, first %v, last %v", len(b.got), b.got[0], b.got[len(b.got)-1])
	}
	if final.Checkpoint != "1100" {
		t.Errorf("checkpoint %q, want after event 1099", final.Checkpoint)
	}
	for _, bad := range []Spec{
		{Broker: ref, Triggers: []router.TriggerRef{{Namespace: "ns", Name: "t"}}},
		{Broker: ref, From: start},
		{Broker: ref, From: start, AllTriggers: true, Triggers: []router.TriggerRef{{Namespace: "ns", Name: "t"}}},
		{Broker: ref, From: start, Triggers: []router.TriggerRef{{Namespace: "ns", Name: "nope"}}},
	} {
		if _, err := m.Start(bad); err == nil {
			t.Errorf("%+v started", bad)
		}
	}
}

func TestCancelStopsReading(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	archive := archiveOf(2000, start)
	b := &fakeBroker{block: make(chan struct{})}
	m := New(Options{Logger: zap.NewNop(), Deliver: b, Reader: func(router.BrokerRef) (router.ArchiveReader, error) { return archive, nil }})
	defer m.Close()
	run, err := m.Start(Spec{Broker: router.BrokerRef{Namespace: "ns", Name: "d"}, AllTriggers: true, From: start})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if r, _ := m.Get(run.ID); r.Read == chunkSize {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// At most maxRunning at once: the others are refused while this one and seven more run.
	for i := 1; i < maxRunning; i++ {
		if _, err := m.Start(Spec{Broker: router.BrokerRef{Namespace: "ns", Name: "d"}, AllTriggers: true, From: start}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Start(Spec{Broker: router.BrokerRef{Namespace: "ns", Name: "d"}, AllTriggers: true, From: start}); !errors.Is(err, ErrBusy) {
		t.Errorf("run %d: %v, want ErrBusy", maxRunning+1, err)
	}
	for _, r := range m.List() {
		m.Cancel(r.ID)
	}
	close(b.block) // what was handed over finishes
	final := waitState(t, m, run.ID, StateCancelled)
	if final.Read != chunkSize || final.Delivered != 375 {
		t.Errorf("cancelled run read %d and delivered %d, want the first chunk only (500, 375)", final.Read, final.Delivered)
	}
}

func TestDryRunComparesFilters(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	archive := archiveOf(100, start)
	ref := router.BrokerRef{Namespace: "ns", Name: "default"}
	m := New(Options{Logger: zap.NewNop(), Deliver: &fakeBroker{},
		Reader: func(router.BrokerRef) (router.ArchiveReader, error) { return archive, nil },
		Filters: func(router.BrokerRef) (map[string]filter.Filter, error) {
			return map[string]filter.Filter{"t": filter.Exact(map[string]string{"type": "a"})}, nil
		}})
	defer m.Close()
	candidate, err := config.Parse("c.yaml", []byte(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: ns}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: ns}
spec:
  broker: default
  filter: {attributes: {type: b}}
  subscriber: {uri: "http://x/"}
`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := m.DryRun(context.Background(), Spec{Broker: ref, From: start}, candidate)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Events != 100 || len(rep.Triggers) != 1 {
		t.Fatalf("report %+v", rep)
	}
	tr := rep.Triggers[0]
	if tr.Current != 75 || tr.Candidate != 25 || tr.NewlyMatching != 25 || tr.NoLongerMatching != 75 || len(tr.Samples) != 2*maxSamples {
		t.Errorf("trigger %+v", tr)
	}
	if s := tr.Samples[0]; s.Change != "newly matches" || s.Why != `exact: type is "b", not "a"` {
		t.Errorf("first sample %+v", s)
	}
	if _, err := m.DryRun(context.Background(), Spec{Broker: router.BrokerRef{Namespace: "ns", Name: "other"}, From: start}, candidate); err == nil {
		t.Error("dry run of a broker the candidate lacks")
	}
}

// TestClampedAndBusyDryRuns: a range is read from no earlier than the retention before now, and a
// third dry run at once is refused.
func TestClampedAndBusyDryRuns(t *testing.T) {
	archive := archiveOf(100, time.Now().Add(-3*time.Hour)) // 100 ms apart: all about three hours old
	var n int
	err := Clamped(archive, 2*time.Hour).ReadArchive(context.Background(),
		router.ArchiveQuery{From: time.Now().Add(-10 * time.Hour), To: time.Now()}, func(router.ArchivedEvent) error { n++; return nil })
	if err != nil || n != 0 {
		t.Errorf("read %d events older than the retention (%v)", n, err)
	}
	if Clamped(archive, 4*time.Hour).ReadArchive(context.Background(),
		router.ArchiveQuery{From: time.Now().Add(-10 * time.Hour), To: time.Now()}, func(router.ArchivedEvent) error { n++; return nil }); n != 100 {
		t.Errorf("read %d events within the retention, want 100", n)
	}
	m := New(Options{Logger: zap.NewNop(), Deliver: &fakeBroker{}, Reader: func(router.BrokerRef) (router.ArchiveReader, error) { return archive, nil }})
	defer m.Close()
	for i := 0; i < maxDryRuns; i++ {
		m.dryRuns <- struct{}{}
	}
	if _, err := m.DryRun(context.Background(), Spec{From: time.Now().Add(-time.Hour)}, &config.Config{}); !errors.Is(err, ErrBusy) {
		t.Errorf("dry run past the bound: %v, want ErrBusy", err)
	}
}

// lostRunStore answers that another process owns the run from its first save on.
type lostRunStore struct {
	mu    sync.Mutex
	saves []string // the states saved, in order
}

func (s *lostRunStore) CreateRun(context.Context, string, []byte, string) error { return nil }
func (s *lostRunStore) ClaimRuns(context.Context, string, time.Duration) ([][]byte, error) {
	return nil, nil
}
func (s *lostRunStore) SaveRun(_ context.Context, _ string, run []byte, _ string) (bool, error) {
	var r Run
	_ = json.Unmarshal(run, &r)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.saves = append(s.saves, r.State)
	return false, nil
}

// TestLosingTheRunStopsIt: a process that learns, saving its checkpoint, that another process
// took its run over stops reading at once, ends its copy as failed saying where to follow the run,
// and does not save over the new owner's progress again.
func TestLosingTheRunStopsIt(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	archive := archiveOf(2000, start)
	b := &fakeBroker{}
	store := &lostRunStore{}
	m := New(Options{Logger: zap.NewNop(), Deliver: b, Store: store, Owner: "here", Reader: func(router.BrokerRef) (router.ArchiveReader, error) { return archive, nil }})
	defer m.Close()
	run, err := m.Start(Spec{Broker: router.BrokerRef{Namespace: "ns", Name: "d"}, AllTriggers: true, From: start})
	if err != nil {
		t.Fatal(err)
	}
	final := waitState(t, m, run.ID, StateFailed)
	if final.Read != chunkSize {
		t.Errorf("read %d after losing the run at its first checkpoint, want the first chunk only (%d)", final.Read, chunkSize)
	}
	if !strings.Contains(final.Error, "another process took this replay over") {
		t.Errorf("error %q does not say where the run went", final.Error)
	}
	b.mu.Lock()
	delivered := len(b.got)
	b.mu.Unlock()
	if delivered != 375 {
		t.Errorf("%d events replayed, want the first chunk's 375", delivered)
	}
	time.Sleep(50 * time.Millisecond) // a save after the loss would come now
	store.mu.Lock()
	defer store.mu.Unlock()
	if len(store.saves) != 1 || store.saves[0] != StateRunning {
		t.Errorf("saves %v, want the one checkpoint that learned of the loss", store.saves)
	}
}
