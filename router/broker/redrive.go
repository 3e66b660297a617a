package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// ErrTriggerNotFound: redrive named a trigger that is not configured.
var ErrTriggerNotFound = errors.New("trigger not found")

// redriveKey names one event's redrive to one trigger.
type redriveKey struct {
	trigger router.TriggerRef
	eventID string
}

// maxRedrive bounds one redrive request; run it again for more.
const maxRedrive = 100000

// Redrive re-queues to trigger ref the events of its failed and dead-lettered outcomes, with the
// trigger's current subscriber and delivery. Each new run records a new outcome, and only then is
// the old one taken off the failed list. On a broker with a durable log the event is appended to
// the log, addressed to that trigger only, so the redrive survives a crash like any accepted event;
// in memory it goes straight to the trigger's lane. An event whose earlier redrive to the trigger
// is still under way in this process is skipped. It returns how many events were re-queued.
func (r *Router) Redrive(ctx context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error) {
	if r.closing.Load() {
		return 0, router.ErrUnavailable
	}
	b, t := r.findTrigger(ref)
	if t == nil {
		return 0, fmt.Errorf("%w: %s", ErrTriggerNotFound, ref)
	}
	candidates, err := router.RedriveCandidates(ctx, r.o.Results, ref, q, maxRedrive)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range candidates {
		o := &candidates[i]
		if o.Event == nil {
			continue
		}
		// One redrive of an event at a time: asking again while its new run is under way (a
		// retried request, an impatient operator) must not deliver it twice.
		key := redriveKey{ref, o.EventID}
		if _, busy := r.redriving.LoadOrStore(key, struct{}{}); busy {
			continue
		}
		e := o.Event.Clone()
		env := &router.Envelope{Event: &e, Broker: b.ref, Received: time.Now(), Partition: -1, TTL: r.maxTTL.Load() - 1, ReplyBudget: r.replyBudget.Load(),
			Redrive: &router.Redrive{Trigger: ref, Received: o.Received, Finished: o.Finished}}
		var err error
		if b.admit == nil {
			err = b.queue.Append(ctx, []*router.Envelope{env}) // read back by Handle, like any event
		} else {
			err = b.redrive(ctx, env, t, func() {})
		}
		if err != nil {
			r.redriving.Delete(key)
			return n, err
		}
		n++
	}
	return n, nil
}

// redrive runs env, a redrive addressed to trigger t, and calls done once its new outcome is final
// and the old one is off the failed list.
func (b *brokerState) redrive(ctx context.Context, env *router.Envelope, t *triggerState, done func()) error {
	r := b.r
	r.pending.Add(1)
	f := &fanout{done: func() { r.redriven(env, done) }, r: r, bytes: env.Bytes, matched: 1}
	f.remaining.Store(1)
	l := b.laneFor(t, env)
	if b.windowed {
		l.enqueue(task{b: b, t: t, env: env, f: f})
		return nil
	}
	if err := l.submit(ctx, task{b: b, t: t, env: env, f: f}); err != nil {
		f.finish()
		return err
	}
	return nil
}

// handleRedrive is Handle for an envelope a redrive appended to the broker's durable log.
func (b *brokerState) handleRedrive(ctx context.Context, env *router.Envelope, done func()) {
	t := b.routes.Load().trigger(env.Redrive.Trigger)
	if t == nil {
		b.r.logger.Warn("a redriven event's trigger is no longer configured: its failed outcome stays on the list",
			zap.String("trigger", env.Redrive.Trigger.String()), zap.String("event_id", env.Event.ID()))
		done()
		return
	}
	if err := b.redrive(ctx, env, t, done); err != nil {
		// Only a shutdown refuses: done is not called, so the log hands the event over again.
		b.r.logger.Warn("redriven event not run: the router is stopping", zap.String("event_id", env.Event.ID()), zap.Error(err))
	}
}

// redrivenRetry is how long to wait before trying again to take a redriven outcome off the list.
const redrivenRetry = time.Second

// redriven takes env's old outcome off its trigger's failed list, now that the new run's outcome
// is recorded, and then calls done (a durable log commits the event then). When the store cannot
// do it (Cassandra is down), it tries again until it can or the router stops; done is then not
// called, so a durable log reads the redrive again after the restart: it runs twice rather than
// leaving a redriven event on the list, or losing it from the list with no run finished.
func (r *Router) redriven(env *router.Envelope, done func()) {
	key := redriveKey{env.Redrive.Trigger, env.Event.ID()}
	old := env.Redrive.Outcome(env.Event.ID())
	r.pending.Add(1)
	go func() {
		defer r.pending.Add(-1)
		for {
			ctx, cancel := context.WithTimeout(r.runCtx, 10*time.Second)
			err := r.o.Results.Redriven(ctx, old)
			cancel()
			if err == nil {
				if _, t := r.findTrigger(key.trigger); t != nil {
					t.stats.redriven.Add(1)
				}
				r.redriving.Delete(key)
				done()
				return
			}
			r.logger.Warn("redriven event's old outcome not taken off the failed list yet", zap.String("event_id", old.EventID), zap.Error(err))
			if r.closing.Load() || !router.Sleep(r.runCtx, redrivenRetry) {
				r.redriving.Delete(key)
				return
			}
		}
	}()
}

func (r *Router) findTrigger(ref router.TriggerRef) (*brokerState, *triggerState) {
	for _, b := range *r.brokers.Load() {
		for _, t := range b.routes.Load().triggers {
			if t.cfg.Ref == ref {
				return b, t
			}
		}
	}
	return nil, nil
}
