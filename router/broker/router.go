package broker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/memqueue"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// Extensions the broker manages.
const (
	ExtTTL         = "knativebrokerttl"
	ExtArrivalTime = "knativearrivaltime"
)

// Options configure a Router.
type Options struct {
	Logger    *zap.Logger
	Deliverer *delivery.Deliverer
	Results   router.ResultStore
	Metrics   *metrics.Metrics
	// BrokerURL returns a broker's ingress URL; it is the knativeerrordest of a reply that could
	// not be published.
	BrokerURL func(router.BrokerRef) string
	// ReplyPublishTimeout bounds how long a reply waits for room in a full queue (default 5s).
	ReplyPublishTimeout time.Duration
	// OpenLog returns the log a broker runs on; nil, or a nil log, means the in-memory queue.
	// cmd wires the Kafka log for Kafka-class brokers here.
	OpenLog func(b *config.Broker, s *config.Settings) (router.BrokerLog, error)
}

// Router runs every configured broker.
type Router struct {
	o      Options
	logger *zap.Logger

	runCtx    context.Context // deliveries run under it; cancelled when the shutdown grace ends
	cancelRun context.CancelFunc

	brokers atomic.Pointer[map[router.BrokerRef]*brokerState]
	maxTTL  atomic.Int32
	// replyBudget is what a newly published event gets: spec.ingress.maxRepliesPerEvent.
	replyBudget atomic.Int32

	// unfinishedBytes bounds the memory of the events in-memory brokers hold, accepted and not
	// yet final (EnvelopeSize each): spec.ingress.maxUnfinishedBytes.
	unfinishedBytes *router.ByteBudget

	// redriving holds the redriveKeys of redriven events whose new run is not final yet.
	redriving sync.Map

	applyMu  sync.Mutex // serialises Apply and Shutdown
	closing  atomic.Bool
	pending  atomic.Int64 // events read back from a log whose fate is not final yet
	dispatch sync.WaitGroup
}

// New returns a Router with no brokers; Apply gives it a configuration.
func New(o Options) *Router {
	if o.ReplyPublishTimeout <= 0 {
		o.ReplyPublishTimeout = 5 * time.Second
	}
	r := &Router{o: o, logger: o.Logger.Named("broker"), unfinishedBytes: router.NewByteBudget(config.DefaultMaxUnfinishedBytes)}
	r.runCtx, r.cancelRun = context.WithCancel(context.Background())
	empty := map[router.BrokerRef]*brokerState{}
	r.brokers.Store(&empty)
	return r
}

// brokerState lives as long as its broker stays configured, across reloads.
type brokerState struct {
	r     *Router
	ref   router.BrokerRef
	url   string
	queue router.BrokerLog
	// windowed: the log bounds unfinished envelopes itself, so lanes queue without waiting.
	windowed bool
	// admit counts (and, with a max-in-flight, bounds) an in-memory broker's unfinished events;
	// nil for a broker on a durable log, which bounds what it hands out itself. releaseOne is
	// admit.release(1), made once so that no event allocates it.
	admit      *admission
	releaseOne func()
	// queueSize is the in-memory queue's capacity, fixed when the queue was made.
	queueSize int
	events    atomic.Uint64 // events dispatched, for filtered-out counts
	routes    atomic.Pointer[routes]
}

type routes struct {
	index    *filter.Index
	triggers []*triggerState
}

type triggerState struct {
	cfg *config.Trigger
	// shownSubscriber is the subscriber URL with its credentials redacted: what outcomes, the
	// admin API and logs show.
	shownSubscriber string
	lane            *lane
	stats           *triggerStats
	m               *triggerMetrics
	// parts are an ordered trigger's lanes per Kafka partition: a partition's events go one at a
	// time, and partitions do not wait for each other. nil for other triggers.
	parts *partitionLanes
}

// partitionLanes creates an ordered trigger's per-partition lanes on first use.
type partitionLanes struct {
	mu    sync.Mutex
	lanes map[int32]*lane
	make  func() *lane
}

func (p *partitionLanes) get(partition int32) *lane {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lanes[partition]
	if l == nil {
		l = p.make()
		p.lanes[partition] = l
	}
	return l
}

