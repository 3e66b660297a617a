// Package memqueue is the embedded broker log: a bounded in-memory queue per broker. It is what a
// broker runs on when no Kafka is configured. Accepted events live only in this process: a crash
// loses them, a graceful shutdown drains them (see broker.Router.Shutdown).
package memqueue

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/switchyard-events/switchyard/router"
)

// Queue is a bounded FIFO of envelopes, read by one dispatch goroutine so that events leave in the
// order they were accepted (ordered triggers rely on it).
type Queue struct {
	ch chan *router.Envelope
	// reserved counts places taken by Append, so a batch is admitted whole or not at all.
	reserved atomic.Int64
	mu       sync.RWMutex // guards closed against a concurrent Append sending on ch
	closed   bool
}

// New returns a queue holding at most size envelopes.
func New(size int) *Queue {
	return &Queue{ch: make(chan *router.Envelope, size)}
}

// Append queues envs, all or none; it never blocks. It returns router.ErrQueueFull when they don't
// fit, and router.ErrUnavailable once the queue is closed.
func (q *Queue) Append(_ context.Context, envs []*router.Envelope) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return router.ErrUnavailable
	}
	n := int64(len(envs))
	for {
		cur := q.reserved.Load()
		if cur+n > int64(cap(q.ch)) {
			return router.ErrQueueFull
		}
		if q.reserved.CompareAndSwap(cur, cur+n) {
			break
		}
	}
	for _, e := range envs {
		q.ch <- e // never blocks: the places were reserved
	}
	return nil
}

// Len is the number of queued envelopes.
func (q *Queue) Len() int { return len(q.ch) }

// Run hands every queued envelope to h, one at a time, until the queue is closed and empty. ctx is
// passed on to h; when it ends, Run keeps draining so that h can record what it can no longer deliver.
func (q *Queue) Run(ctx context.Context, h router.Handler) {
	for env := range q.ch {
		q.reserved.Add(-1)
		h.Handle(ctx, env, noop)
	}
}

func noop() {}

// Close stops Append from accepting; Run returns once the queue is empty. Close is idempotent.
func (q *Queue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}

// Volatile reports true: queued events live only in this process (see router.VolatileLog).
func (q *Queue) Volatile() bool { return true }

var _ router.VolatileLog = (*Queue)(nil)
