// Package memstore is the embedded ResultStore: a bounded, queryable history of delivery outcomes in
// memory. When full it forgets the oldest outcome first. It is what `switchyard serve` uses when no
// Cassandra is configured.
package memstore

import (
	"context"
	"strconv"
	"sync"

	"github.com/switchyard-events/switchyard/router"
)

// Store keeps the last Size outcomes, and the events of the failed ones (for redrive) up to a bound
// in bytes: past it, the oldest failed outcomes lose their event (their record stays, saying so).
type Store struct {
	mu sync.RWMutex
	// eventBytes is what the held events take (router.EnvelopeSize of each); withEvents are the
	// sequence numbers of the outcomes holding one, oldest first.
	eventBytes    int64
	maxEventBytes int64
	withEvents    []uint64
	ring          []*router.Outcome
	seq           uint64              // sequence number of the next outcome; outcome n lives in ring[n%len]
	byEvent       map[string][]uint64 // event id -> sequence numbers of its outcomes still held
	// redriven marks failed outcomes taken off their trigger's failed list.
	redriven map[*router.Outcome]bool
}

// New returns a store that holds at most size outcomes.
func New(size int) *Store {
	if size <= 0 {
		size = 1
	}
	return &Store{ring: make([]*router.Outcome, size), byEvent: map[string][]uint64{}, redriven: map[*router.Outcome]bool{},
		maxEventBytes: DefaultMaxEventBytes}
}

// DefaultMaxEventBytes bounds the bytes of events kept with failed outcomes by default.
const DefaultMaxEventBytes = 64 << 20

// SetMaxEventBytes bounds the bytes of events the store keeps with failed outcomes.
func (s *Store) SetMaxEventBytes(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxEventBytes = n
	s.trimEventsLocked()
}

// EventBytes is what the events kept with failed outcomes take now.
func (s *Store) EventBytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.eventBytes
}

// eventNotKept is appended to the LastError of an outcome whose event the bound dropped.
const eventNotKept = "; event not kept for redrive: the in-memory result store's bound on event bytes (spec.results.memory.maxEventBytes) was reached"

func eventSize(o *router.Outcome) int64 {
	return router.EnvelopeSize(&router.Envelope{Event: o.Event})
}

// trimEventsLocked drops the events of the oldest failed outcomes until the rest fit the bound.
func (s *Store) trimEventsLocked() {
	oldest := s.oldestLocked()
	for s.eventBytes > s.maxEventBytes && len(s.withEvents) > 0 {
		n := s.withEvents[0]
		s.withEvents = s.withEvents[1:]
		if n < oldest {
			continue // evicted already, its bytes given back then
		}
		o := s.ring[n%uint64(len(s.ring))]
		if o.Event == nil {
			continue
		}
		s.eventBytes -= eventSize(o)
		o.Event = nil
		o.LastError += eventNotKept
	}
}

// Record stores o, evicting the oldest outcome when full. It takes a lock for a few map operations
// and never blocks on I/O.
func (s *Store) Record(o *router.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := s.seq % uint64(len(s.ring))
	if old := s.ring[slot]; old != nil {
		s.forget(old.EventID, s.seq-uint64(len(s.ring)))
		delete(s.redriven, old)
		if old.Event != nil {
			s.eventBytes -= eventSize(old)
		}
	}
	s.ring[slot] = o
	s.byEvent[o.EventID] = append(s.byEvent[o.EventID], s.seq)
	s.seq++
	if o.Event != nil {
		s.eventBytes += eventSize(o)
		s.withEvents = append(s.withEvents, s.seq-1)
		if len(s.withEvents) > 2*len(s.ring) { // forget the evicted ones' places now and then
			s.compactWithEventsLocked()
		}
		s.trimEventsLocked()
	}
}

// oldestLocked is the sequence number of the oldest outcome the ring holds.
func (s *Store) oldestLocked() uint64 {
	if s.seq > uint64(len(s.ring)) {
		return s.seq - uint64(len(s.ring))
	}
	return 0
}

// compactWithEventsLocked drops the places of outcomes evicted from the ring.
func (s *Store) compactWithEventsLocked() {
	oldest := s.oldestLocked()
	kept := s.withEvents[:0]
	for _, n := range s.withEvents {
		if n >= oldest {
			kept = append(kept, n)
		}
	}
	s.withEvents = kept
}

func (s *Store) forget(id string, seq uint64) {
	seqs := s.byEvent[id]
	for i, v := range seqs {
		if v == seq {
			seqs = append(seqs[:i], seqs[i+1:]...)
			break
		}
	}
	if len(seqs) == 0 {
		delete(s.byEvent, id)
	} else {
		s.byEvent[id] = seqs
	}
}

// EventOutcomes returns the held outcomes of the event with that id, oldest first.
func (s *Store) EventOutcomes(_ context.Context, id string) ([]router.Outcome, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seqs := s.byEvent[id]
	out := make([]router.Outcome, 0, len(seqs))
	for _, n := range seqs {
		out = append(out, *s.ring[n%uint64(len(s.ring))])
	}
	return out, nil
}

// TriggerOutcomes pages through a trigger's outcomes, newest first. The page token is the sequence
// number to continue below.
func (s *Store) TriggerOutcomes(_ context.Context, q router.OutcomeQuery) ([]router.Outcome, string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	start := s.seq
	if q.PageToken != "" {
		n, err := strconv.ParseUint(q.PageToken, 10, 64)
		if err != nil {
			return nil, "", err
		}
		start = min(n, s.seq)
	}
	oldest := uint64(0)
	if s.seq > uint64(len(s.ring)) {
		oldest = s.seq - uint64(len(s.ring))
	}
	var out []router.Outcome
	for n := start; n > oldest; n-- {
		o := s.ring[(n-1)%uint64(len(s.ring))]
		if o.Trigger != q.Trigger || (q.OnlyFailed && (o.Status == router.StatusDelivered || s.redriven[o])) {
			continue
		}
		if !q.Since.IsZero() && o.Finished.Before(q.Since) {
			continue
		}
		if len(out) == limit {
			return out, strconv.FormatUint(n, 10), nil
		}
		out = append(out, *o)
	}
	return out, "", nil
}

// Redriven marks the held outcome equal to o (same event, trigger and run) as redriven.
func (s *Store) Redriven(_ context.Context, o *router.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.byEvent[o.EventID] {
		held := s.ring[n%uint64(len(s.ring))]
		if held.Trigger == o.Trigger && held.Received.Equal(o.Received) {
			s.redriven[held] = true
		}
	}
	return nil
}

var _ router.ResultStore = (*Store)(nil)
