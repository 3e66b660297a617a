package broker

import (
	"context"

	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/memqueue"
)

// Apply makes cfg the routing configuration. Brokers and triggers that persist keep their queues,
// lanes and counters; events already dispatched finish under the trigger settings they started with.
func (r *Router) Apply(cfg *config.Config) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	if r.closing.Load() {
		return
	}
	r.maxTTL.Store(cfg.Settings.MaxTTL)
	r.replyBudget.Store(cfg.Settings.MaxRepliesPerEvent)
	if cfg.Settings.MaxUnfinishedBytes > 0 {
		r.unfinishedBytes.SetMax(cfg.Settings.MaxUnfinishedBytes)
	}
	old := *r.brokers.Load()
	next := make(map[router.BrokerRef]*brokerState, len(cfg.Brokers))
	byBroker := map[router.BrokerRef][]*config.Trigger{}
	for _, t := range cfg.Triggers {
		byBroker[t.Broker] = append(byBroker[t.Broker], t)
	}
	for _, bc := range cfg.Brokers {
		b := old[bc.Ref]
		if b == nil {
			log, err := r.openLog(bc, cfg)
			if err != nil {
				r.logger.Error("broker not served: its log cannot be opened", zap.String("broker", bc.Ref.String()), zap.Error(err))
				continue
			}
			b = &brokerState{r: r, ref: bc.Ref, queue: log, queueSize: cfg.Settings.QueueSize,
				unmatchedRecords: rate.NewLimiter(unmatchedPerSecond, unmatchedPerSecond)}
			if r.o.Metrics != nil {
				b.unmatchedSeen = r.o.Metrics.Unmatched.WithLabelValues(bc.Ref.Namespace, bc.Ref.Name)
			}
			if w, ok := log.(router.WindowedLog); ok {
				b.windowed = w.BoundsUnfinished()
			}
			if p, ok := log.(router.ParkingLog); ok && b.windowed {
				b.parking = p
			}
			var h router.Handler = b
			if v, ok := log.(router.VolatileLog); ok && v.Volatile() {
				b.admit = &admission{}
				b.releaseOne = func() { b.admit.release(1) }
				h = admittedHandler{b}
			}
			if r.o.BrokerURL != nil {
				b.url = r.o.BrokerURL(bc.Ref)
			}
			r.dispatch.Add(1)
			go func() {
				defer r.dispatch.Done()
				b.queue.Run(r.runCtx, h)
			}()
		}
		if b.admit != nil {
			b.admit.configure(bc.MaxInFlight, cfg.Settings.MaxInFlightWait)
		}
		b.configureDedup(bc.DedupWindow)
		b.routes.Store(r.buildRoutes(b, byBroker[bc.Ref]))
		b.archive.Store(bc.Archive)
		next[bc.Ref] = b
	}
	r.brokers.Store(&next)
	for ref, b := range old {
		if next[ref] == nil {
			b.closeIngress()
		}
	}
}

// closeIngress stops b admitting events; its dispatcher drains what is queued, then exits.
func (b *brokerState) closeIngress() {
	if b.admit != nil {
		b.admit.close()
	}
	b.queue.Close()
}

// admittedHandler hands an in-memory broker's events to it with a done that counts them out of
// its admission (the in-memory queue itself has nothing to do when an event is final).
type admittedHandler struct{ b *brokerState }

func (h admittedHandler) Handle(ctx context.Context, env *router.Envelope, _ func()) {
	h.b.Handle(ctx, env, h.b.releaseOne)
}

func (r *Router) openLog(b *config.Broker, cfg *config.Config) (router.BrokerLog, error) {
	if r.o.OpenLog != nil {
		log, err := r.o.OpenLog(b, cfg)
		if err != nil || log != nil {
			return log, err
		}
	}
	return memqueue.New(cfg.Settings.QueueSize), nil
}

func (r *Router) buildRoutes(b *brokerState, triggers []*config.Trigger) *routes {
	prev := map[router.TriggerRef]*triggerState{}
	if old := b.routes.Load(); old != nil {
		for _, t := range old.triggers {
			prev[t.cfg.Ref] = t
		}
	}
	rt := &routes{triggers: make([]*triggerState, len(triggers)), version: routesVersion.Add(1), starts: make([]router.TriggerStart, len(triggers))}
	filters := make([]filter.Filter, len(triggers))
	for i, tc := range triggers {
		ts := &triggerState{cfg: tc, m: newTriggerMetrics(r.o.Metrics, b.ref, tc.Ref, filter.ExactType(tc.Filter)), shownSubscriber: router.RedactURL(tc.Subscriber), settings: settingsOf(tc)}
		if p := prev[tc.Ref]; p != nil {
			ts.stats = p.stats
			if p.cfg.Concurrency == tc.Concurrency && p.cfg.Pending == tc.Pending && p.cfg.RateLimit == tc.RateLimit && p.cfg.Ordered == tc.Ordered {
				ts.lane, ts.parts = p.lane, p.parts // keeps an ordered trigger's order across a reload
			}
		} else {
			ts.stats = &triggerStats{base: b.events.Load(), gate: newPauseGate()}
		}
		ts.stats.gate.manifest(tc.Paused)
		switch old := ts.stats.breaker.Load(); {
		case tc.CircuitBreaker == nil:
			ts.stats.breaker.Store(nil)
		case old == nil || old.spec != *tc.CircuitBreaker:
			ts.stats.breaker.Store(newBreaker(*tc.CircuitBreaker, tc.Ref.String(), r.logger))
		}
		if ts.lane == nil {
			ts.lane = newLane(r.runCtx, tc.Concurrency, tc.Pending, tc.RateLimit, r.runTask)
			if tc.Ordered {
				shared := ts.lane.limiter // one rate limit for the trigger, whatever its partitions
				gate := ts.stats.gate
				ts.parts = &partitionLanes{lanes: map[int32]*lane{}, make: func() *lane {
					l := newLane(r.runCtx, tc.Concurrency, tc.Pending, 0, r.runTask)
					l.limiter, l.gate, l.keys = shared, gate, newKeyOrder()
					return l
				}}
				ts.lane.keys = newKeyOrder()
			}
			ts.lane.gate = ts.stats.gate
		}
		ts.parkShare, ts.parkShareBytes = parkShare(b.parking, len(triggers), tc.Concurrency)
		rt.triggers[i] = ts
		rt.starts[i] = router.TriggerStart{Trigger: tc.Ref, From: tc.StartFrom}
		filters[i] = tc.Filter
	}
	rt.index = filter.NewIndex(filters)
	return rt
}

// parkShare is a trigger's share of a partition's window on a parking log, in records and in
// bytes: half the window split evenly among the broker's triggers, so that all of them falling
// behind at once still leaves the partition reading; but never less than twice the trigger's
// concurrency (records) or 1 MiB, so that a trigger merely busy is not parked. Copies past either
// go to the trigger's park topic.
func parkShare(p router.ParkingLog, triggers, concurrency int) (int, int64) {
	if p == nil {
		return 0, 0
	}
	records, bytes := p.Window()
	n := max(triggers, 1)
	return max(records/(2*n), 2*concurrency), max(bytes/int64(2*n), 1<<20)
}
