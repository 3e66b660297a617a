package broker

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// task is one event on its way to one trigger.
type task struct {
	b   *brokerState
	t   *triggerState
	env *router.Envelope
	f   *fanout
	// l is the lane the task runs in; a parked retry resumes there.
	l *lane
	// slotted is set when the task took one of its lane's slots (submit), to give back when final.
	slotted bool
	// attempt (0 before the first) and res carry a delivery across a parked backoff.
	attempt int
	res     delivery.Result
	// held are the trigger's copies of the partition's records in memory (see park); nil unless
	// the broker's log parks.
	held *heldCopies
	// key is the event's partition key and holdsKey is set while the task holds it, on an
	// ordered trigger's lane (keyOrder).
	key      string
	holdsKey bool
}

// partitionKey is what an ordered trigger keeps the order of: the event's partitionkey
// extension, "" when it has none.
func partitionKey(env *router.Envelope) string {
	if v, ok := env.Event.Extensions()["partitionkey"]; ok {
		if s, ok := v.(string); ok {
			return s
		}
		return fmt.Sprint(v)
	}
	return ""
}

// release gives tk's event back, and its place among the trigger's held copies.
func (tk *task) release() {
	tk.held.release(tk.env)
	tk.f.finish()
}

// finisher is what releases tk once its outcome is safe.
func (tk *task) finisher() func() {
	if tk.held != nil {
		return tk.release
	}
	return tk.f.finish
}

// fanout counts the triggers an event still waits on; the last to finish releases it.
type fanout struct {
	remaining atomic.Int32
	matched   int32 // triggers the event matched: its reply budget is shared among them
	done      func()
	r         *Router
	bytes     int64 // the envelope's Bytes, given back to the memory bound at the end
}

func (f *fanout) finish() {
	if f.remaining.Add(-1) == 0 {
		f.r.unfinishedBytes.Release(f.bytes)
		f.done()
		f.r.pending.Add(-1)
	}
}

var matchPool = sync.Pool{New: func() any { s := make([]int32, 0, 16); return &s }}

// Handle routes one envelope read from the broker's log: match, then hand it to each matching
// trigger's lane. It returns once every lane accepted it; done is called when all are final.
func (b *brokerState) Handle(ctx context.Context, env *router.Envelope, done func()) {
	if env.Redrive != nil {
		b.handleRedrive(ctx, env, done)
		return
	}
	r := b.r
	r.pending.Add(1)
	rt := b.routes.Load()
	b.events.Add(1)
	bufp := matchPool.Get().(*[]int32)
	matches := rt.index.Match(env.Event, (*bufp)[:0])
	if ce := r.logger.Check(zap.DebugLevel, "event routed"); ce != nil {
		names := make([]string, len(matches))
		for i, m := range matches {
			names[i] = rt.triggers[m].cfg.Ref.Name
		}
		ce.Write(zap.String("broker", b.ref.String()), zap.String("event_id", env.Event.ID()), zap.String("type", env.Event.Type()), zap.Strings("matched", names))
	}
	if len(matches) == 0 {
		*bufp = matches
		matchPool.Put(bufp)
		b.unmatched(env)
		r.unfinishedBytes.Release(env.Bytes)
		done()
		r.pending.Add(-1)
		return
	}
	f := &fanout{done: done, r: r, bytes: env.Bytes, matched: int32(len(matches))}
	f.remaining.Store(int32(len(matches)))
	for _, i := range matches {
		t := rt.triggers[i]
		t.stats.matched.Add(1)
		l := b.laneFor(t, env)
		if b.windowed {
			tk := task{b: b, t: t, env: env, f: f}
			if b.parking != nil && env.Partition >= 0 {
				held := t.stats.heldOn(env.Partition)
				if b.park(t, env, f, held) {
					continue
				}
				held.add(env)
				tk.held = held
			}
			l.enqueue(tk)
			continue
		}
		if !t.cfg.Ordered || t.stats.gate.paused.Load() {
			// An unordered trigger that cannot keep up must not stall its broker's others: when
			// its backlog (concurrency + pending) stays full for PendingWait, what it cannot take
			// is recorded as failed, kept for redrive. So must a paused one, ordered or not.
			if !l.submitOrGiveUp(ctx, task{b: b, t: t, env: env, f: f}, t.cfg.PendingWait) {
				r.overflow(b, t, env, f)
			}
			continue
		}
		// An ordered trigger's events wait for the earlier ones of their key (keyOrder), within
		// the lane's slots: when those are full, the dispatch waits.
		if err := l.submit(ctx, task{b: b, t: t, env: env, f: f}); err != nil {
			r.record(b, t, env, &router.Outcome{Status: router.StatusFailed, LastError: "router shut down before delivery: " + err.Error()}, f.finish)
		}
	}
	*bufp = matches
	matchPool.Put(bufp)
}

