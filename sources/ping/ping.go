// Package ping is Knative's PingSource served by Switchyard: a fixed event sent on a cron
// schedule to a broker or a URI. Which replica sends a tick, and what becomes of a tick due while
// no replica ran, is decided in docs/pingsource.md:
//
//   - with a shared record (the Cassandra result store's lightweight transactions) every replica
//     claims every tick and the one whose claim wins sends it; a replica that starts finds the
//     last tick before now unsent and sends it late;
//   - without one, in Kubernetes controller mode only the Lease holder sends;
//   - otherwise the process sends every tick, and knows of the ticks it sent only while it runs.
package ping

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// EventType is the type of every PingSource event, as Knative's.
const EventType = "dev.knative.sources.ping"

// OutcomePrefix starts the name under which a PingSource's ticks are recorded and queried, as if
// it were a trigger: "pingsource:NAME".
const OutcomePrefix = "pingsource:"

// Clock is the time a Manager runs on: the wall clock, or a test's.
type Clock interface {
	Now() time.Time
	// SleepUntil waits until t; false when ctx ended first.
	SleepUntil(ctx context.Context, t time.Time) bool
}

// WallClock is the real time.
type WallClock struct{}

func (WallClock) Now() time.Time { return time.Now() }

func (WallClock) SleepUntil(ctx context.Context, t time.Time) bool {
	return router.Sleep(ctx, time.Until(t))
}

// Options configure a Manager.
type Options struct {
	Publisher router.Publisher
	Deliverer *delivery.Deliverer
	// Results records every tick's outcome under OutcomePrefix + the source's name.
	Results router.ResultStore
	// Claims, when set, is a record every replica shares (the Cassandra result store): each tick
	// is sent by the replica that claims it first, and a tick nobody sent is found at start.
	Claims router.Deduplicator
	// Leading, when set and Claims is not, says whether this replica is the one that sends (the
	// holder of the controller's Lease).
	Leading func() bool
	Clock   Clock
	Metrics *metrics.Metrics
	Logger  *zap.Logger
}

// Manager runs the PingSources of the current configuration.
type Manager struct {
	o    Options
	sink *delivery.SinkSender

	mu      sync.Mutex
	running map[string]*running
	// lastSent is the latest tick this process sent per source, kept across reloads: without
	// Claims it is all there is to know that a tick fell between a source's stop and restart.
	lastSent map[string]time.Time
	// lastMu guards lastSent alone: a source's goroutine takes it while Apply, holding mu, may
	// be waiting for that goroutine to end.
	lastMu sync.Mutex
	// sends are the ticks being sent; they outlive a reload that restarts their source, and end
	// (recorded as failed) when the manager stops.
	sends sync.WaitGroup
	// redriving holds the event ids whose redrive is under way, so that asking twice sends once.
	redriving router.RedrivesUnderWay
	stopped   context.Context
	stop      context.CancelFunc
}

