package ping

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/schedule"
)

// fakeClock is a clock the test moves; sleepers wake when it passes their time.
type fakeClock struct {
	mu       sync.Mutex
	now      time.Time
	sleepers map[chan struct{}]time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, sleepers: map[chan struct{}]time.Time{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) bool {
	c.mu.Lock()
	if !t.After(c.now) {
		c.mu.Unlock()
		return true
	}
	ch := make(chan struct{})
	c.sleepers[ch] = t
	c.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.sleepers, ch)
		c.mu.Unlock()
		return false
	}
}

// set moves the clock to t and wakes whoever sleeps until then.
func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	for ch, until := range c.sleepers {
		if !until.After(t) {
			close(ch)
			delete(c.sleepers, ch)
		}
	}
}

// waitSleepers waits until n goroutines sleep on the clock: the sources are between ticks.
func (c *fakeClock) waitSleepers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.sleepers)
		c.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sources sleeping, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// publisher takes every event into one broker and hands them to the test.
type publisher struct {
	got  chan *router.Envelope
	fail error
}

func (p *publisher) HasBroker(router.BrokerRef) bool { return true }

func (p *publisher) Publish(_ context.Context, _ router.BrokerRef, envs []*router.Envelope) error {
	if p.fail != nil {
		return p.fail
	}
	for _, e := range envs {
		p.got <- e
	}
	return nil
}

// claims is a shared tick record as the Cassandra store keeps it: first Reserve wins.
type claims struct {
	mu    sync.Mutex
	state map[string]router.DedupState
}

func (c *claims) Reserve(_ context.Context, key string, _ time.Duration) (router.DedupState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.state[key]; ok {
		return s, nil
	}
	c.state[key] = router.DedupInFlight
	return router.DedupFresh, nil
}

func (c *claims) Settle(_ context.Context, key string, accepted bool, _ time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if accepted {
		c.state[key] = router.DedupAccepted
	} else {
		delete(c.state, key)
	}
	return nil
}

var (
	start = time.Date(2026, 12, 1, 10, 2, 0, 0, time.UTC)
	shop  = router.BrokerRef{Namespace: "shop", Name: "default"}
)

func pingSource(t *testing.T, spec string) *config.PingSource {
	t.Helper()
	s, err := schedule.Parse(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	return &config.PingSource{Namespace: "shop", Name: "every-five", Spec: spec, Schedule: s, ContentType: "application/json",
		Data: []byte(`{"tick":true}`), Sink: router.Sink{Broker: &shop}, Extensions: map[string]string{"team": "ops"}, LateDeadline: -1}
}

type rig struct {
	clock   *fakeClock
	pub     *publisher
	results *memstore.Store
	metrics *metrics.Metrics
}

func newRig() *rig {
	return &rig{clock: newFakeClock(start), pub: &publisher{got: make(chan *router.Envelope, 100)}, results: memstore.New(100), metrics: metrics.New()}
}

func (r *rig) manager(o Options) *Manager {
	o.Publisher, o.Results, o.Clock, o.Metrics = r.pub, r.results, r.clock, r.metrics
	return NewManager(o)
}

// received waits for n events and then makes sure no more come.
func (r *rig) received(t *testing.T, n int) []*router.Envelope {
	t.Helper()
	var out []*router.Envelope
	for len(out) < n {
		select {
		case e := <-r.pub.got:
			out = append(out, e)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d events, want %d", len(out), n)
		}
	}
	select {
	case e := <-r.pub.got:
		t.Fatalf("an event more than the %d expected: %s at %s", n, e.Event.ID(), e.Event.Time())
	case <-time.After(50 * time.Millisecond):
	}
	return out
}

func (r *rig) ticks(result string) float64 {
	return testutil.ToFloat64(r.metrics.PingTicks.WithLabelValues("shop", "every-five", result))
}

func TestTicksOnScheduleAsKnativeSendsThem(t *testing.T) {
	r := newRig()
	m := r.manager(Options{})
	defer m.Stop()
	m.Apply([]*config.PingSource{pingSource(t, "*/5 * * * *")})
	r.clock.waitSleepers(t, 1)
	r.received(t, 0) // no tick at start: 10:00 was due before this process ran, and it knows nothing of it
	if n := testutil.CollectAndCount(r.metrics.PingTicks); n != 3 {
		t.Errorf("%d tick series at start, want sent, failed and missed at 0", n)
	}

	var ids []string
	for _, at := range []time.Time{start.Add(3 * time.Minute), start.Add(8 * time.Minute)} {
		r.clock.set(at)
		e := r.received(t, 1)[0].Event
		if e.Type() != "dev.knative.sources.ping" || e.Source() != "/apis/v1/namespaces/shop/pingsources/every-five" ||
			!e.Time().Equal(at) || e.DataContentType() != "application/json" || string(e.Data()) != `{"tick":true}` || e.Extensions()["team"] != "ops" {
			t.Errorf("tick at %s: %s", at, e)
		}
		if err := e.Validate(); err != nil {
			t.Errorf("not a valid CloudEvent: %v", err)
		}
		ids = append(ids, e.ID())
		r.clock.waitSleepers(t, 1)
	}
	if ids[0] == ids[1] || ids[0] != Event(pingSource(t, "*/5 * * * *"), start.Add(3*time.Minute)).ID() {
		t.Errorf("ids %v: want one per tick, derived from source and tick", ids)
	}
	if r.ticks("sent") != 2 {
		t.Errorf("sent ticks counted: %v", r.ticks("sent"))
	}
	m.Apply(nil) // removed: its series go with it
	if n := testutil.CollectAndCount(r.metrics.PingTicks); n != 0 {
		t.Errorf("%d tick series left after the source was removed", n)
	}
	// Every tick has an outcome under pingsource:NAME.
	got, _, err := r.results.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: router.TriggerRef{Namespace: "shop", Name: "pingsource:every-five"}, Limit: 10})
	if err != nil || len(got) != 2 || got[0].Status != router.StatusDelivered || got[0].Subscriber != "broker shop/default" {
		t.Errorf("outcomes: %v %+v", err, got)
	}
}

