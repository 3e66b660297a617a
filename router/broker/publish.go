package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// Publish admits envs into broker ref's log, all or none. Each event gets knativearrivaltime, and
// its knativebrokerttl (255 or the configured maximum when absent) is taken out, checked and
// decremented. Errors: router.ErrBrokerNotFound, router.ErrInvalidEvent and router.ErrTTLExpired
// (wrapped with detail),
// router.ErrQueueFull, router.ErrUnavailable.
func (r *Router) Publish(ctx context.Context, ref router.BrokerRef, envs []*router.Envelope) error {
	b := (*r.brokers.Load())[ref]
	if b == nil {
		return router.ErrBrokerNotFound
	}
	maxTTL := r.maxTTL.Load()
	for i, env := range envs {
		// Every source's events pass here: what ingress decoded was checked already, what a
		// webhook or Kafka record mapped to may not have been.
		if err := router.CheckEventStrings(env.Event); err != nil {
			if len(envs) > 1 {
				return fmt.Errorf("batch event %d: %w", i, err)
			}
			return err
		}
		ttl, err := takeTTL(env.Event, maxTTL)
		if err != nil {
			if len(envs) > 1 {
				return fmt.Errorf("batch event %d: %w", i, err)
			}
			return err
		}
		env.TTL = ttl
		tracing.DropInvalidTraceContext(env.Event)
		// A producer's event starts a new lineage: whatever budget extension it carries is ours
		// to set, not the producer's.
		env.Event.SetExtension(router.ExtReplyBudget, nil)
		env.ReplyBudget = r.replyBudget.Load()
	}
	d := b.dedup.Load()
	if d == nil {
		return r.admit(ctx, b, envs)
	}
	fresh, claims, err := r.reserveEvents(ctx, b, d, envs)
	if err != nil || len(fresh) == 0 {
		return err // nil: every event was a duplicate, accepted before
	}
	err = r.admit(ctx, b, fresh)
	r.settleEvents(b, d, claims, err == nil)
	return err
}

// admit appends envs to b's log, counting them in first when b is in memory.
func (r *Router) admit(ctx context.Context, b *brokerState, envs []*router.Envelope) error {
	ref := b.ref
	if b.admit == nil {
		err := r.append(ctx, b, envs)
		r.logAccepted(err, ref, envs)
		return err
	}
	size, err := r.takeBytes(b, envs)
	if err != nil {
		return err
	}
	if err := b.admit.acquire(ctx, len(envs)); err != nil {
		r.unfinishedBytes.Release(size)
		return err
	}
	if err := r.append(ctx, b, envs); err != nil {
		b.admit.release(len(envs))
		r.unfinishedBytes.Release(size)
		return err
	}
	r.logAccepted(nil, ref, envs)
	return nil
}

// MaxBatch is the most events one batch to broker ref may hold: its queue's size in memory, no
// bound (0) on a durable log or for a broker that does not exist.
func (r *Router) MaxBatch(ref router.BrokerRef) int {
	if b := (*r.brokers.Load())[ref]; b != nil && b.admit != nil {
		return b.queueSize
	}
	return 0
}

// logAccepted logs each accepted event at debug; a disabled level costs one check.
func (r *Router) logAccepted(err error, ref router.BrokerRef, envs []*router.Envelope) {
	if err != nil || !r.logger.Core().Enabled(zap.DebugLevel) {
		return
	}
	for _, env := range envs {
		r.logger.Debug("event accepted", zap.String("broker", ref.String()), zap.String("event_id", env.Event.ID()),
			zap.String("type", env.Event.Type()), zap.String("source", env.Event.Source()))
	}
}

// takeBytes counts envs against the memory bound of in-memory brokers, each envelope's share in
// its Bytes. A batch that could never fit (more events than the queue holds, more bytes than the
// bound) is router.ErrTooLarge: retrying it is pointless. One that does not fit now is
// router.ErrQueueFull.
func (r *Router) takeBytes(b *brokerState, envs []*router.Envelope) (int64, error) {
	if b.queueSize > 0 && len(envs) > b.queueSize {
		return 0, fmt.Errorf("%w: a batch of %d events can never fit broker %s's queue of %d (spec.ingress.queueSize): send smaller batches",
			router.ErrTooLarge, len(envs), b.ref, b.queueSize)
	}
	var size int64
	for _, env := range envs {
		env.Bytes = router.EnvelopeSize(env)
		size += env.Bytes
	}
	if max := r.unfinishedBytes.Max(); size > max {
		return 0, fmt.Errorf("%w: %d bytes in memory are more than the router holds for all its in-memory brokers (spec.ingress.maxUnfinishedBytes, %d)",
			router.ErrTooLarge, size, max)
	}
	if !r.unfinishedBytes.Take(size) {
		return 0, fmt.Errorf("%w: the events held in memory are at the bound of %d bytes (spec.ingress.maxUnfinishedBytes)", router.ErrQueueFull, r.unfinishedBytes.Max())
	}
	return size, nil
}

