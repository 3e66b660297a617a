package router

import (
	"sync"
	"time"
)

// LocalDedup remembers keys for a window, in this process: what deduplicates when no shared
// Deduplicator is configured (or while it cannot answer). A key is reserved while its event is
// being accepted and remembered once it was; a failed attempt releases it so that a retry goes
// through. At most max keys are kept (the oldest are forgotten first).
type LocalDedup struct {
	window time.Duration
	max    int

	mu    sync.Mutex
	keys  map[string]dedupEntry
	order []string // insertion order, for expiry and the size bound
}

type dedupEntry struct {
	until    time.Time
	accepted bool
}

// DefaultLocalDedupKeys bounds the memory one LocalDedup uses.
const DefaultLocalDedupKeys = 100000

// NewLocalDedup remembers up to max keys (DefaultLocalDedupKeys when 0) for window.
func NewLocalDedup(window time.Duration, max int) *LocalDedup {
	if max <= 0 {
		max = DefaultLocalDedupKeys
	}
	return &LocalDedup{window: window, max: max, keys: map[string]dedupEntry{}}
}

// Window is how long keys are remembered.
func (d *LocalDedup) Window() time.Duration { return d.window }

// Reserve returns DedupFresh (and reserves key) or what is known of it.
func (d *LocalDedup) Reserve(key string, now time.Time) DedupState {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if e, ok := d.keys[key]; ok && now.Before(e.until) {
		if e.accepted {
			return DedupAccepted
		}
		return DedupInFlight
	}
	d.keys[key] = dedupEntry{until: now.Add(d.window)}
	d.order = append(d.order, key)
	return DedupFresh
}

// Settle ends a reservation: remembered when the event was accepted, forgotten when not.
func (d *LocalDedup) Settle(key string, accepted bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !accepted {
		delete(d.keys, key)
		return
	}
	d.keys[key] = dedupEntry{until: now.Add(d.window), accepted: true}
}

// expire forgets keys from the oldest on, while they have expired or the bound is exceeded. A key
// released by Settle and reserved again appears twice in order; its older place is dropped here
// like any other.
func (d *LocalDedup) expire(now time.Time) {
	for len(d.order) > 0 {
		key := d.order[0]
		e, ok := d.keys[key]
		if ok && now.Before(e.until) && len(d.order) < d.max { // leaves room for the key being added
			return
		}
		if ok {
			delete(d.keys, key)
		}
		d.order[0] = ""
		d.order = d.order[1:]
	}
}
