package broker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// admission bounds the events an in-memory broker holds, accepted and not yet final (queued, or
// on their way to a trigger). With a limit, a producer whose events do not fit waits for earlier
// events to finish, up to a bounded time, and is then refused with router.ErrQueueFull: producers
// are paced by delivery instead of filling the queue. Without one (limit 0) it only counts.
//
// Waiters are served in arrival order, so a batch is not overtaken for ever by single events. A
// batch larger than the limit is admitted once the broker holds nothing else.
type admission struct {
	mu      sync.Mutex
	limit   int // 0: no limit
	wait    time.Duration
	used    int
	waiters []*admissionWaiter
	closed  bool
}

type admissionWaiter struct {
	n     int
	ready chan struct{} // closed when the waiter is admitted or refused (err set first)
	err   error
}

// configure sets the limit and the longest wait; raising the limit admits waiters that now fit.
func (a *admission) configure(limit int, wait time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.limit, a.wait = limit, wait
	a.grantLocked()
}

func (a *admission) fitsLocked(n int) bool {
	return a.limit == 0 || a.used == 0 || a.used+n <= a.limit
}

// acquire admits n events, waiting for room as long as the configured wait and ctx allow.
func (a *admission) acquire(ctx context.Context, n int) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return router.ErrUnavailable
	}
	if len(a.waiters) == 0 && a.fitsLocked(n) {
		a.used += n
		a.mu.Unlock()
		return nil
	}
	w := &admissionWaiter{n: n, ready: make(chan struct{})}
	a.waiters = append(a.waiters, w)
	limit, wait := a.limit, a.wait
	a.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	var err error
	select {
	case <-w.ready:
		return w.err
	case <-timer.C:
		err = fmt.Errorf("%w: the broker holds %d unfinished events, its max-in-flight, and none finished within %s", router.ErrQueueFull, limit, wait)
	case <-ctx.Done():
		err = ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-w.ready: // admitted (or closed) while the timer fired
		return w.err
	default:
	}
	for i, other := range a.waiters {
		if other == w {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			break
		}
	}
	a.grantLocked() // w may have been the head that blocked smaller waiters behind it
	return err
}

// take counts n events in without waiting: for replies, which are part of events already
// admitted, and which would deadlock if they waited for their own originals to finish.
func (a *admission) take(n int) {
	a.mu.Lock()
	a.used += n
	a.mu.Unlock()
}

// release counts n events out (final, or refused by the queue after being admitted).
func (a *admission) release(n int) {
	a.mu.Lock()
	a.used -= n
	a.grantLocked()
	a.mu.Unlock()
}

// unfinished is the number of events counted in and not yet out.
func (a *admission) unfinished() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.used
}

// close refuses every waiter and every later acquire with router.ErrUnavailable.
func (a *admission) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, w := range a.waiters {
		w.err = router.ErrUnavailable
		close(w.ready)
	}
	a.waiters = nil
}

func (a *admission) grantLocked() {
	for len(a.waiters) > 0 && !a.closed {
		w := a.waiters[0]
		if !a.fitsLocked(w.n) {
			return
		}
		a.used += w.n
		close(w.ready)
		a.waiters[0] = nil
		a.waiters = a.waiters[1:]
	}
}
