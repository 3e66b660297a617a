// Package memstore is the embedded ResultStore: a bounded, queryable history of delivery outcomes in
// memory. When full it forgets the oldest outcome first. It is what `switchyard serve` uses when no
// Cassandra is configured.
package memstore

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/switchyard-events/switchyard/router"
)

// Store keeps the last Size outcomes, at most maxOutcomeBytes of them (their strings: producers
// choose ids, sources and types of any length), and the events of the failed ones (for redrive) up
// to a bound in bytes: past it, the oldest failed outcomes lose their event (their record stays,
// saying so).
type Store struct {
	mu sync.RWMutex
	// outcomeBytes is what the held outcomes' records take (outcomeSize of each), bounded by
	// maxOutcomeBytes: past it the oldest are forgotten, as when the ring is full. first is the
	// sequence number of the oldest outcome held once that has happened.
	outcomeBytes    int64
	maxOutcomeBytes int64
	first           uint64
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
		maxEventBytes: DefaultMaxEventBytes, maxOutcomeBytes: DefaultMaxOutcomeBytes}
}

// dedupDepth is how many of an event's newest outcomes a Record compares itself with.
const dedupDepth = 16

// DefaultMaxEventBytes bounds the bytes of events kept with failed outcomes by default.
const DefaultMaxEventBytes = 64 << 20

// DefaultMaxOutcomeBytes bounds the bytes of the outcomes' records by default: 100,000 outcomes
// of ordinary events take about 30 MiB, so the count bound comes first for them.
const DefaultMaxOutcomeBytes = 128 << 20

// outcomeOverhead is what a record costs beside its strings: the Outcome, its place in the ring
// and in the index by event id.
const outcomeOverhead = 320

// outcomeSize is what o's record holds: its strings a producer or subscriber chose (or that
// name them), and the fixed overhead. The event it may keep is counted apart (eventSize).
func outcomeSize(o *router.Outcome) int64 {
	n := int64(outcomeOverhead + 2*len(o.EventID) + len(o.Source) + len(o.Type) + len(o.LastError) + len(o.ReplyID) + len(o.TraceID))
	if o.Attributes != nil {
		n += router.AttributesSize(o.Attributes)
	}
	return n
}

// SetMaxOutcomeBytes bounds the bytes of the outcomes' records; the oldest are forgotten past it.
func (s *Store) SetMaxOutcomeBytes(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxOutcomeBytes = n
	s.trimOutcomesLocked()
}

// OutcomeBytes is what the held outcomes' records take now.
func (s *Store) OutcomeBytes() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.outcomeBytes
}

// trimOutcomesLocked forgets the oldest outcomes until the rest fit maxOutcomeBytes; the newest
// is always kept.
func (s *Store) trimOutcomesLocked() {
	for s.outcomeBytes > s.maxOutcomeBytes && s.seq-s.oldestLocked() > 1 {
		n := s.oldestLocked()
		slot := n % uint64(len(s.ring))
		s.evictLocked(s.ring[slot], n)
		s.ring[slot] = nil
		s.first = n + 1
	}
}

// evictLocked forgets old, outcome number n, which leaves the ring.
func (s *Store) evictLocked(old *router.Outcome, n uint64) {
	s.forget(old.EventID, n)
	delete(s.redriven, old)
	if old.Event != nil {
		s.eventBytes -= eventSize(old)
	}
	s.outcomeBytes -= outcomeSize(old)
}

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
		s.outcomeBytes += int64(len(eventNotKept))
	}
}

