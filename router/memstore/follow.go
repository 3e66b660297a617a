package memstore

import "github.com/switchyard-events/switchyard/router"

// The live tail's reads (router.OutcomeFollower): the ring is in the order outcomes were
// recorded, so following it from a sequence number reads each outcome once, and the newest n are
// found walking back from the head, with no copy of the ring and no sort. TriggerOutcomes, whose
// order is by finish time, scans and sorts every match on every page.

// LatestOutcomes returns the newest n held outcomes that pass q, oldest first; older reports that
// an older one passes q too; next is the sequence number of the next outcome to be recorded (all
// that n <= 0 asks for).
func (s *Store) LatestOutcomes(q router.OutcomeQuery, n int) ([]router.Outcome, bool, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n <= 0 {
		return nil, false, s.seq
	}
	var out []router.Outcome
	oldest := s.oldestLocked()
	for seq := s.seq; seq > oldest; seq-- {
		o := s.ring[(seq-1)%uint64(len(s.ring))]
		if !s.passesLocked(&q, o) {
			continue
		}
		if len(out) == n {
			reverse(out)
			return out, true, s.seq
		}
		out = append(out, *o)
	}
	reverse(out)
	return out, false, s.seq
}

// OutcomesAfter returns at most n outcomes recorded from sequence number from on that pass q,
// oldest first, the sequence number to continue from, and how many from there were evicted
// before this read.
func (s *Store) OutcomesAfter(q router.OutcomeQuery, from uint64, n int) ([]router.Outcome, uint64, uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var lost uint64
	if oldest := s.oldestLocked(); from < oldest {
		lost, from = oldest-from, oldest
	}
	var out []router.Outcome
	seq := from
	for ; seq < s.seq && len(out) < n; seq++ {
		if o := s.ring[seq%uint64(len(s.ring))]; s.passesLocked(&q, o) {
			out = append(out, *o)
		}
	}
	return out, seq, lost
}

// passesLocked is TriggerOutcomes' test of one outcome.
func (s *Store) passesLocked(q *router.OutcomeQuery, o *router.Outcome) bool {
	return (q.Trigger == router.TriggerRef{} || o.Trigger == q.Trigger) && (!q.OnlyFailed || o.Status.Failed() && !s.redriven[o]) && q.Keeps(o)
}

func reverse(out []router.Outcome) {
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
}

var _ router.OutcomeFollower = (*Store)(nil)
