package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// lane runs one trigger's deliveries: at most max at once, in arrival order, holding at most
// pending more. Workers are started on demand and exit when the lane is idle, so 10,000 idle
// triggers cost no goroutines.
type lane struct {
	ctx   context.Context // deliveries run under it (the router's), whoever submitted them
	slots chan struct{}   // one per accepted task, running or waiting: submit blocks when full
	// behind is set when a wait for a slot ran out (see submitOrGiveUp).
	behind  atomic.Bool
	limiter *rate.Limiter // nil: unlimited
	gate    *pauseGate    // holds the lane while its trigger is paused; nil: never paused
	// run delivers t; it reports true when it parked t to be resumed later (through enqueue,
	// keeping its slot) rather than finishing it.
	run func(ctx context.Context, t task) (parked bool)
	// keys, when set, keeps the order of each partition key (an ordered trigger's lane): a task
	// waits for the earlier tasks of its key only, so one key retrying or stuck holds back no
	// other key.
	keys *keyOrder

	// wake hands queued work to idle workers: a worker whose queue ran dry waits on it for up
	// to workerLinger before it exits. Keeping workers for a moment saves starting (and growing
	// the stack of) a goroutine per event when a lane keeps emptying under load: 6 % of a
	// saturated router's CPU. Idle lanes still cost no goroutines once the linger is over.
	wake   chan struct{}
	linger time.Duration

	mu      sync.Mutex
	queue   []task
	running int // workers, idle ones included
	idle    int // workers waiting on wake that no token has been sent to
	max     int
	started int // workers ever started, for tests
}

// workerLinger is how long a worker with nothing to do waits for more before it exits.
var workerLinger = time.Second

func newLane(ctx context.Context, concurrency, pending int, ratePerSec float64, run func(context.Context, task) bool) *lane {
	l := &lane{ctx: ctx, slots: make(chan struct{}, concurrency+pending), max: concurrency, run: run, wake: make(chan struct{}, concurrency), linger: workerLinger}
	if ratePerSec > 0 {
		burst := int(ratePerSec)
		if burst < 1 {
			burst = 1
		}
		l.limiter = rate.NewLimiter(rate.Limit(ratePerSec), burst)
	}
	return l
}

// submit queues t, waiting while the lane is full. It fails only when ctx ends first; ctx bounds
// the wait, not the delivery.
func (l *lane) submit(ctx context.Context, t task) error {
	select {
	case l.slots <- struct{}{}:
	default:
		select {
		case l.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t.slotted = true
	l.enqueue(t)
	return nil
}

// submitOrGiveUp queues t, waiting for a slot at most wait: a burst is absorbed (slots free up
// as deliveries finish), a trigger that is not keeping up is not waited for. After a wait that
// ran out, the lane counts as behind and later tasks are refused at once, until half its slots
// are free again; so one stuck subscriber costs its broker's dispatch one wait, not one per event.
// It reports whether t was queued; false for ctx's end too.
func (l *lane) submitOrGiveUp(ctx context.Context, t task, wait time.Duration) bool {
	if l.behind.Load() {
		if len(l.slots) > cap(l.slots)/2 {
			return false
		}
		l.behind.Store(false)
	}
	select {
	case l.slots <- struct{}{}:
	default:
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case l.slots <- struct{}{}:
		case <-timer.C:
			l.behind.Store(true)
			return false
		case <-ctx.Done():
			return false
		}
	}
	t.slotted = true
	l.enqueue(t)
	return true
}

// enqueue appends t and starts a worker when fewer than max run. Called directly (without submit)
// it takes no slot: for brokers whose log bounds their unfinished envelopes (router.WindowedLog),
// where waiting for a slot would stall every other trigger of the broker.
func (l *lane) enqueue(t task) {
	t.l = l
	if l.keys != nil && !t.holdsKey {
		if !l.keys.admit(&t) {
			return // queued behind the earlier tasks of its key: it comes back through next
		}
	}
	l.mu.Lock()
	l.queue = append(l.queue, t)
	start := false
	switch {
	case l.idle > 0:
		l.idle--
		l.wake <- struct{}{} // never blocks: at most max tokens are ever outstanding
	case l.running < l.max:
		l.running++
		l.started++
		start = true
	}
	l.mu.Unlock()
	if start {
		go l.work()
	}
}

// backlog is how many tasks hold a slot of the lane (delivering, waiting to retry, or queued),
// and when the oldest queued one arrived (zero when none is queued).
func (l *lane) backlog() (int, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.slots)
	if l.keys != nil {
		n = max(n, len(l.queue)+l.keys.count())
	}
	if len(l.queue) == 0 {
		return n, time.Time{}
	}
	return max(n, len(l.queue)), l.queue[0].env.Received
}

