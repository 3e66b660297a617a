package webhook

import (
	"sync"
	"time"
)

// dedup remembers delivery ids for a window. An id is reserved while its event is being routed
// and remembered once it was accepted; a failed attempt releases it so the provider's retry routes.
type dedup struct {
	window time.Duration
	max    int

	mu    sync.Mutex
	ids   map[string]entry
	order []string // insertion order, for expiry and the size bound
}

type entry struct {
	until    time.Time
	accepted bool
}

// maxRemembered bounds the memory one source's deduplication can use.
const maxRemembered = 100000

func newDedup(window time.Duration) *dedup {
	return &dedup{window: window, max: maxRemembered, ids: map[string]entry{}}
}

// state of an id on arrival.
type seen uint8

const (
	fresh seen = iota
	inFlight
	accepted
)

// reserve returns fresh (and reserves id) or what is known of it.
func (d *dedup) reserve(id string, now time.Time) seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expire(now)
	if e, ok := d.ids[id]; ok && now.Before(e.until) {
		if e.accepted {
			return accepted
		}
		return inFlight
	}
	d.ids[id] = entry{until: now.Add(d.window)}
	d.order = append(d.order, id)
	return fresh
}

// done settles a reservation: remembered when the event was accepted, forgotten when not.
func (d *dedup) done(id string, ok bool, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !ok {
		delete(d.ids, id)
		return
	}
	d.ids[id] = entry{until: now.Add(d.window), accepted: true}
}

// expire forgets ids from the oldest on, while they have expired or the bound is exceeded. An id
// released by done and reserved again appears twice in order; its older place is dropped here
// like any other.
func (d *dedup) expire(now time.Time) {
	for len(d.order) > 0 {
		id := d.order[0]
		e, ok := d.ids[id]
		if ok && now.Before(e.until) && len(d.order) < d.max { // leaves room for the id being added
			return
		}
		if ok {
			delete(d.ids, id)
		}
		d.order[0] = ""
		d.order = d.order[1:]
	}
}
