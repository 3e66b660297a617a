package broker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/filter"
)

// CanReplay checks that broker ref is served and that only are its triggers.
func (r *Router) CanReplay(ref router.BrokerRef, only []router.TriggerRef) error {
	b := (*r.brokers.Load())[ref]
	if b == nil {
		return fmt.Errorf("%w: %s", router.ErrBrokerNotFound, ref)
	}
	rt := b.routes.Load()
	for _, t := range only {
		if rt.trigger(t) == nil {
			return fmt.Errorf("%w: %s is not a trigger of broker %s", ErrTriggerNotFound, t, ref)
		}
	}
	return nil
}

// TriggerFilters returns the filters of broker ref's triggers, by name (a dry run's "current").
func (r *Router) TriggerFilters(ref router.BrokerRef) (map[string]filter.Filter, error) {
	b := (*r.brokers.Load())[ref]
	if b == nil {
		return nil, fmt.Errorf("%w: %s", router.ErrBrokerNotFound, ref)
	}
	out := map[string]filter.Filter{}
	for _, t := range b.routes.Load().triggers {
		out[t.cfg.Ref.Name] = t.cfg.Filter
	}
	return out, nil
}

// Replay delivers e, read back from broker ref's archive, to the triggers of only (every trigger
// of the broker when only is empty) whose filters match it now, through their lanes and with their
// delivery, as if it had just been accepted; nothing else of the broker sees it. observe is told
// each trigger's final outcome, and done is called once all are final (at once when none
// matched). It returns how many triggers it went to. Errors: router.ErrBrokerNotFound,
// ErrTriggerNotFound for a trigger of only that is not the broker's, router.ErrUnavailable.
func (r *Router) Replay(ctx context.Context, ref router.BrokerRef, only []router.TriggerRef, e *event.Event, observe func(router.Status), done func()) (int, error) {
	if r.closing.Load() {
		return 0, router.ErrUnavailable
	}
	b := (*r.brokers.Load())[ref]
	if b == nil {
		return 0, fmt.Errorf("%w: %s", router.ErrBrokerNotFound, ref)
	}
	rt := b.routes.Load()
	for _, t := range only {
		if rt.trigger(t) == nil {
			return 0, fmt.Errorf("%w: %s is not a trigger of broker %s", ErrTriggerNotFound, t, ref)
		}
	}
	var targets []*triggerState
	for _, t := range rt.triggers {
		if (len(only) == 0 || slices.Contains(only, t.cfg.Ref)) && (t.cfg.Filter == nil || t.cfg.Filter.Match(e)) {
			targets = append(targets, t)
		}
	}
	if len(targets) == 0 {
		done()
		return 0, nil
	}
	env := &router.Envelope{Event: e, Broker: b.ref, Received: time.Now(), Partition: -1, TTL: r.maxTTL.Load() - 1,
		ReplyBudget: r.replyBudget.Load(), Observe: observe}
	r.pending.Add(1)
	f := &fanout{done: done, r: r, matched: int32(len(targets))}
	f.remaining.Store(int32(len(targets)))
	for _, t := range targets {
		l := b.laneFor(t, env)
		if b.windowed {
			l.enqueue(task{b: b, t: t, env: env, f: f})
			continue
		}
		if err := l.submit(ctx, task{b: b, t: t, env: env, f: f}); err != nil {
			r.record(b, t, env, &router.Outcome{Status: router.StatusFailed, LastError: "replay stopped before delivery: " + err.Error()}, f.finish)
		}
	}
	return len(targets), nil
}