func TestEachTickOnceAcrossReplicas(t *testing.T) {
	r := newRig()
	shared := &claims{state: map[string]router.DedupState{}}
	a, b := r.manager(Options{Claims: shared}), r.manager(Options{Claims: shared})
	defer a.Stop()
	defer b.Stop()
	src := pingSource(t, "*/5 * * * *")
	a.Apply([]*config.PingSource{src})
	b.Apply([]*config.PingSource{src})
	r.clock.waitSleepers(t, 2)
	// 10:00, due before both started, was never claimed: one of them sends it late.
	if e := r.received(t, 1)[0].Event; !e.Time().Equal(start.Add(-2 * time.Minute)) {
		t.Errorf("the tick sent late is at %s, want 10:00", e.Time())
	}
	for i := 1; i <= 3; i++ {
		r.clock.set(start.Add(time.Duration(5*i-2) * time.Minute))
		r.received(t, 1)
		r.clock.waitSleepers(t, 2)
	}
	if r.ticks("sent") != 3 || r.ticks("sent_late") != 1 || r.ticks("other_replica") != 4 {
		t.Errorf("sent %v, late %v, other replica %v; want 3, 1, 4", r.ticks("sent"), r.ticks("sent_late"), r.ticks("other_replica"))
	}
}

func TestMissedTickSentLateFromTheSharedRecord(t *testing.T) {
	for _, c := range []struct {
		name     string
		deadline time.Duration
		late     bool
	}{
		{"until the next tick (default)", -1, true},
		{"within switchyard.dev/late-tick-deadline", 3 * time.Minute, true},
		{"past switchyard.dev/late-tick-deadline", time.Minute, false},
		{"late-tick-deadline 0s", 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newRig()
			shared := &claims{state: map[string]router.DedupState{}}
			src := pingSource(t, "*/5 * * * *")
			src.LateDeadline = c.deadline
			// 10:00 was sent; the process then stopped, and no replica ran at 10:05 and 10:10.
			_, _ = shared.Reserve(context.Background(), OutcomePrefix+"shop/every-five@2026-12-01T10:00:00Z", 0)
			r.clock.set(time.Date(2026, 12, 1, 10, 12, 0, 0, time.UTC))
			m := r.manager(Options{Claims: shared})
			defer m.Stop()
			m.Apply([]*config.PingSource{src})
			r.clock.waitSleepers(t, 1)
			if !c.late {
				r.received(t, 0)
				return
			}
			// Only the latest missed tick is sent: 10:10, not 10:05.
			if e := r.received(t, 1)[0].Event; !e.Time().Equal(time.Date(2026, 12, 1, 10, 10, 0, 0, time.UTC)) {
				t.Errorf("sent late: the tick of %s, want 10:10", e.Time())
			}
			if r.ticks("sent_late") != 1 {
				t.Errorf("sent_late %v", r.ticks("sent_late"))
			}
		})
	}
}

func TestReloadDoesNotLoseATick(t *testing.T) {
	// Without a shared record the process knows the ticks it sent itself: a reload that restarts
	// the source just after a tick it had not yet sent sends it late, and never twice.
	r := newRig()
	m := r.manager(Options{})
	defer m.Stop()
	src := pingSource(t, "*/5 * * * *")
	m.Apply([]*config.PingSource{src})
	r.clock.waitSleepers(t, 1)
	r.clock.set(start.Add(3 * time.Minute)) // 10:05
	r.received(t, 1)
	r.clock.waitSleepers(t, 1)

	changed := *src
	changed.Data = []byte(`{"tick":2}`)
	m.Apply(nil) // stopped over 10:10
	r.clock.set(start.Add(9 * time.Minute))
	m.Apply([]*config.PingSource{&changed})
	r.clock.waitSleepers(t, 1)
	if e := r.received(t, 1)[0].Event; !e.Time().Equal(start.Add(8*time.Minute)) || string(e.Data()) != `{"tick":2}` {
		t.Errorf("after the reload: %s", e)
	}
	m.Apply([]*config.PingSource{src}) // and back: 10:10 was sent, nothing is due
	r.clock.waitSleepers(t, 1)
	r.received(t, 0)
}

