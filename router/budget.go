package router

import "sync/atomic"

// ByteBudget bounds bytes held at once by many holders (request bodies being read, replies being
// read, events not yet final). Take never waits: a holder that does not fit is refused, and the
// caller answers with back-pressure (429/503) or a retryable failure instead of growing memory.
type ByteBudget struct {
	max  atomic.Int64
	used atomic.Int64
}

// NewByteBudget returns a budget of max bytes.
func NewByteBudget(max int64) *ByteBudget {
	b := &ByteBudget{}
	b.max.Store(max)
	return b
}

// SetMax changes the bound; what is held stays held.
func (b *ByteBudget) SetMax(max int64) { b.max.Store(max) }

// Max is the bound.
func (b *ByteBudget) Max() int64 { return b.max.Load() }

// Used is what is held now.
func (b *ByteBudget) Used() int64 { return b.used.Load() }

// Take holds n bytes if they fit, and reports whether they did.
func (b *ByteBudget) Take(n int64) bool {
	if b.used.Add(n) > b.max.Load() {
		b.used.Add(-n)
		return false
	}
	return true
}

// Force holds n bytes whether they fit or not: for bytes that are already in memory and must be
// counted (a subscriber's reply to an event that is itself counted).
func (b *ByteBudget) Force(n int64) { b.used.Add(n) }

// Release gives back n bytes taken before.
func (b *ByteBudget) Release(n int64) { b.used.Add(-n) }