// Record stores o, evicting the oldest outcome when full. It takes a lock for a few map operations
// and never blocks on I/O.
func (s *Store) Record(o *router.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The same outcome recorded again (an at-least-once path retrying) is stored once, as the
	// Cassandra store's primary key does. A repeat comes soon after the first, so only the event's
	// newest outcomes are looked at: a producer reusing one event id must not make Record linear.
	seqs := s.byEvent[o.EventID]
	for i := len(seqs) - 1; i >= 0 && i >= len(seqs)-dedupDepth; i-- {
		if h := s.ring[seqs[i]%uint64(len(s.ring))]; h.Trigger == o.Trigger && h.Status == o.Status && h.Received.Equal(o.Received) && h.Finished.Equal(o.Finished) {
			return
		}
	}
	slot := s.seq % uint64(len(s.ring))
	if old := s.ring[slot]; old != nil {
		s.evictLocked(old, s.seq-uint64(len(s.ring)))
	}
	s.ring[slot] = o
	s.byEvent[o.EventID] = append(s.byEvent[o.EventID], s.seq)
	s.seq++
	s.outcomeBytes += outcomeSize(o)
	s.trimOutcomesLocked()
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
		return max(s.first, s.seq-uint64(len(s.ring)))
	}
	return s.first
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
	// Eviction forgets an id's oldest outcome, first in its list: drop it without moving the
	// rest (an id reused for every event holds the whole ring, and a copy per Record is O(ring)).
	if len(seqs) > 0 && seqs[0] == seq {
		seqs = seqs[1:]
	} else {
		for i, v := range seqs {
			if v == seq {
				seqs = append(seqs[:i], seqs[i+1:]...)
				break
			}
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

// TriggerOutcomes pages through a trigger's outcomes, newest finished first (the order the
// Cassandra store keeps; outcomes are not always recorded in the order they finish). The page token
// is the position of the last outcome returned: "{finished unix nanoseconds}.{sequence number}".
func (s *Store) TriggerOutcomes(_ context.Context, q router.OutcomeQuery) ([]router.Outcome, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	after, hasCursor, err := parseCursor(q.PageToken)
	if err != nil {
		return nil, "", err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	oldest := s.oldestLocked()
	var matches []cursor
	for n := oldest; n < s.seq; n++ {
		o := s.ring[n%uint64(len(s.ring))]
		if (q.Trigger != router.TriggerRef{} && o.Trigger != q.Trigger) || (q.OnlyFailed && (!o.Status.Failed() || s.redriven[o])) || !q.Keeps(o) {
			continue
		}
		c := cursor{finished: o.Finished.UnixNano(), seq: n}
		if hasCursor && !c.after(after) {
			continue
		}
		matches = append(matches, c)
	}
	sort.Slice(matches, func(i, j int) bool { return matches[j].after(matches[i]) })
	next := ""
	if len(matches) > limit {
		matches = matches[:limit]
		last := matches[limit-1]
		next = strconv.FormatInt(last.finished, 10) + "." + strconv.FormatUint(last.seq, 10)
	}
	out := make([]router.Outcome, len(matches))
	for i, c := range matches {
		out[i] = *s.ring[c.seq%uint64(len(s.ring))]
	}
	return out, next, nil
}

// cursor orders outcomes newest finished first, later recorded first among equals.
type cursor struct {
	finished int64
	seq      uint64
}

// after reports whether c comes after d in that order.
func (c cursor) after(d cursor) bool {
	return c.finished < d.finished || (c.finished == d.finished && c.seq < d.seq)
}

func parseCursor(token string) (cursor, bool, error) {
	if token == "" {
		return cursor{}, false, nil
	}
	f, n, ok := strings.Cut(token, ".")
	finished, err1 := strconv.ParseInt(f, 10, 64)
	seq, err2 := strconv.ParseUint(n, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return cursor{}, false, fmt.Errorf("page token %q is not one this store gave out", token)
	}
	return cursor{finished, seq}, true, nil
}

// Redriven marks the held outcome equal to o (same event, trigger and run) as redriven.
func (s *Store) Redriven(_ context.Context, o *router.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.byEvent[o.EventID] {
		held := s.ring[n%uint64(len(s.ring))]
		// Finished tells the run apart: a redrive's new run may keep the event's arrival time.
		if held.Trigger == o.Trigger && held.Received.Equal(o.Received) && (o.Finished.IsZero() || held.Finished.Equal(o.Finished)) {
			s.redriven[held] = true
		}
	}
	return nil
}

// RecordThen records o; memory is as durable as this store gets, so durable is called at once.
func (s *Store) RecordThen(o *router.Outcome, durable func()) {
	s.Record(o)
	durable()
}

// KeepsAttributes reports that the store keeps delivered events' attributes, for explain.
func (s *Store) KeepsAttributes() bool { return true }

var (
	_ router.DurableStore   = (*Store)(nil)
	_ router.AttributeStore = (*Store)(nil)
)