func (l *lane) work() {
	var linger *time.Timer
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.queue = l.queue[:0]
			if !l.waitForWork(&linger) {
				return
			}
			continue
		}
		t := l.queue[0]
		l.queue[0] = task{}
		l.queue = l.queue[1:]
		l.mu.Unlock()
		if l.gate != nil {
			l.gate.wait(l.ctx) // on shutdown, run still records the event as failed
		}
		if l.limiter != nil {
			_ = l.limiter.Wait(l.ctx) // on shutdown, run still records the event as failed
		}
		// A task gives back the slot it took (submit), whichever broker it belongs to: redrives
		// of a Kafka-class broker's events take slots although its dispatch does not.
		if l.run(l.ctx, t) {
			continue // parked; it comes back through enqueue, holding its slot and its key
		}
		if t.slotted {
			<-l.slots
		}
		if t.holdsKey {
			if next, ok := l.keys.next(t.key); ok {
				l.enqueue(next)
			}
		}
	}
}

// waitForWork is called with l.mu held and an empty queue; it returns with l.mu released. It
// reports false when the worker should exit: nothing came within the linger, or the router is
// shutting down.
func (l *lane) waitForWork(linger **time.Timer) bool {
	l.idle++
	l.mu.Unlock()
	if *linger == nil {
		*linger = time.NewTimer(l.linger)
	} else {
		(*linger).Reset(l.linger)
	}
	select {
	case <-l.wake: // the sender counted this worker out of idle
		(*linger).Stop()
		return true
	case <-(*linger).C:
	case <-l.ctx.Done():
		(*linger).Stop()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.wake: // a token sent as the wait ended: take the work it stands for
		return true
	default:
	}
	l.idle--
	l.running--
	return false
}

// keyOrder orders a lane's tasks per partition key: at most one task of a key is in the lane
// (queued, delivering, or parked for a retry's backoff), the later ones wait here in order. Events
// without a partitionkey share the key "", which keeps their order per partition. What waits here
// is bounded by what the lane is given: an in-memory broker's slots, a Kafka-class broker's share
// of the partition's window (past it the trigger's copies are parked in Kafka).
type keyOrder struct {
	mu      sync.Mutex
	waiting map[string][]task // per key with a task in the lane: its later tasks; present (even empty) while the key is busy
	n       int               // tasks waiting, all keys
}

func newKeyOrder() *keyOrder { return &keyOrder{waiting: map[string][]task{}} }

// admit reports whether t may go into the lane now (its key is free), taking the key for it;
// otherwise t waits behind its key.
func (k *keyOrder) admit(t *task) bool {
	t.key = partitionKey(t.env)
	k.mu.Lock()
	defer k.mu.Unlock()
	if q, busy := k.waiting[t.key]; busy {
		k.waiting[t.key] = append(q, *t)
		k.n++
		return false
	}
	k.waiting[t.key] = nil
	t.holdsKey = true
	return true
}

// next is the task after a finished one of key, now holding the key; false frees the key.
func (k *keyOrder) next(key string) (task, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	q := k.waiting[key]
	if len(q) == 0 {
		delete(k.waiting, key)
		return task{}, false
	}
	t := q[0]
	q[0] = task{}
	if len(q) == 1 {
		k.waiting[key] = q[:0]
	} else {
		k.waiting[key] = q[1:]
	}
	k.n--
	t.holdsKey = true
	return t, true
}

// count is how many tasks wait behind their keys.
func (k *keyOrder) count() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}