// laneFor is the lane an event of t goes through.
func (b *brokerState) laneFor(t *triggerState, env *router.Envelope) *lane {
	if t.parts != nil && env.Partition >= 0 {
		return t.parts.get(env.Partition)
	}
	return t.lane
}

// triggerMetrics holds a trigger's Prometheus series, resolved once instead of hashing label
// values on every event.
type triggerMetrics struct {
	all                                  *metrics.Metrics
	ns, broker, name                     string
	inFlight                             prometheus.Gauge
	retries, deadLettered, failed, drops prometheus.Counter
	overBudget                           prometheus.Counter
	byTypeCode                           sync.Map // typeCode -> *outcomeSeries
}

type typeCode struct {
	eventType string
	code      int
}

type outcomeSeries struct {
	events  prometheus.Counter
	latency prometheus.Observer
}

func newTriggerMetrics(m *metrics.Metrics, broker router.BrokerRef, t router.TriggerRef) *triggerMetrics {
	return &triggerMetrics{
		all: m, ns: t.Namespace, broker: broker.Name, name: t.Name,
		inFlight:     m.InFlight.WithLabelValues(t.Namespace, t.Name),
		retries:      m.Retries.WithLabelValues(t.Namespace, t.Name),
		deadLettered: m.DeadLettered.WithLabelValues(t.Namespace, t.Name),
		failed:       m.Failed.WithLabelValues(t.Namespace, t.Name),
		drops:        m.RepliesDropped.WithLabelValues(t.Namespace, t.Name),
		overBudget:   m.RepliesOverBudget.WithLabelValues(t.Namespace, t.Name),
	}
}

func (tm *triggerMetrics) outcome(eventType string, code int) *outcomeSeries {
	eventType = tm.all.EventTypeLabel(tm.ns, tm.broker, eventType) // bounds byTypeCode too
	key := typeCode{eventType, code}
	if s, ok := tm.byTypeCode.Load(key); ok {
		return s.(*outcomeSeries)
	}
	labels := []string{tm.ns, tm.broker, tm.name, eventType, strconv.Itoa(code), metrics.CodeClass(code)}
	s, _ := tm.byTypeCode.LoadOrStore(key, &outcomeSeries{
		events:  tm.all.TriggerEvents.WithLabelValues(labels...),
		latency: tm.all.DispatchLatency.WithLabelValues(labels...),
	})
	return s.(*outcomeSeries)
}