type running struct {
	cfg    *config.PingSource
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a Manager with no sources.
func NewManager(o Options) *Manager {
	if o.Clock == nil {
		o.Clock = WallClock{}
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	o.Logger = o.Logger.Named("ping-source")
	m := &Manager{o: o, sink: &delivery.SinkSender{Publisher: o.Publisher, Deliverer: o.Deliverer},
		running: map[string]*running{}, lastSent: map[string]time.Time{}}
	m.stopped, m.stop = context.WithCancel(context.Background())
	return m
}

// Apply starts new sources, restarts changed ones and stops removed ones.
func (m *Manager) Apply(sources []*config.PingSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]*config.PingSource{}
	for _, s := range sources {
		want[s.Namespace+"/"+s.Name] = s
	}
	for key, r := range m.running {
		w, ok := want[key]
		if !ok || !sameSchedule(w, r.cfg) {
			r.cancel()
			<-r.done
			delete(m.running, key)
		}
		if !ok && m.o.Metrics != nil {
			m.o.Metrics.PingTicks.DeletePartialMatch(map[string]string{"namespace_name": r.cfg.Namespace, "source_name": r.cfg.Name})
		}
	}
	for key, s := range want {
		if m.running[key] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{cfg: s, cancel: cancel, done: make(chan struct{})}
		m.running[key] = r
		src := &source{cfg: s, key: key, m: m, logger: m.o.Logger.With(zap.String("source", key))}
		if m.o.Metrics != nil {
			// Exported at 0 from the start, so that alerts on increase() see the first failure.
			for _, result := range []string{"sent", "failed", "missed"} {
				m.o.Metrics.PingTicks.WithLabelValues(s.Namespace, s.Name, result)
			}
		}
		go func() { defer close(r.done); src.run(ctx) }()
	}
}

// sameSchedule reports whether a PingSource's reloaded configuration sends what the running one
// does: where it was read from (its file and line) does not matter, so moving it in its file
// does not restart its schedule (and lose a tick due meanwhile).
func sameSchedule(a, b *config.PingSource) bool {
	x, y := *a, *b
	x.File, x.Line, y.File, y.Line = "", 0, "", 0
	return reflect.DeepEqual(x, y)
}

// stopGrace is how long Stop lets ticks being sent finish before cutting them short.
const stopGrace = 5 * time.Second

// Stop stops every schedule and waits for the ticks being sent: up to stopGrace, then they are cut
// short and recorded as failed.
func (m *Manager) Stop() {
	m.Apply(nil)
	done := make(chan struct{})
	go func() { m.sends.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopGrace):
		m.stop()
		<-done
	}
	m.stop()
}

type source struct {
	cfg    *config.PingSource
	key    string
	m      *Manager
	logger *zap.Logger
}

func (s *source) count(result string) { s.countN(result, 1) }

func (s *source) countN(result string, n int) {
	if s.m.o.Metrics != nil && n > 0 {
		s.m.o.Metrics.PingTicks.WithLabelValues(s.cfg.Namespace, s.cfg.Name, result).Add(float64(n))
	}
}

// run ticks until ctx ends. A tick is sent in a goroutine of its own, so a slow sink never delays
// the next tick.
func (s *source) run(ctx context.Context) {
	clock := s.m.o.Clock
	now := clock.Now()
	s.catchUp(ctx, now)
	for tick := s.cfg.Schedule.Next(now); ; tick = s.cfg.Schedule.Next(tick) {
		if tick.IsZero() {
			s.logger.Warn("the schedule ticks no more (no such date in the next five years)")
			<-ctx.Done()
			return
		}
		if !clock.SleepUntil(ctx, tick) {
			return
		}
		// Woken past later ticks too (a suspended process or machine): the latest is sent late
		// if within the deadline, the ones before it are missed.
		now := clock.Now()
		latest := s.cfg.Schedule.Previous(now)
		if !latest.After(tick) {
			s.fire(ctx, tick, false)
			continue
		}
		missed := 0
		for t := tick; t.Before(latest) && missed < 1_000_000; t = s.cfg.Schedule.Next(t) {
			missed++
		}
		tick = latest
		if !s.withinDeadline(tick, now) {
			missed++
		} else {
			s.fire(ctx, tick, true)
		}
		if s.m.o.Claims != nil {
			// Other replicas may well have sent them: only the shared record knows.
			s.logger.Info("the process did not run through ticks; other replicas claim them", zap.Int("ticks", missed), zap.Time("latest", latest))
			continue
		}
		s.countN("missed", missed)
		s.logger.Warn("ticks passed while the process did not run: missed", zap.Int("missed", missed), zap.Time("latest", latest))
	}
}

// withinDeadline reports whether tick, due before now, may still be sent.
func (s *source) withinDeadline(tick, now time.Time) bool {
	d := s.cfg.LateDeadline
	return d < 0 || d > 0 && now.Sub(tick) <= d
}

// catchUp looks at the last tick due at or before now: sent by nobody, and within the source's
// late deadline, it is sent now, late.
func (s *source) catchUp(ctx context.Context, now time.Time) {
	prev := s.cfg.Schedule.Previous(now)
	if prev.IsZero() {
		return
	}
	if !s.withinDeadline(prev, now) {
		return
	}
	if s.m.o.Claims == nil {
		s.m.lastMu.Lock()
		last, known := s.m.lastSent[s.key]
		s.m.lastMu.Unlock()
		if !known {
			// A process with no shared record cannot tell a tick nobody sent from one an earlier
			// run sent: it sends none (docs/pingsource.md).
			s.logger.Debug("no record of earlier ticks: a tick due before start is not sent late", zap.Time("tick", prev))
			return
		}
		if !last.Before(prev) {
			return
		}
	}
	s.fire(ctx, prev, true)
}