// park hands t's copy of env to the log's park topic of t when t already parks that partition's
// copies (nothing may overtake them) or holds its share of the partition's window in memory: a
// trigger that falls behind then waits in Kafka, and the window stays free for the others. It
// reports false when the copy is t's to deliver now.
func (b *brokerState) park(t *triggerState, env *router.Envelope, f *fanout, held *heldCopies) bool {
	if held.n.Load() < int64(t.parkShare) && held.bytes.Load() < t.parkShareBytes && !t.stats.gate.paused.Load() && !b.parking.Parked(t.cfg.Ref, env.Partition) {
		return false
	}
	if !b.parking.Park(t.cfg.Ref, env, f.finish) {
		return false
	}
	t.stats.parked.Add(1)
	return true
}

// HandleParked delivers env, a copy the log parked for trigger ref, to that trigger alone.
func (b *brokerState) HandleParked(ctx context.Context, ref router.TriggerRef, env *router.Envelope, done func()) {
	t := b.routes.Load().trigger(ref)
	if t == nil {
		b.r.logger.Warn("a parked event's trigger is no longer configured: not delivered", zap.String("trigger", ref.String()), zap.String("event_id", env.Event.ID()))
		done()
		return
	}
	b.r.pending.Add(1)
	f := &fanout{done: done, r: b.r, matched: 1}
	f.remaining.Store(1)
	b.laneFor(t, env).enqueue(task{b: b, t: t, env: env, f: f})
}

// HandleEarlier delivers env, read from before trigger ref was first seen on its partition, to
// that trigger alone when its filter matches (a start-from that reaches back).
func (b *brokerState) HandleEarlier(ctx context.Context, ref router.TriggerRef, env *router.Envelope, done func()) {
	t := b.routes.Load().trigger(ref)
	if t == nil || env.Redrive != nil || !t.cfg.Filter.Match(env.Event) {
		done() // a redrive was addressed to another trigger, when it was appended
		return
	}
	t.stats.matched.Add(1)
	b.HandleParked(ctx, ref, env, done)
}

// Starts lists the broker's triggers and their start-from, with the routes' version.
func (b *brokerState) Starts() (uint64, []router.TriggerStart) {
	rt := b.routes.Load()
	return rt.version, rt.starts
}

// Holds reports whether trigger ref is paused: its parked copies then stay in the log.
func (b *brokerState) Holds(ref router.TriggerRef) bool {
	t := b.routes.Load().trigger(ref)
	return t != nil && t.stats.gate.paused.Load()
}

