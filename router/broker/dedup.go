package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// Duplicates refused at the door (switchyard.dev/dedup-window): an event whose source and id the
// broker accepted within the window is answered as accepted and not appended again. The claim is
// made before the append and settled after it: accepted, it is remembered for the window; refused
// (the log could not take it), it is released, so the producer's retry goes through. With the
// Cassandra result store the claims are shared by every replica and outlive restarts; without it,
// or while it does not answer, they are this process's (router.LocalDedup, 100,000 keys a broker).

// dedupClaim is one event's reservation, and where it was made.
type dedupClaim struct {
	key    string
	shared bool
}

func dedupKey(b router.BrokerRef, env *router.Envelope) string {
	return "broker/" + b.Namespace + "/" + b.Name + "\n" + env.Event.Source() + "\n" + env.Event.ID()
}

// reserveEvents claims envs' (source, id) pairs in b's window. It returns the events to append (a
// duplicate of an accepted event, or of an earlier one of the batch, is left out) with their
// claims. An event being accepted by another request right now is router.ErrUnavailable (retry
// it): answering "accepted" for it would be a lie if that request then fails.
func (r *Router) reserveEvents(ctx context.Context, b *brokerState, d *router.LocalDedup, envs []*router.Envelope) ([]*router.Envelope, []dedupClaim, error) {
	keys := make([]string, 0, len(envs))
	unique := envs[:0:0]
	var inBatch map[string]bool
	if len(envs) > 1 {
		inBatch = make(map[string]bool, len(envs))
	}
	for _, env := range envs {
		key := dedupKey(b.ref, env)
		if inBatch != nil {
			if inBatch[key] {
				b.deduplicated(1)
				continue
			}
			inBatch[key] = true
		}
		keys = append(keys, key)
		unique = append(unique, env)
	}
	// A shared claim is a round trip to Cassandra: a batch's are made side by side.
	now := time.Now()
	claims := make([]dedupClaim, len(keys))
	states := make([]router.DedupState, len(keys))
	each(len(keys), r.o.Dedup != nil, func(i int) { claims[i], states[i] = r.reserveEvent(ctx, b, d, keys[i], now) })
	fresh := unique[:0:0]
	var freshClaims []dedupClaim
	var busy *router.Envelope
	for i, state := range states {
		switch state {
		case router.DedupFresh:
			fresh = append(fresh, unique[i])
			freshClaims = append(freshClaims, claims[i])
		case router.DedupAccepted:
			b.deduplicated(1)
		default:
			busy = unique[i]
		}
	}
	if busy != nil {
		r.settleEvents(b, d, freshClaims, false)
		return nil, nil, fmt.Errorf("%w: event %s from %s is being accepted by another request right now: retry it", router.ErrUnavailable, busy.Event.ID(), busy.Event.Source())
	}
	return fresh, freshClaims, nil
}

// dedupParallel bounds a batch's shared claims in flight at once.
const dedupParallel = 16

// each runs f(0..n-1): side by side (at most dedupParallel at once) when parallel, else in turn.
func each(n int, parallel bool, f func(i int)) {
	if !parallel || n < 2 {
		for i := range n {
			f(i)
		}
		return
	}
	var wg sync.WaitGroup
	slots := make(chan struct{}, dedupParallel)
	for i := range n {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			f(i)
		}()
	}
	wg.Wait()
}

// reserveEvent claims key through the shared Deduplicator when there is one, else (or while it
// cannot answer) in this process.
func (r *Router) reserveEvent(ctx context.Context, b *brokerState, local *router.LocalDedup, key string, now time.Time) (dedupClaim, router.DedupState) {
	if d := r.o.Dedup; d != nil {
		state, err := d.Reserve(ctx, key, local.Window())
		if err == nil {
			return dedupClaim{key, true}, state
		}
		r.logger.Warn("shared broker deduplication unavailable: deduplicating in this process only", zap.String("broker", b.ref.String()), zap.Error(err))
	}
	return dedupClaim{key, false}, local.Reserve(key, now)
}

// settleEvents ends claims: remembered when their events were accepted, released when not.
func (r *Router) settleEvents(b *brokerState, local *router.LocalDedup, claims []dedupClaim, accepted bool) {
	now := time.Now()
	if r.o.Dedup == nil { // every claim is this process's
		for _, c := range claims {
			local.Settle(c.key, accepted, now)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	each(len(claims), true, func(i int) {
		c := claims[i]
		if !c.shared {
			local.Settle(c.key, accepted, now)
			return
		}
		if err := r.o.Dedup.Settle(ctx, c.key, accepted, local.Window()); err != nil {
			r.logger.Warn("settling a shared broker deduplication claim", zap.String("broker", b.ref.String()), zap.Error(err))
		}
	})
}

// configureDedup turns deduplication on for window (keeping what is remembered when the window
// stays), or off for 0.
func (b *brokerState) configureDedup(window time.Duration) {
	switch d := b.dedup.Load(); {
	case window <= 0:
		b.dedup.Store(nil)
	case d == nil || d.Window() != window:
		b.dedup.Store(router.NewLocalDedup(window, 0))
	}
	if b.r.o.Metrics != nil && b.dedupCount == nil {
		b.dedupCount = b.r.o.Metrics.BrokerDeduplicated.WithLabelValues(b.ref.Namespace, b.ref.Name)
	}
}

// deduplicated counts events refused as duplicates.
func (b *brokerState) deduplicated(n int) {
	if b.dedupCount != nil {
		b.dedupCount.Add(float64(n))
	}
}