// fire claims tick and, when this replica is the one to send it, sends it in the background.
func (s *source) fire(ctx context.Context, tick time.Time, late bool) {
	o := &s.m.o
	keep := s.cfg.Schedule.Next(tick).Sub(tick) + time.Hour // longer than any catch-up looks back
	claimKey := OutcomePrefix + s.key + "@" + tick.UTC().Format(time.RFC3339Nano)
	switch {
	case o.Claims != nil:
		state, err := o.Claims.Reserve(ctx, claimKey, keep)
		switch {
		case err != nil && ctx.Err() != nil:
			return
		case err != nil:
			// Sent unclaimed rather than lost: other replicas may send it too, with the same id.
			s.logger.Warn("the shared tick record is unavailable: sending the tick unclaimed", zap.Time("tick", tick), zap.Error(err))
		case state != router.DedupFresh:
			s.count("other_replica")
			return
		}
	case o.Leading != nil && !o.Leading():
		s.count("not_leader")
		return
	}
	s.m.lastMu.Lock()
	if s.m.lastSent[s.key].Before(tick) {
		s.m.lastSent[s.key] = tick
	}
	s.m.lastMu.Unlock()
	s.m.sends.Add(1)
	go func() {
		defer s.m.sends.Done()
		sent := s.send(s.m.stopped, tick, late)
		if o.Claims != nil {
			// A failed tick is recorded as failed (and can be redriven); released, another
			// replica's catch-up would send it a second time.
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := o.Claims.Settle(sctx, claimKey, true, keep); err != nil {
				s.logger.Warn("could not mark the tick sent in the shared record; a replica starting within the minute may send it again",
					zap.Time("tick", tick), zap.Bool("sent", sent), zap.Error(err))
			}
			cancel()
		}
	}()
}

// Event is the event of tick: Knative's PingSource event, with time set to the tick and an id
// derived from the source and the tick, so that a tick sent twice (a replica's crash between
// claim and record, an outage of the shared record) can be recognised by its id.
func Event(cfg *config.PingSource, tick time.Time) *event.Event {
	e := event.New()
	e.SetType(EventType)
	e.SetSource(fmt.Sprintf("/apis/v1/namespaces/%s/pingsources/%s", cfg.Namespace, cfg.Name))
	e.SetID(uuid.NewSHA1(uuid.NameSpaceURL, []byte(fmt.Sprintf("%s/%s@%d", cfg.Namespace, cfg.Name, tick.UnixNano()))).String())
	e.SetTime(tick)
	for k, v := range cfg.Extensions {
		e.SetExtension(k, v)
	}
	if cfg.ContentType != "" {
		e.SetDataContentType(cfg.ContentType)
	}
	if len(cfg.Data) > 0 {
		e.DataEncoded = cfg.Data
	}
	return &e
}

// retryBudget bounds how long a tick is retried while its sink pushes back: until the next tick
// is due, at least 30 s and at most 10 min.
func (s *source) retryBudget(tick time.Time) time.Duration {
	return min(max(s.cfg.Schedule.Next(tick).Sub(tick), 30*time.Second), 10*time.Minute)
}

// send delivers tick's event, retrying what the sink pushes back within the retry budget, and
// records the outcome. It reports whether the sink took it.
func (s *source) send(ctx context.Context, tick time.Time, late bool) bool {
	e := Event(s.cfg, tick)
	started := s.m.o.Clock.Now()
	attempts, err := s.deliver(ctx, e, s.retryBudget(tick))
	o := s.outcome(e, started, attempts, err)
	switch {
	case err == nil && late:
		s.count("sent_late")
		s.logger.Info("a tick due while no replica ran was sent late", zap.Time("tick", tick), zap.String("event_id", e.ID()))
	case err == nil:
		s.count("sent")
	default:
		s.count("failed")
		s.logger.Error("the sink did not take the tick's event: recorded as failed", zap.Time("tick", tick),
			zap.String("event_id", e.ID()), zap.Int("attempts", attempts), zap.Error(err))
	}
	if s.m.o.Results != nil {
		s.m.o.Results.Record(o)
	}
	return err == nil
}

