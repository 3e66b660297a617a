package broker

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// heldCopies are a trigger's copies of one partition's records held in memory on a parking log
// (queued, being delivered or waiting to retry): how many, for its share (brokerState.park), and
// since when the oldest, for its lag.
type heldCopies struct {
	n, bytes atomic.Int64 // copies, and the bytes of the records they were read from

	mu      sync.Mutex
	pending []heldCopy         // in the order they were read; finished ones are dropped from the front
	done    map[int64]struct{} // finished, not yet at the front
}

// heldByPartition is a trigger's heldCopies per partition: looked up for every copy the dispatch
// hands it, so a copy-on-write slice indexed by partition rather than a map.
type heldByPartition struct {
	mu    sync.Mutex // taken only to add a partition
	parts atomic.Pointer[[]*heldCopies]
}

func (h *heldByPartition) get(p int32) *heldCopies {
	if ps := h.parts.Load(); ps != nil && int(p) < len(*ps) && (*ps)[p] != nil {
		return (*ps)[p]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var cur []*heldCopies
	if ps := h.parts.Load(); ps != nil {
		cur = *ps
	}
	if int(p) < len(cur) && cur[p] != nil {
		return cur[p]
	}
	next := make([]*heldCopies, max(len(cur), int(p)+1))
	copy(next, cur)
	next[p] = &heldCopies{}
	h.parts.Store(&next)
	return next[p]
}

// all are the partitions' heldCopies made so far.
func (h *heldByPartition) all() []*heldCopies {
	ps := h.parts.Load()
	if ps == nil {
		return nil
	}
	out := make([]*heldCopies, 0, len(*ps))
	for _, c := range *ps {
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

type heldCopy struct {
	offset   int64
	received time.Time
}

func (h *heldCopies) add(env *router.Envelope) {
	h.n.Add(1)
	h.bytes.Add(env.ReadBytes)
	h.mu.Lock()
	h.pending = append(h.pending, heldCopy{env.Offset, env.Received})
	h.mu.Unlock()
}

func (h *heldCopies) release(env *router.Envelope) {
	offset := env.Offset
	h.n.Add(-1)
	h.bytes.Add(-env.ReadBytes)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.done) == 0 && len(h.pending) > 0 && h.pending[0].offset == offset { // the oldest: most often
		h.pending[0] = heldCopy{}
		h.pending = h.pending[1:]
		if len(h.pending) == 0 {
			h.pending = nil
		}
		return
	}
	if h.done == nil {
		h.done = map[int64]struct{}{}
	}
	h.done[offset] = struct{}{}
	i := 0
	for i < len(h.pending) {
		if _, ok := h.done[h.pending[i].offset]; !ok {
			break
		}
		delete(h.done, h.pending[i].offset)
		i++
	}
	h.pending = h.pending[i:]
	if len(h.pending) == 0 {
		h.pending = nil // let the backing array go once a backlog has drained
	}
}

// oldest is when the oldest copy held arrived; zero when none is.
func (h *heldCopies) oldest() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.pending) == 0 {
		return time.Time{}
	}
	return h.pending[0].received
}

// lag is how far trigger t is behind: the records it still owes and the age of the oldest.
//   - On a parking (Kafka) log: the records of the partitions claimed here not read yet, plus the
//     trigger's copies read and not final, in memory or parked; the age is that of the oldest of
//     those copies (records not read yet have no known age).
//   - In memory: the events waiting in the broker's queue plus the trigger's backlog (delivering
//     or waiting for a slot); the age is that of the oldest waiting for a slot.
func (b *brokerState) lag(t *triggerState, now time.Time) (records int64, seconds float64) {
	var oldest time.Time
	older := func(at time.Time) {
		if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	if b.parking != nil {
		n, at := b.parking.Lag(t.cfg.Ref)
		records += n
		older(at)
		for _, h := range t.stats.held.all() {
			records += h.n.Load()
			older(h.oldest())
		}
	} else {
		records = int64(b.queue.Len())
		lanes := []*lane{t.lane}
		if t.parts != nil {
			lanes = t.parts.all()
		}
		for _, l := range lanes {
			n, at := l.backlog()
			records += int64(n)
			older(at)
		}
	}
	if !oldest.IsZero() {
		seconds = now.Sub(oldest).Seconds()
	}
	return records, seconds
}

// TriggerLags reports every trigger's lag, for switchyard_trigger_lag_records and _seconds.
func (r *Router) TriggerLags() []metrics.TriggerLag {
	now := time.Now()
	var out []metrics.TriggerLag
	for _, b := range *r.brokers.Load() {
		for _, t := range b.routes.Load().triggers {
			n, s := b.lag(t, now)
			l := metrics.TriggerLag{Namespace: t.cfg.Ref.Namespace, Broker: b.ref.Name, Trigger: t.cfg.Ref.Name, Records: n, Seconds: s}
			if br := t.stats.breaker.Load(); br != nil {
				l.Circuit, _ = br.status()
			}
			out = append(out, l)
		}
	}
	return out
}