func TestOnlyTheLeaderSendsWithoutASharedRecord(t *testing.T) {
	r := newRig()
	var leading sync.Mutex
	isLeader := false
	m := r.manager(Options{Leading: func() bool { leading.Lock(); defer leading.Unlock(); return isLeader }})
	defer m.Stop()
	m.Apply([]*config.PingSource{pingSource(t, "*/5 * * * *")})
	r.clock.waitSleepers(t, 1)
	r.clock.set(start.Add(3 * time.Minute))
	r.clock.waitSleepers(t, 1)
	r.received(t, 0)
	leading.Lock()
	isLeader = true
	leading.Unlock()
	r.clock.set(start.Add(8 * time.Minute))
	r.received(t, 1)
	if r.ticks("not_leader") != 1 || r.ticks("sent") != 1 {
		t.Errorf("not_leader %v, sent %v", r.ticks("not_leader"), r.ticks("sent"))
	}
}

func TestOversleptTicksAreCountedMissed(t *testing.T) {
	r := newRig()
	m := r.manager(Options{})
	defer m.Stop()
	m.Apply([]*config.PingSource{pingSource(t, "*/5 * * * *")})
	r.clock.waitSleepers(t, 1)
	// The machine slept from 10:02 to 10:21: 10:05, 10:10 and 10:15 passed, 10:20 is the latest.
	r.clock.set(time.Date(2026, 12, 1, 10, 21, 0, 0, time.UTC))
	if e := r.received(t, 1)[0].Event; !e.Time().Equal(time.Date(2026, 12, 1, 10, 20, 0, 0, time.UTC)) {
		t.Errorf("sent: %s, want the 10:20 tick, late", e.Time())
	}
	r.clock.waitSleepers(t, 1)
	if r.ticks("missed") != 3 || r.ticks("sent_late") != 1 {
		t.Errorf("missed %v, sent_late %v; want 3 and 1", r.ticks("missed"), r.ticks("sent_late"))
	}
}

func TestATickTheSinkRefusesIsRecordedFailed(t *testing.T) {
	r := newRig()
	r.pub.fail = router.ErrTooLarge // refused for good: not retried
	m := r.manager(Options{})
	defer m.Stop()
	m.Apply([]*config.PingSource{pingSource(t, "*/5 * * * *")})
	r.clock.waitSleepers(t, 1)
	r.clock.set(start.Add(3 * time.Minute))
	ref := router.TriggerRef{Namespace: "shop", Name: "pingsource:every-five"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, _, err := r.results.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: ref, OnlyFailed: true, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 {
			if o := got[0]; o.Status != router.StatusFailed || o.LastCode != 413 || o.Event == nil || o.Attempts != 1 {
				t.Errorf("failed outcome: %+v", o)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no failed outcome recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if r.ticks("failed") != 1 {
		t.Errorf("failed ticks: %v", r.ticks("failed"))
	}

	// Once the sink takes events again, the failed tick is redriven: sent with its own id and
	// time, recorded, and off the failed list.
	r.pub.fail = nil
	if n, err := m.Redrive(context.Background(), ref, router.RedriveQuery{}); n != 1 || err != nil {
		t.Fatalf("Redrive: %d, %v", n, err)
	}
	e := r.received(t, 1)[0].Event
	if !e.Time().Equal(start.Add(3*time.Minute)) || e.ID() != Event(pingSource(t, "*/5 * * * *"), start.Add(3*time.Minute)).ID() {
		t.Errorf("redriven: %s", e)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		got, _, _ := r.results.TriggerOutcomes(context.Background(), router.OutcomeQuery{Trigger: ref, OnlyFailed: true, Limit: 10})
		if len(got) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still on the failed list after the redrive: %+v", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := m.Redrive(context.Background(), router.TriggerRef{Namespace: "shop", Name: "pingsource:nope"}, router.RedriveQuery{}); !errors.Is(err, ErrSourceNotFound) {
		t.Errorf("an unknown source: %v", err)
	}
}

// TestMovedInItsFileKeepsRunning (issue #32): a reload in which a PingSource only moved in its
// file (another line) leaves its schedule running; a change of what it sends restarts it.
func TestMovedInItsFileKeepsRunning(t *testing.T) {
	r := newRig()
	m := r.manager(Options{})
	defer m.Stop()
	src := pingSource(t, "*/5 * * * *")
	src.File, src.Line = "sources.yaml", 3
	m.Apply([]*config.PingSource{src})
	r.clock.waitSleepers(t, 1)
	running := func() *running {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.running["shop/every-five"]
	}
	before := running()
	moved := *src
	moved.Line = 40
	m.Apply([]*config.PingSource{&moved})
	if running() != before {
		t.Error("a PingSource that only moved in its file was restarted")
	}
	changed := moved
	changed.Data = []byte(`{"tick":2}`)
	m.Apply([]*config.PingSource{&changed})
	if running() == before {
		t.Error("a PingSource whose data changed kept running as it was")
	}
}