// attemptSpan starts the client span of one delivery attempt, a child of the span that accepted
// the event (its traceparent extension).
func (r *Router) attemptSpan(ctx context.Context, t *triggerState, req *delivery.Request, attempt int) (context.Context, trace.Span) {
	attrs := append(tracing.EventAttributes(req.Event), attribute.String("messaging.system", "switchyard"),
		attribute.String("messaging.operation.type", "process"), attribute.String("messaging.destination.name", t.cfg.Broker.String()),
		attribute.String("switchyard.trigger", t.cfg.Ref.String()), attribute.String("url.full", t.shownSubscriber),
		attribute.String("http.request.method", "POST"))
	if attempt > 1 {
		attrs = append(attrs, attribute.Int("http.request.resend_count", attempt-1))
	}
	return tracing.Tracer().Start(tracing.FromEvent(ctx, req.Event), "deliver "+t.cfg.Ref.String(),
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
}

// unmatchedPerSecond bounds the unmatched events recorded per broker: a flood of events nobody
// subscribed to must not become a flood of writes to the result store. All are counted.
const unmatchedPerSecond = 100

// unmatched makes an event that matched no trigger findable by its id: counted, and recorded as an
// outcome "unmatched" under the pseudo-trigger unmatched:BROKER, up to unmatchedPerSecond.
func (b *brokerState) unmatched(env *router.Envelope) {
	if b.unmatchedSeen != nil {
		b.unmatchedSeen.Inc()
	}
	if b.r.o.Results == nil || !b.unmatchedRecords.Allow() {
		return
	}
	e := env.Event
	b.r.o.Results.Record(&router.Outcome{EventID: e.ID(), Source: e.Source(), Type: e.Type(), Broker: b.ref,
		Trigger: router.TriggerRef{Namespace: b.ref.Namespace, Name: router.UnmatchedPrefix + b.ref.Name},
		Status:  router.StatusUnmatched, LastError: "no trigger of the broker matched the event: switchyard events explain says why",
		Received: env.Received, Finished: time.Now(), TraceID: tracing.TraceID(e)})
}

// overflow records env as failed at t, whose backlog is full, and releases it there.
func (r *Router) overflow(b *brokerState, t *triggerState, env *router.Envelope, f *fanout) {
	t.m.overflowed.Inc()
	if who := t.stats.gate.who(); who != "" {
		r.record(b, t, env, &router.Outcome{Status: router.StatusFailed, LastError: fmt.Sprintf(
			"not delivered: the trigger is paused (by its %s) and its backlog (%d events: spec.triggers.concurrency + pending) is full; redrive it after resuming",
			who, t.cfg.Concurrency+t.cfg.Pending)}, f.finish)
		return
	}
	r.record(b, t, env, &router.Outcome{Status: router.StatusFailed, LastError: fmt.Sprintf(
		"not delivered: the trigger's subscriber is not keeping up: its backlog (%d events: spec.triggers.concurrency + pending) stayed full for %s (spec.triggers.pendingWait); redrive it once the subscriber catches up",
		t.cfg.Concurrency+t.cfg.Pending, t.cfg.PendingWait)}, f.finish)
}

// runTask delivers one event to one trigger and records the outcome. A retryable failure of an
// unordered trigger parks the task for its backoff instead of holding a lane worker, so the
// trigger keeps delivering other events meanwhile; an ordered trigger waits, since its next event
// must not overtake. It reports whether the task was parked.
//
// A panic anywhere on that path (a library's bug meeting an event nobody foresaw) ends this task
// only: the event is recorded as failed with the panic, so it can be redriven once fixed, and the
// process and every other queued event live on.
func (r *Router) runTask(ctx context.Context, tk task) (parked bool) {
	finished := false // set once tk.f.finish has run: it must run exactly once
	defer func() {
		if p := recover(); p != nil {
			parked = false
			r.taskPanicked(tk, p, finished)
		}
	}()
	t, env := tk.t, tk.env
	req := &delivery.Request{URL: t.cfg.Subscriber, Event: env.Event, Headers: env.Headers, Namespace: t.cfg.Ref.Namespace}
	if err := ctx.Err(); err != nil && tk.attempt > 0 {
		tk.res.GiveUp(err) // resumed by shutdown, not by its timer
		r.finishTask(ctx, tk, req, &finished)
		return false
	}
	if r.attempts(ctx, &tk, req) {
		return true
	}
	r.finishTask(ctx, tk, req, &finished)
	return false
}

// taskPanicked records tk's event as failed after a panic p on its way, and releases it unless
// that already happened.
func (r *Router) taskPanicked(tk task, p any, finished bool) {
	r.logger.Error("delivery panicked: event recorded as failed", zap.String("trigger", tk.t.cfg.Ref.String()),
		zap.String("event_id", tk.env.Event.ID()), zap.Any("panic", p), zap.Stack("stack"))
	if finished {
		return // the outcome was recorded and the event released; the panic came after
	}
	finish := sync.OnceFunc(tk.finisher()) // once, whether recording completes or panics too
	defer func() {
		if p := recover(); p != nil { // recording itself panicked: the log line above is what is left
			r.logger.Error("recording a panicked delivery panicked too", zap.Any("panic", p))
			finish()
		}
	}()
	r.record(tk.b, tk.t, tk.env, &router.Outcome{Status: router.StatusFailed, Attempts: tk.res.Attempts, LastCode: tk.res.Code,
		LastError: fmt.Sprintf("internal error (a bug in Switchyard): delivery panicked: %v", p)}, finish)
}

// attempts makes the task's next delivery attempt; when the result is to be retried it parks the
// task for its backoff and reports true.
func (r *Router) attempts(ctx context.Context, tk *task, req *delivery.Request) (parked bool) {
	t := tk.t
	br := t.stats.breaker.Load()
	probe := false
	if br != nil {
		probe = br.enter(ctx) // an open breaker holds the attempt (and the lane's worker) here
	}
	t.stats.inFlight.Add(1)
	t.m.inFlight.Inc()
	defer func() {
		t.stats.inFlight.Add(-1)
		t.m.inFlight.Dec()
	}()
	tk.attempt++
	started := time.Now()
	tryCtx, span := ctx, trace.Span(nil)
	if tracing.Active() {
		tryCtx, span = r.attemptSpan(ctx, t, req, tk.attempt)
	}
	wait, again := r.o.Deliverer.Try(tryCtx, req, &t.cfg.Delivery, tk.attempt, &tk.res)
	if br != nil {
		br.observe(probe, tk.res.Code)
	}
	if span != nil {
		span.SetAttributes(attribute.Int("http.response.status_code", tk.res.Code))
		if tk.res.Err != nil {
			span.SetStatus(codes.Error, tk.res.Err.Error())
		}
		span.End()
	}
	t.m.attempt(tk.res.Code, time.Since(started), started.Sub(tk.env.Received))
	// Checked first: a disabled level costs no fields, no allocation.
	if ce := r.logger.Check(zap.DebugLevel, "delivery attempt"); ce != nil {
		fields := []zap.Field{zap.String("trigger", t.cfg.Ref.String()), zap.String("event_id", req.Event.ID()),
			zap.Int("attempt", tk.attempt), zap.Int("code", tk.res.Code), zap.Duration("took", time.Since(started))}
		if again {
			fields = append(fields, zap.Duration("retry_in", wait))
		}
		if tk.res.Err != nil {
			fields = append(fields, zap.String("error", tk.res.Err.Error()))
		}
		ce.Write(fields...)
	}
	if !again {
		return false
	}
	// The backoff waits off the lane: an ordered trigger's task keeps its key meanwhile, so
	// only the later events of that key wait for it.
	r.park(ctx, *tk, wait)
	return true
}

// park resumes tk in its lane after wait, or at once when ctx ends (shutdown), whichever is first.
// The task keeps its lane slot meanwhile, so parked retries still count against the lane's bound.
func (r *Router) park(ctx context.Context, tk task, wait time.Duration) {
	p := &parkedTask{tk: tk}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = time.AfterFunc(wait, p.resume)
	p.stop = context.AfterFunc(ctx, p.resume)
}

type parkedTask struct {
	mu      sync.Mutex
	tk      task
	timer   *time.Timer
	stop    func() bool
	resumed bool
}

func (p *parkedTask) resume() {
	p.mu.Lock() // also waits until park has set timer and stop
	defer p.mu.Unlock()
	if p.resumed {
		return
	}
	p.resumed = true
	p.timer.Stop()
	p.stop()
	p.tk.l.enqueue(p.tk)
}
