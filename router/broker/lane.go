package broker

import (
	"context"
	"sync"

	"golang.org/x/time/rate"
)

// lane runs one trigger's deliveries: at most max at once, in arrival order, holding at most
// pending more. Workers are started on demand and exit when the lane is idle, so 10,000 idle
// triggers cost no goroutines.
type lane struct {
	ctx     context.Context // deliveries run under it (the router's), whoever submitted them
	slots   chan struct{}   // one per accepted task, running or waiting: submit blocks when full
	limiter *rate.Limiter   // nil: unlimited
	// run delivers t; it reports true when it parked t to be resumed later (through enqueue,
	// keeping its slot) rather than finishing it.
	run func(ctx context.Context, t task) (parked bool)

	mu      sync.Mutex
	queue   []task
	running int
	max     int
}

func newLane(ctx context.Context, concurrency, pending int, ratePerSec float64, run func(context.Context, task) bool) *lane {
	l := &lane{ctx: ctx, slots: make(chan struct{}, concurrency+pending), max: concurrency, run: run}
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
	l.enqueue(t)
	return nil
}

// enqueue appends t and starts a worker when fewer than max run. Called directly (without submit)
// it takes no slot: for brokers whose log bounds their unfinished envelopes (router.WindowedLog),
// where waiting for a slot would stall every other trigger of the broker.
func (l *lane) enqueue(t task) {
	t.l = l
	l.mu.Lock()
	l.queue = append(l.queue, t)
	start := l.running < l.max
	if start {
		l.running++
	}
	l.mu.Unlock()
	if start {
		go l.work()
	}
}

func (l *lane) work() {
	for {
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.running--
			l.queue = l.queue[:0]
			l.mu.Unlock()
			return
		}
		t := l.queue[0]
		l.queue[0] = task{}
		l.queue = l.queue[1:]
		l.mu.Unlock()
		if l.limiter != nil {
			_ = l.limiter.Wait(l.ctx) // on shutdown, run still records the event as failed
		}
		if !l.run(l.ctx, t) && !t.b.windowed {
			<-l.slots
		}
	}
}