// deliver sends e to the sink, retrying what the sink pushes back within budget, and returns the
// attempts made and the last error.
func (s *source) deliver(ctx context.Context, e *event.Event, budget time.Duration) (int, error) {
	sctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	attempts, err := 0, error(nil)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		attempts++
		err = s.m.sink.Send(sctx, s.cfg.Sink, &router.Envelope{Event: e}, s.cfg.Namespace)
		if err == nil || !router.IsRetryable(err) && !errors.Is(err, router.ErrBrokerNotFound) {
			return attempts, err
		}
		if !router.Sleep(sctx, backoff) {
			return attempts, err
		}
	}
}

// outcome is the record of one send of e: delivered, or failed with the event kept for redrive.
func (s *source) outcome(e *event.Event, started time.Time, attempts int, err error) *router.Outcome {
	o := &router.Outcome{EventID: e.ID(), Source: e.Source(), Type: e.Type(),
		Trigger:    router.TriggerRef{Namespace: s.cfg.Namespace, Name: OutcomePrefix + s.cfg.Name},
		Subscriber: s.cfg.Sink.String(), Status: router.StatusDelivered, Attempts: attempts, Received: started, Finished: s.m.o.Clock.Now(),
		TraceID: tracing.TraceID(e)}
	if b := s.cfg.Sink.Broker; b != nil {
		o.Broker = *b
	}
	if err != nil {
		o.Status, o.LastCode, o.LastError, o.Event = router.StatusFailed, router.FailureCode(err), err.Error(), e
	}
	return o
}

// ErrSourceNotFound: a redrive named a PingSource that is not configured.
var ErrSourceNotFound = errors.New("PingSource not found")

// maxRedrive bounds one redrive request, as a trigger's; run it again for more.
const maxRedrive = 100000

// Redrive sends again the events of PingSource ref's failed ticks (ref.Name is OutcomePrefix +
// the source's name): one event or the failed list narrowed by q. It returns how many
// it queued; they are sent one after another in the background (each retried for up to 30 s), each
// new send recorded, and only then the old outcome taken off the failed list. A tick whose redrive
// is under way is skipped.
func (m *Manager) Redrive(ctx context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error) {
	name, _ := strings.CutPrefix(ref.Name, OutcomePrefix)
	m.mu.Lock()
	r := m.running[ref.Namespace+"/"+name]
	m.mu.Unlock()
	if r == nil || m.o.Results == nil {
		return 0, fmt.Errorf("%w: %s/%s", ErrSourceNotFound, ref.Namespace, name)
	}
	candidates, err := router.RedriveCandidates(ctx, m.o.Results, ref, q, maxRedrive)
	if err != nil {
		return 0, err
	}
	queued := m.redriving.Claim(ref, candidates)
	src := &source{cfg: r.cfg, key: ref.Namespace + "/" + name, m: m, logger: m.o.Logger.With(zap.String("source", ref.Namespace+"/"+name))}
	m.sends.Add(1)
	go func() {
		defer m.sends.Done()
		for i := range queued {
			old := &queued[i]
			e := old.Event.Clone()
			started := m.o.Clock.Now()
			attempts, err := src.deliver(m.stopped, &e, 30*time.Second)
			o := src.outcome(&e, started, attempts, err)
			o.Received = old.Received
			// The new send's outcome stands for the tick now (failed again, it is the one on the
			// list): the old one leaves the failed list either way.
			m.o.Results.Record(o)
			if rerr := m.o.Results.Redriven(m.stopped, old); rerr != nil {
				src.logger.Warn("redriven tick stays on the failed list", zap.String("event_id", e.ID()), zap.Error(rerr))
			}
			m.redriving.Done(ref, old)
			if m.stopped.Err() != nil {
				return
			}
		}
	}()
	return len(queued), nil
}