// takeTTL removes the knativebrokerttl extension from e and returns what remains after this hop.
func takeTTL(e *event.Event, maxTTL int32) (int32, error) {
	ttl := maxTTL
	if v, ok := router.Extension(e, ExtTTL); ok {
		n, err := types.ToInteger(v)
		if err != nil {
			return 0, fmt.Errorf("%w: %s %q is not an integer", router.ErrTTLExpired, ExtTTL, fmt.Sprint(v))
		}
		if n < ttl {
			ttl = n
		}
		e.SetExtension(ExtTTL, nil) // deletes it
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("%w: %s is %d; the event has been routed too many times (a reply loop?)", router.ErrTTLExpired, ExtTTL, ttl)
	}
	return ttl - 1, nil
}

func (r *Router) append(ctx context.Context, b *brokerState, envs []*router.Envelope) error {
	if r.closing.Load() {
		return router.ErrUnavailable
	}
	now := time.Now()
	arrival := now.UTC().Format(time.RFC3339Nano)
	for _, env := range envs {
		env.Broker = b.ref
		env.Received = now
		env.Partition = -1
		env.Event.SetExtension(ExtArrivalTime, arrival)
	}
	// The archive's copy is encoded before the log takes the events: from then on they belong
	// to the delivery path.
	recs, retention := r.archiveRecords(b, envs)
	if err := b.queue.Append(ctx, envs); err != nil {
		return err
	}
	if len(recs) > 0 {
		r.o.Archive.Keep(b.ref, retention, recs)
	}
	return nil
}

// archiveRecords encodes the events of envs that b archives, with their retention: none unless b
// is an in-memory broker with an archive (a Kafka-class broker's topic is its archive). Replies to
// replayed events (marked switchyardreplay) are not archived again.
func (r *Router) archiveRecords(b *brokerState, envs []*router.Envelope) ([]router.ArchiveRecord, time.Duration) {
	a := b.archive.Load()
	if a == nil || a.Retention <= 0 || r.o.Archive == nil || b.admit == nil {
		return nil, 0
	}
	recs := make([]router.ArchiveRecord, 0, len(envs))
	for _, env := range envs {
		if a.Filter != nil && !a.Filter.Match(env.Event) {
			continue
		}
		if _, replayed := router.Extension(env.Event, router.ExtReplay); replayed {
			continue
		}
		js, err := env.Event.MarshalJSON()
		if err != nil {
			r.logger.Warn("event not archived: it cannot be encoded as JSON", zap.String("event_id", env.Event.ID()), zap.Error(err))
			continue
		}
		recs = append(recs, router.ArchiveRecord{ID: env.Event.ID(), Source: env.Event.Source(), Received: env.Received, JSON: js})
	}
	return recs, a.Retention
}

// errReplyBudgetSpent: the reply would take its lineage past spec.ingress.maxRepliesPerEvent.
var errReplyBudgetSpent = errors.New("the event's reply budget is spent (spec.ingress.maxRepliesPerEvent): replies of replies fanned out too far")

// publishReply admits a subscriber's reply into the same broker, carrying the original's TTL. A
// full queue is waited on for a while: the reply is part of an event already accepted.
//
// The TTL bounds how deep replies go, not how wide: two triggers whose subscribers both reply
// double the events at every hop, 2^255 in principle. So each event also carries a reply budget,
// shared evenly among the triggers it matched (matched): a reply costs one and takes what is left
// of its trigger's share as its own budget. However replies fan out, one producer's event adds at
// most maxRepliesPerEvent events to the broker; a chain of single replies runs until the TTL.
func (r *Router) publishReply(ctx context.Context, b *brokerState, orig *router.Envelope, matched int32, reply *event.Event) error {
	if orig.TTL <= 0 {
		return fmt.Errorf("%w: %s is 0 after this hop", router.ErrTTLExpired, ExtTTL)
	}
	share := orig.ReplyBudget / max(matched, 1)
	if share < 1 {
		return errReplyBudgetSpent
	}
	reply.SetExtension(ExtTTL, nil)
	reply.SetExtension(router.ExtReplyBudget, nil)
	env := &router.Envelope{Event: reply, Headers: orig.Headers, TTL: orig.TTL - 1, ReplyBudget: share - 1}
	if b.admit == nil {
		return r.appendReply(ctx, b, env)
	}
	// Counted in without waiting or refusing: the reply is part of an event that is itself
	// counted, and its bytes are in memory already.
	b.admit.take(1)
	env.Bytes = router.EnvelopeSize(env)
	r.unfinishedBytes.Force(env.Bytes)
	err := r.appendReply(ctx, b, env)
	if err != nil {
		b.admit.release(1)
		r.unfinishedBytes.Release(env.Bytes)
	}
	return err
}

func (r *Router) appendReply(ctx context.Context, b *brokerState, env *router.Envelope) error {
	deadline := time.Now().Add(r.o.ReplyPublishTimeout)
	for {
		err := r.append(ctx, b, []*router.Envelope{env})
		if !errors.Is(err, router.ErrQueueFull) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}
