package broker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
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
	// cfg is the configuration being applied (its components' settings included).
	OpenLog func(b *config.Broker, cfg *config.Config) (router.BrokerLog, error)
	// Archive keeps the accepted events of in-memory brokers with an archive (docs/archive.md).
	Archive router.Archiver
	// Dedup, when set, shares brokers' duplicate refusal (switchyard.dev/dedup-window) among
	// replicas: the Cassandra result store. Without it each process deduplicates alone.
	Dedup router.Deduplicator
}

// Router runs every configured broker.
type Router struct {
	o      Options
	logger *zap.Logger
	// keepAttributes: the result store keeps delivered events' attributes (router.AttributeStore).
	keepAttributes bool

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
	if as, ok := o.Results.(router.AttributeStore); ok {
		r.keepAttributes = as.KeepsAttributes()
	}
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
	// parking is the log when it can park a trigger's copies apart (a Kafka log); nil otherwise.
	parking router.ParkingLog
	// dedup refuses events accepted already within switchyard.dev/dedup-window; nil: off. Set by
	// Apply; dedupCount counts what it refused.
	dedup      atomic.Pointer[router.LocalDedup]
	dedupCount prometheus.Counter
	// admit counts (and, with a max-in-flight, bounds) an in-memory broker's unfinished events;
	// nil for a broker on a durable log, which bounds what it hands out itself. releaseOne is
	// admit.release(1), made once so that no event allocates it.
	admit      *admission
	releaseOne func()
	// queueSize is the in-memory queue's capacity, fixed when the queue was made.
	queueSize int
	events    atomic.Uint64 // events dispatched, for filtered-out counts
	// unmatchedSeen counts events that matched no trigger; unmatchedRecords paces their records.
	unmatchedSeen    prometheus.Counter
	unmatchedRecords *rate.Limiter
	routes           atomic.Pointer[routes]
	// archive is what the broker keeps of its accepted events (nil: nothing), as configured now.
	archive atomic.Pointer[config.Archive]
}

type routes struct {
	index    *filter.Index
	triggers []*triggerState
	// version numbers this set of routes among all the router's, and starts lists its triggers'
	// start-from: what a parking log needs to find a trigger new to it (ParkedHandler.Starts).
	version uint64
	starts  []router.TriggerStart
}

// routesVersion numbers the routes built, from 1.
var routesVersion atomic.Uint64

// trigger returns the trigger named ref, or nil.
func (rt *routes) trigger(ref router.TriggerRef) *triggerState {
	for _, t := range rt.triggers {
		if t.cfg.Ref == ref {
			return t
		}
	}
	return nil
}

type triggerState struct {
	cfg *config.Trigger
	// shownSubscriber is the subscriber URL with its credentials redacted: what outcomes, the
	// admin API and logs show.
	shownSubscriber string
	// settings are the filter and delivery as the admin API shows them (computed once).
	settings TriggerSettings
	lane     *lane
	stats    *triggerStats
	m        *triggerMetrics
	// parkShare is how many copies of one partition's records the trigger may hold in memory on
	// a parking log before the next ones are parked (see brokerState.park).
	parkShare      int
	parkShareBytes int64
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

// all returns the lanes made so far.
func (p *partitionLanes) all() []*lane {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*lane, 0, len(p.lanes))
	for _, l := range p.lanes {
		out = append(out, l)
	}
	return out
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

// UnfinishedBytes is the estimated memory of the events in-memory brokers hold, not yet final.
func (r *Router) UnfinishedBytes() int64 { return r.unfinishedBytes.Used() }

// Pending is the number of events read from the logs whose fate is not yet final.
func (r *Router) Pending() int64 { return r.pending.Load() }

// HasBroker reports whether ref is configured.
func (r *Router) HasBroker(ref router.BrokerRef) bool { return (*r.brokers.Load())[ref] != nil }

var (
	_ router.Publisher  = (*Router)(nil)
	_ router.BatchBound = (*Router)(nil)
)
