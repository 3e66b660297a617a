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

// RedriveQuery selects what to redrive: one event, or every failed outcome finished since Since.
type RedriveQuery struct {
	EventID string
	Since   time.Time
}

// redriveKey names one event's redrive to one trigger.
type redriveKey struct {
	trigger router.TriggerRef
	eventID string
}

// maxRedrive bounds one redrive request; run it again for more.
const maxRedrive = 100000

// Redrive re-queues to trigger ref the events of its failed and dead-lettered outcomes, with the
// trigger's current subscriber and delivery, and takes them off the failed list. Each redelivery
// records a new outcome. An event whose earlier redrive to the trigger is still under way is
// skipped. It returns how many events were re-queued.
func (r *Router) Redrive(ctx context.Context, ref router.TriggerRef, q RedriveQuery) (int, error) {
	if r.closing.Load() {
		return 0, router.ErrUnavailable
	}
	b, t := r.findTrigger(ref)
	if t == nil {
		return 0, fmt.Errorf("%w: %s", ErrTriggerNotFound, ref)
	}
	var candidates []router.Outcome
	if q.EventID != "" {
		outcomes, err := r.o.Results.EventOutcomes(ctx, q.EventID)
		if err != nil {
			return 0, err
		}
		var latest *router.Outcome
		for i := range outcomes {
			if o := &outcomes[i]; o.Trigger == ref && (latest == nil || o.Received.After(latest.Received)) {
				latest = o
			}
		}
		if latest != nil && latest.Status != router.StatusDelivered {
			candidates = append(candidates, *latest)
		}
	} else {
		page := ""
		for len(candidates) < maxRedrive {
			out, next, err := r.o.Results.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: ref, OnlyFailed: true, Since: q.Since, Limit: 1000, PageToken: page})
			if err != nil {
				return 0, err
			}
			candidates = append(candidates, out...)
			if next == "" {
				break
			}
			page = next
		}
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
		env := &router.Envelope{Event: &e, Broker: b.ref, Received: time.Now(), Partition: -1, TTL: r.maxTTL.Load() - 1, ReplyBudget: r.replyBudget.Load()}
		f := &fanout{done: func() { r.redriving.Delete(key) }, r: r, matched: 1}
		f.remaining.Store(1)
		r.pending.Add(1)
		if err := t.lane.submit(ctx, task{b: b, t: t, env: env, f: f}); err != nil {
			f.finish()
			return n, err
		}
		if err := r.o.Results.Redriven(ctx, o); err != nil {
			r.logger.Warn("redriven event stays on the failed list", zap.String("event_id", o.EventID), zap.Error(err))
		}
		n++
	}
	return n, nil
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