type triggerStats struct {
	base                                         uint64 // broker events dispatched before the trigger existed
	matched, delivered, deadLettered, failed, rs atomic.Uint64
	inFlight                                     atomic.Int64
}

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
			log, err := r.openLog(bc, &cfg.Settings)
			if err != nil {
				r.logger.Error("broker not served: its log cannot be opened", zap.String("broker", bc.Ref.String()), zap.Error(err))
				continue
			}
			b = &brokerState{r: r, ref: bc.Ref, queue: log, queueSize: cfg.Settings.QueueSize}
			if w, ok := log.(router.WindowedLog); ok {
				b.windowed = w.BoundsUnfinished()
			}
			var h router.Handler = b
			if _, inMemory := log.(*memqueue.Queue); inMemory {
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
		b.routes.Store(r.buildRoutes(b, byBroker[bc.Ref]))
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

func (r *Router) openLog(b *config.Broker, s *config.Settings) (router.BrokerLog, error) {
	if r.o.OpenLog != nil {
		log, err := r.o.OpenLog(b, s)
		if err != nil || log != nil {
			return log, err
		}
	}
	return memqueue.New(s.QueueSize), nil
}

func (r *Router) buildRoutes(b *brokerState, triggers []*config.Trigger) *routes {
	prev := map[router.TriggerRef]*triggerState{}
	if old := b.routes.Load(); old != nil {
		for _, t := range old.triggers {
			prev[t.cfg.Ref] = t
		}
	}
	rt := &routes{triggers: make([]*triggerState, len(triggers))}
	filters := make([]filter.Filter, len(triggers))
	for i, tc := range triggers {
		ts := &triggerState{cfg: tc, m: newTriggerMetrics(r.o.Metrics, b.ref, tc.Ref), shownSubscriber: router.RedactURL(tc.Subscriber)}
		if p := prev[tc.Ref]; p != nil {
			ts.stats = p.stats
			if p.cfg.Concurrency == tc.Concurrency && p.cfg.Pending == tc.Pending && p.cfg.RateLimit == tc.RateLimit && p.cfg.Ordered == tc.Ordered {
				ts.lane, ts.parts = p.lane, p.parts // keeps an ordered trigger's order across a reload
			}
		} else {
			ts.stats = &triggerStats{base: b.events.Load()}
		}
		if ts.lane == nil {
			ts.lane = newLane(r.runCtx, tc.Concurrency, tc.Pending, tc.RateLimit, r.runTask)
			if tc.Ordered {
				shared := ts.lane.limiter // one rate limit for the trigger, whatever its partitions
				ts.parts = &partitionLanes{lanes: map[int32]*lane{}, make: func() *lane {
					l := newLane(r.runCtx, tc.Concurrency, tc.Pending, 0, r.runTask)
					l.limiter = shared
					return l
				}}
			}
		}
		rt.triggers[i] = ts
		filters[i] = tc.Filter
	}
	rt.index = filter.NewIndex(filters)
	return rt
}

// Publish admits envs into broker ref's log, all or none. Each event gets knativearrivaltime, and
// its knativebrokerttl (255 or the configured maximum when absent) is taken out, checked and
// decremented. Errors: router.ErrBrokerNotFound, router.ErrInvalidEvent and router.ErrTTLExpired
// (wrapped with detail),
// router.ErrQueueFull, router.ErrUnavailable.
func (r *Router) Publish(ctx context.Context, ref router.BrokerRef, envs []*router.Envelope) error {
	b := (*r.brokers.Load())[ref]
	if b == nil {
		return router.ErrBrokerNotFound
	}
	maxTTL := r.maxTTL.Load()
	for i, env := range envs {
		// Every source's events pass here: what ingress decoded was checked already, what a
		// webhook or Kafka record mapped to may not have been.
		if err := router.CheckEventStrings(env.Event); err != nil {
			if len(envs) > 1 {
				return fmt.Errorf("batch event %d: %w", i, err)
			}
			return err
		}
		ttl, err := takeTTL(env.Event, maxTTL)
		if err != nil {
			if len(envs) > 1 {
				return fmt.Errorf("batch event %d: %w", i, err)
			}
			return err
		}
		env.TTL = ttl
		// A producer's event starts a new lineage: whatever budget extension it carries is ours
		// to set, not the producer's.
		env.Event.SetExtension(router.ExtReplyBudget, nil)
		env.ReplyBudget = r.replyBudget.Load()
	}
	if b.admit == nil {
		return r.append(ctx, b, envs)
	}
	size, err := r.takeBytes(b, envs)
	if err != nil {
		return err
	}
	if err := b.admit.acquire(ctx, len(envs)); err != nil {
		r.unfinishedBytes.Release(size)
		return err
	}
	if err := r.append(ctx, b, envs); err != nil {
		b.admit.release(len(envs))
		r.unfinishedBytes.Release(size)
		return err
	}
	return nil
}

// takeBytes counts envs against the memory bound of in-memory brokers, each envelope's share in
// its Bytes. A batch that could never fit (more events than the queue holds, more bytes than the
// bound) is router.ErrTooLarge: retrying it is pointless. One that does not fit now is
// router.ErrQueueFull.
func (r *Router) takeBytes(b *brokerState, envs []*router.Envelope) (int64, error) {
	if b.queueSize > 0 && len(envs) > b.queueSize {
		return 0, fmt.Errorf("%w: a batch of %d events can never fit broker %s's queue of %d (spec.ingress.queueSize): send smaller batches",
			router.ErrTooLarge, len(envs), b.ref, b.queueSize)
	}
	var size int64
	for _, env := range envs {
		env.Bytes = router.EnvelopeSize(env)
		size += env.Bytes
	}
	if max := r.unfinishedBytes.Max(); size > max {
		return 0, fmt.Errorf("%w: %d bytes in memory are more than the router holds for all its in-memory brokers (spec.ingress.maxUnfinishedBytes, %d)",
			router.ErrTooLarge, size, max)
	}
	if !r.unfinishedBytes.Take(size) {
		return 0, fmt.Errorf("%w: the events held in memory are at the bound of %d bytes (spec.ingress.maxUnfinishedBytes)", router.ErrQueueFull, r.unfinishedBytes.Max())
	}
	return size, nil
}

// takeTTL removes the knativebrokerttl extension from e and returns what remains after this hop.
func takeTTL(e *event.Event, maxTTL int32) (int32, error) {
	ttl := maxTTL
	if v, ok := e.Extensions()[ExtTTL]; ok {
		n, err := types.ToInteger(v)
		if err != nil {
			return 0, fmt.Errorf("%w: %s %q is not an integer", router.ErrTTLExpired, ExtTTL, fmt.Sprint(v))
		}
		if n < ttl {
			ttl = n
		}
		e.SetExtension(ExtTTL, nil) // deletes it
	}
	if ttl <= 0 {
		return 0, fmt.Errorf("%w: %s is %d; the event has been routed too many times (a reply loop?)", router.ErrTTLExpired, ExtTTL, ttl)
	}
	return ttl - 1, nil
}

func (r *Router) append(ctx context.Context, b *brokerState, envs []*router.Envelope) error {
	if r.closing.Load() {
		return router.ErrUnavailable
	}
	now := time.Now()
	arrival := now.UTC().Format(time.RFC3339Nano)
	for _, env := range envs {
		env.Broker = b.ref
		env.Received = now
		env.Partition = -1
		env.Event.SetExtension(ExtArrivalTime, arrival)
	}
	return b.queue.Append(ctx, envs)
}

// task is one event on its way to one trigger.
type task struct {
	b   *brokerState
	t   *triggerState
	env *router.Envelope
	f   *fanout
	// l is the lane the task runs in; a parked retry resumes there.
	l *lane
	// attempt (0 before the first) and res carry a delivery across a parked backoff.
	attempt int
	res     delivery.Result
}

// fanout counts the triggers an event still waits on; the last to finish releases it.
type fanout struct {
	remaining atomic.Int32
	matched   int32 // triggers the event matched: its reply budget is shared among them
	done      func()
	r         *Router
	bytes     int64 // the envelope's Bytes, given back to the memory bound at the end
}

func (f *fanout) finish() {
	if f.remaining.Add(-1) == 0 {
		f.r.unfinishedBytes.Release(f.bytes)
		f.done()
		f.r.pending.Add(-1)
	}
}

var matchPool = sync.Pool{New: func() any { s := make([]int32, 0, 16); return &s }}

// Handle routes one envelope read from the broker's log: match, then hand it to each matching
// trigger's lane. It returns once every lane accepted it; done is called when all are final.
func (b *brokerState) Handle(ctx context.Context, env *router.Envelope, done func()) {
	r := b.r
	r.pending.Add(1)
	rt := b.routes.Load()
	b.events.Add(1)
	bufp := matchPool.Get().(*[]int32)
	matches := rt.index.Match(env.Event, (*bufp)[:0])
	if len(matches) == 0 {
		*bufp = matches
		matchPool.Put(bufp)
		r.unfinishedBytes.Release(env.Bytes)
		done()
		r.pending.Add(-1)
		return
	}
	f := &fanout{done: done, r: r, bytes: env.Bytes, matched: int32(len(matches))}
	f.remaining.Store(int32(len(matches)))
	for _, i := range matches {
		t := rt.triggers[i]
		t.stats.matched.Add(1)
		l := b.laneFor(t, env)
		if b.windowed {
			l.enqueue(task{b: b, t: t, env: env, f: f})
			continue
		}
		if err := l.submit(ctx, task{b: b, t: t, env: env, f: f}); err != nil {
			r.record(b, t, env, &router.Outcome{Status: router.StatusFailed, LastError: "router shut down before delivery: " + err.Error()})
			f.finish()
		}
	}
	*bufp = matches
	matchPool.Put(bufp)
}

// runTask delivers one event to one trigger and records the outcome. A retryable failure of an
// unordered trigger parks the task for its backoff instead of holding a lane worker, so the
// trigger keeps delivering other events meanwhile; an ordered trigger waits, since its next event
// must not overtake. It reports whether the task was parked.
//
// A panic anywhere on that path (a library's bug meeting an event nobody foresaw) ends this task
// only: the event is recorded as failed with the panic, so it can be redriven once fixed, and the
// process and every other queued event live on.
func (r *Router) runTask(ctx context.Context, tk task) (parked bool) {
	finished := false // set once tk.f.finish has run: it must run exactly once
	defer func() {
		if p := recover(); p != nil {
			parked = false
			r.taskPanicked(tk, p, finished)
		}
	}()
	t, env := tk.t, tk.env
	req := &delivery.Request{URL: t.cfg.Subscriber, Event: env.Event, Headers: env.Headers, Namespace: t.cfg.Ref.Namespace}
	if err := ctx.Err(); err != nil && tk.attempt > 0 {
		tk.res.GiveUp(err) // resumed by shutdown, not by its timer
		r.finishTask(ctx, tk, req, &finished)
		return false
	}
	if r.attempts(ctx, &tk, req) {
		return true
	}
	r.finishTask(ctx, tk, req, &finished)
	return false
}

// taskPanicked records tk's event as failed after a panic p on its way, and releases it unless
// that already happened.
func (r *Router) taskPanicked(tk task, p any, finished bool) {
	r.logger.Error("delivery panicked: event recorded as failed", zap.String("trigger", tk.t.cfg.Ref.String()),
		zap.String("event_id", tk.env.Event.ID()), zap.Any("panic", p), zap.Stack("stack"))
	if finished {
		return // the outcome was recorded and the event released; the panic came after
	}
	defer tk.f.finish()
	defer func() {
		if p := recover(); p != nil { // recording itself panicked: the log line above is what is left
			r.logger.Error("recording a panicked delivery panicked too", zap.Any("panic", p))
		}
	}()
	r.record(tk.b, tk.t, tk.env, &router.Outcome{Status: router.StatusFailed, Attempts: tk.res.Attempts, LastCode: tk.res.Code,
		LastError: fmt.Sprintf("internal error (a bug in Switchyard): delivery panicked: %v", p)})
}

// attempts delivers until the result is final, or parks the task for its backoff (unordered
// triggers) and reports true.
func (r *Router) attempts(ctx context.Context, tk *task, req *delivery.Request) (parked bool) {
	t := tk.t
	t.stats.inFlight.Add(1)
	t.m.inFlight.Inc()
	defer func() {
		t.stats.inFlight.Add(-1)
		t.m.inFlight.Dec()
	}()
	for {
		tk.attempt++
		wait, again := r.o.Deliverer.Try(ctx, req, &t.cfg.Delivery, tk.attempt, &tk.res)
		switch {
		case !again:
			return false
		case !t.cfg.Ordered:
			r.park(ctx, *tk, wait)
			return true
		case !router.Sleep(ctx, wait):
			tk.res.GiveUp(ctx.Err())
			return false
		}
	}
}

// park resumes tk in its lane after wait, or at once when ctx ends (shutdown), whichever is first.
// The task keeps its lane slot meanwhile, so parked retries still count against the lane's bound.
func (r *Router) park(ctx context.Context, tk task, wait time.Duration) {
	p := &parkedTask{tk: tk}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = time.AfterFunc(wait, p.resume)
	p.stop = context.AfterFunc(ctx, p.resume)
}

type parkedTask struct {
	mu      sync.Mutex
	tk      task
	timer   *time.Timer
	stop    func() bool
	resumed bool
}

func (p *parkedTask) resume() {
	p.mu.Lock() // also waits until park has set timer and stop
	defer p.mu.Unlock()
	if p.resumed {
		return
	}
	p.resumed = true
	p.timer.Stop()
	p.stop()
	p.tk.l.enqueue(p.tk)
}

// finishTask turns a final delivery result into the outcome: reply published, dead-lettered or
// failed; records it and releases the event for this trigger.
// finished is set when the event has been released (see runTask).
func (r *Router) finishTask(ctx context.Context, tk task, req *delivery.Request, finished *bool) {
	t, env, res := tk.t, tk.env, &tk.res
	policy := &t.cfg.Delivery
	o := &router.Outcome{Attempts: res.Attempts, LastCode: res.Code, LastError: res.Err}

	switch {
	case res.Delivered && res.Reply == nil:
		o.Status = router.StatusDelivered
	case res.Delivered:
		o.ReplyID = res.Reply.ID()
		err := r.publishReply(ctx, tk.b, env, tk.f.matched, res.Reply)
		switch {
		case err == nil:
			o.Status = router.StatusDelivered
		case errors.Is(err, errReplyBudgetSpent):
			o.Status = router.StatusDelivered
			o.LastError = "reply dropped: " + err.Error()
			t.m.overBudget.Inc()
		case errors.Is(err, router.ErrTTLExpired):
			// The hop limit doing its job: Knative drops such replies too.
			o.Status = router.StatusDelivered
			o.LastError = "reply dropped: " + err.Error()
			t.m.drops.Inc()
		default:
			failure := delivery.Result{Code: 0, Err: "publishing the reply: " + err.Error()}
			o.LastError = failure.Err
			o.Status = r.deadLetter(ctx, req, policy, &failure, tk.b.url, o, router.StatusReplyFailed)
		}
	default:
		o.Status = r.deadLetter(ctx, req, policy, res, t.cfg.Subscriber, o, router.StatusFailed)
	}
	r.record(tk.b, t, env, o)
	*finished = true
	tk.f.finish()
}

// deadLetter hands the event to the policy's dead-letter sink and returns the resulting status:
// dead-lettered, or otherwise (no sink, or the sink failed too).
func (r *Router) deadLetter(ctx context.Context, req *delivery.Request, p *delivery.Policy, failure *delivery.Result, dest string, o *router.Outcome, otherwise router.Status) router.Status {
	dl, ok := r.o.Deliverer.DeadLetter(ctx, req, p, failure, dest)
	if !ok {
		return otherwise
	}
	if dl.Delivered {
		return router.StatusDeadLettered
	}
	o.LastError += "; the dead-letter sink failed too: " + dl.Err
	return otherwise
}

// errReplyBudgetSpent: the reply would take its lineage past spec.ingress.maxRepliesPerEvent.
var errReplyBudgetSpent = errors.New("the event's reply budget is spent (spec.ingress.maxRepliesPerEvent): replies of replies fanned out too far")

// publishReply admits a subscriber's reply into the same broker, carrying the original's TTL. A
// full queue is waited on for a while: the reply is part of an event already accepted.
//
// The TTL bounds how deep replies go, not how wide: two triggers whose subscribers both reply
// double the events at every hop, 2^255 in principle. So each event also carries a reply budget,
// shared evenly among the triggers it matched (matched): a reply costs one and takes what is left
// of its trigger's share as its own budget. However replies fan out, one producer's event adds at
// most maxRepliesPerEvent events to the broker; a chain of single replies runs until the TTL.
func (r *Router) publishReply(ctx context.Context, b *brokerState, orig *router.Envelope, matched int32, reply *event.Event) error {
	if orig.TTL <= 0 {
		return fmt.Errorf("%w: %s is 0 after this hop", router.ErrTTLExpired, ExtTTL)
	}
	share := orig.ReplyBudget / max(matched, 1)
	if share < 1 {
		return errReplyBudgetSpent
	}
	reply.SetExtension(ExtTTL, nil)
	reply.SetExtension(router.ExtReplyBudget, nil)
	env := &router.Envelope{Event: reply, Headers: orig.Headers, TTL: orig.TTL - 1, ReplyBudget: share - 1}
	if b.admit == nil {
		return r.appendReply(ctx, b, env)
	}
	// Counted in without waiting or refusing: the reply is part of an event that is itself
	// counted, and its bytes are in memory already.
	b.admit.take(1)
	env.Bytes = router.EnvelopeSize(env)
	r.unfinishedBytes.Force(env.Bytes)
	err := r.appendReply(ctx, b, env)
	if err != nil {
		b.admit.release(1)
		r.unfinishedBytes.Release(env.Bytes)
	}
	return err
}

func (r *Router) appendReply(ctx context.Context, b *brokerState, env *router.Envelope) error {
	deadline := time.Now().Add(r.o.ReplyPublishTimeout)
	for {
		err := r.append(ctx, b, []*router.Envelope{env})
		if !errors.Is(err, router.ErrQueueFull) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// record completes o with what every outcome carries and stores it.
func (r *Router) record(b *brokerState, t *triggerState, env *router.Envelope, o *router.Outcome) {
	e := env.Event
	o.EventID, o.Source, o.Type = e.ID(), e.Source(), e.Type()
	o.Broker, o.Trigger, o.Subscriber = b.ref, t.cfg.Ref, t.shownSubscriber
	o.Received, o.Finished = env.Received, time.Now()
	if o.Status != router.StatusDelivered {
		o.Event = e
	}
	switch o.Status {
	case router.StatusDelivered:
		t.stats.delivered.Add(1)
	case router.StatusDeadLettered:
		t.stats.deadLettered.Add(1)
		t.m.deadLettered.Inc()
	default:
		t.stats.failed.Add(1)
		t.m.failed.Inc()
		r.logger.Warn("event not delivered", zap.String("trigger", t.cfg.Ref.String()), zap.String("event_id", o.EventID),
			zap.String("status", string(o.Status)), zap.String("error", o.LastError))
	}
	if o.Attempts > 1 {
		t.stats.rs.Add(uint64(o.Attempts - 1))
		t.m.retries.Add(float64(o.Attempts - 1))
	}
	series := t.m.outcome(o.Type, o.LastCode)
	series.events.Inc()
	series.latency.Observe(float64(o.Latency()) / float64(time.Millisecond))
	r.o.Results.Record(o)
}

// UnfinishedBytes is the estimated memory of the events in-memory brokers hold, not yet final.
func (r *Router) UnfinishedBytes() int64 { return r.unfinishedBytes.Used() }

// Pending is the number of events read from the logs whose fate is not yet final.
func (r *Router) Pending() int64 { return r.pending.Load() }

// QueueDepths reports every broker's queue length and, in memory, its unfinished events.
func (r *Router) QueueDepths() []metrics.QueueDepth {
	brokers := *r.brokers.Load()
	out := make([]metrics.QueueDepth, 0, len(brokers))
	for ref, b := range brokers {
		unfinished := -1
		if b.admit != nil {
			unfinished = b.admit.unfinished()
		}
		out = append(out, metrics.QueueDepth{Namespace: ref.Namespace, Broker: ref.Name, Depth: b.queue.Len(), Unfinished: unfinished})
	}
	return out
}

// Shutdown stops admitting events, waits until every admitted event's fate is final or ctx ends,
// then aborts what is left: deliveries in progress and events still queued are recorded as failed.
// It returns the number of events that had to be aborted.
func (r *Router) Shutdown(ctx context.Context) int64 {
	r.applyMu.Lock()
	r.closing.Store(true)
	brokers := *r.brokers.Load()
	r.applyMu.Unlock()
	for _, b := range brokers {
		b.closeIngress()
	}
	drained := make(chan struct{}) // every log's reader has handed over what it read
	go func() { r.dispatch.Wait(); close(drained) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-drained:
			if r.pending.Load() == 0 {
				r.cancelRun()
				return 0
			}
		default:
		}
		select {
		case <-ctx.Done():
			aborted := r.pending.Load()
			for _, b := range brokers {
				aborted += int64(b.queue.Len())
			}
			r.logger.Warn("shutdown grace period over: recording unfinished events as failed", zap.Int64("events", aborted))
			r.cancelRun()
			<-drained
			for r.pending.Load() > 0 { // aborted deliveries return promptly once cancelled
				<-tick.C
			}
			return aborted
		case <-tick.C:
		}
	}
}

// HasBroker reports whether ref is configured.
func (r *Router) HasBroker(ref router.BrokerRef) bool { return (*r.brokers.Load())[ref] != nil }

var _ router.Publisher = (*Router)(nil)

// TriggerStatus is a trigger's configuration summary and counters since it was first configured.
type TriggerStatus struct {
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	Broker       string `json:"broker"`
	Subscriber   string `json:"subscriber"`
	Ordered      bool   `json:"ordered"`
	Concurrency  int    `json:"concurrency"`
	Matched      uint64 `json:"matched"`
	FilteredOut  uint64 `json:"filteredOut"`
	Delivered    uint64 `json:"delivered"`
	DeadLettered uint64 `json:"deadLettered"`
	Failed       uint64 `json:"failed"`
	Retries      uint64 `json:"retries"`
	InFlight     int64  `json:"inFlight"`
}

// Triggers returns every configured trigger's status, by broker and trigger name.
func (r *Router) Triggers() []TriggerStatus {
	var out []TriggerStatus
	for _, b := range *r.brokers.Load() {
		seen := b.events.Load()
		for _, t := range b.routes.Load().triggers {
			s := t.stats
			matched := s.matched.Load()
			var filtered uint64
			if seen > s.base+matched {
				filtered = seen - s.base - matched
			}
			out = append(out, TriggerStatus{
				Namespace: t.cfg.Ref.Namespace, Name: t.cfg.Ref.Name, Broker: b.ref.Name, Subscriber: t.shownSubscriber,
				Ordered: t.cfg.Ordered, Concurrency: t.cfg.Concurrency,
				Matched: matched, FilteredOut: filtered, Delivered: s.delivered.Load(),
				DeadLettered: s.deadLettered.Load(), Failed: s.failed.Load(), Retries: s.rs.Load(), InFlight: s.inFlight.Load(),
			})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// ErrTriggerNotFound: redrive named a trigger that is not configured.
var ErrTriggerNotFound = errors.New("trigger not found")

// RedriveQuery selects what to redrive: one event, or every failed outcome finished since Since.
type RedriveQuery struct {
	EventID string
	Since   time.Time
}

// redriveKey names one event's redrive to one trigger.
type redriveKey struct {
	trigger router.TriggerRef
	eventID string
}

// maxRedrive bounds one redrive request; run it again for more.
const maxRedrive = 100000

// Redrive re-queues to trigger ref the events of its failed and dead-lettered outcomes, with the
// trigger's current subscriber and delivery, and takes them off the failed list. Each redelivery
// records a new outcome. An event whose earlier redrive to the trigger is still under way is
// skipped. It returns how many events were re-queued.
func (r *Router) Redrive(ctx context.Context, ref router.TriggerRef, q RedriveQuery) (int, error) {
	if r.closing.Load() {
		return 0, router.ErrUnavailable
	}
	b, t := r.findTrigger(ref)
	if t == nil {
		return 0, fmt.Errorf("%w: %s", ErrTriggerNotFound, ref)
	}
	var candidates []router.Outcome
	if q.EventID != "" {
		outcomes, err := r.o.Results.EventOutcomes(ctx, q.EventID)
		if err != nil {
			return 0, err
		}
		var latest *router.Outcome
		for i := range outcomes {
			if o := &outcomes[i]; o.Trigger == ref && (latest == nil || o.Received.After(latest.Received)) {
				latest = o
			}
		}
		if latest != nil && latest.Status != router.StatusDelivered {
			candidates = append(candidates, *latest)
		}
	} else {
		page := ""
		for len(candidates) < maxRedrive {
			out, next, err := r.o.Results.TriggerOutcomes(ctx, router.OutcomeQuery{Trigger: ref, OnlyFailed: true, Since: q.Since, Limit: 1000, PageToken: page})
			if err != nil {
				return 0, err
			}
			candidates = append(candidates, out...)
			if next == "" {
				break
			}
			page = next
		}
	}
	n := 0
	for i := range candidates {
		o := &candidates[i]
		if o.Event == nil {
			continue
		}
		// One redrive of an event at a time: asking again while its new run is under way (a
		// retried request, an impatient operator) must not deliver it twice.
		key := redriveKey{ref, o.EventID}
		if _, busy := r.redriving.LoadOrStore(key, struct{}{}); busy {
			continue
		}
		e := o.Event.Clone()
		env := &router.Envelope{Event: &e, Broker: b.ref, Received: time.Now(), Partition: -1, TTL: r.maxTTL.Load() - 1, ReplyBudget: r.replyBudget.Load()}
		f := &fanout{done: func() { r.redriving.Delete(key) }, r: r, matched: 1}
		f.remaining.Store(1)
		r.pending.Add(1)
		if err := t.lane.submit(ctx, task{b: b, t: t, env: env, f: f}); err != nil {
			f.finish()
			return n, err
		}
		if err := r.o.Results.Redriven(ctx, o); err != nil {
			r.logger.Warn("redriven event stays on the failed list", zap.String("event_id", o.EventID), zap.Error(err))
		}
		n++
	}
	return n, nil
}

func (r *Router) findTrigger(ref router.TriggerRef) (*brokerState, *triggerState) {
	for _, b := range *r.brokers.Load() {
		for _, t := range b.routes.Load().triggers {
			if t.cfg.Ref == ref {
				return b, t
			}
		}
	}
	return nil, nil
}
