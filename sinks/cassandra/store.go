package cassandra

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// Config configures a Store.
type Config struct {
	Hosts []string
	// Keyspace is created when missing, with Replication (a CQL map literal).
	Keyspace    string
	Replication string
	// Consistency of reads and writes, e.g. LOCAL_QUORUM (default) or ONE.
	Consistency string
	// LocalDC prefers that datacenter's nodes.
	LocalDC            string
	Username, Password string
	TLS                *tls.Config
	// DisableHostLookup talks to Hosts only, never to the addresses nodes advertise (for proxies
	// and NAT).
	DisableHostLookup bool
	// Retention is the TTL of every row (default 7 days).
	Retention time.Duration
	// Bucket is the time span of one per-trigger partition (default 1 hour).
	Bucket time.Duration
	// Writers write concurrently (default 64); Buffer outcomes wait for them (default 10,000).
	Writers int
	Buffer  int
	// JournalDir holds outcomes Cassandra could not take yet; JournalMaxBytes bounds it (1 GiB).
	JournalDir      string
	JournalMaxBytes int64
	// JournalSegmentBytes is the size at which the journal starts a new file (default: a
	// sixteenth of JournalMaxBytes, 1 to 64 MiB); replayed files are deleted whole.
	JournalSegmentBytes int64
	// Timeout bounds each query (default 5s).
	Timeout time.Duration
	Logger  *zap.Logger
	// Registerer receives the store's metrics (nil: not exported).
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	if c.Keyspace == "" {
		c.Keyspace = "switchyard"
	}
	if c.Replication == "" {
		c.Replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
	}
	if c.Consistency == "" {
		c.Consistency = "LOCAL_QUORUM"
	}
	if c.Retention <= 0 {
		c.Retention = 7 * 24 * time.Hour
	}
	if c.Bucket <= 0 {
		c.Bucket = time.Hour
	}
	if c.Writers <= 0 {
		c.Writers = 64
	}
	if c.Buffer <= 0 {
		c.Buffer = 10000
	}
	if c.JournalMaxBytes <= 0 {
		c.JournalMaxBytes = 1 << 30
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
}

var keyspaceName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]{0,47}$`)

// Validate reports configuration mistakes.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Hosts) == 0 {
		errs = append(errs, errors.New("hosts: at least one Cassandra host is needed"))
	}
	if c.Keyspace != "" && !keyspaceName.MatchString(c.Keyspace) {
		errs = append(errs, fmt.Errorf("keyspace: %q is not a valid keyspace name", c.Keyspace))
	}
	if c.Consistency != "" {
		if _, err := gocql.ParseConsistencyWrapper(c.Consistency); err != nil {
			errs = append(errs, fmt.Errorf("consistency: %q is not a consistency level", c.Consistency))
		}
	}
	if c.JournalDir == "" {
		errs = append(errs, errors.New("journal.dir: a directory for outcomes waiting for Cassandra is needed"))
	}
	return errors.Join(errs...)
}

// Store writes outcomes to Cassandra and answers queries from it.
type Store struct {
	cfg     Config
	logger  *zap.Logger
	session atomic.Pointer[gocql.Session]
	journal *journal
	in      chan queued
	stop    chan struct{}
	// stopCtx ends with stop: the background replay's writes are cancelled by it.
	stopCtx    context.Context
	cancelStop context.CancelFunc
	// closing is closed by BeginShutdown (and Close): from then on nothing waits for journal
	// space, so that a shutdown during an outage with a full journal ends, losing nothing.
	closing     chan struct{}
	closingOnce sync.Once
	// inMu orders Record's sends on in against Close closing it.
	inMu    sync.RWMutex
	writers sync.WaitGroup
	bg      sync.WaitGroup
	closed  atomic.Bool
	m       storeMetrics
	// failingSince is when replays started failing; owned by the maintain goroutine.
	failingSince time.Time
	// archive writes the archived events of in-memory brokers.
	archive *archiver
	cql     outcomeCQL
}

// reconnectAfter is how long replays may fail before the session is replaced. gocql reconnects a
// lost node by itself only slowly, and not at all when it was the only contact point.
const reconnectAfter = 5 * time.Second

type storeMetrics struct {
	written, writeErrors, journaled prometheus.Counter
}

// Open starts a Store. It does not need Cassandra to be up: until it is, outcomes go to the
// journal and queries fail; a background loop connects and creates the schema when it can.
func Open(cfg Config) (*Store, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	j, err := openJournal(cfg.JournalDir, cfg.JournalMaxBytes, cfg.JournalSegmentBytes)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, logger: cfg.Logger.Named("cassandra"), journal: j, in: make(chan queued, cfg.Buffer), stop: make(chan struct{}), closing: make(chan struct{}), cql: newOutcomeCQL(cfg.Keyspace)}
	s.stopCtx, s.cancelStop = context.WithCancel(context.Background())
	s.registerMetrics(cfg.Registerer)
	s.archive = newArchiver(s, cfg.Registerer)
	if err := s.connect(); err != nil {
		s.logger.Warn("cassandra not reachable yet: outcomes go to the journal until it is", zap.Error(err))
	}
	for i := 0; i < cfg.Writers; i++ {
		s.writers.Add(1)
		go s.writeLoop()
	}
	s.bg.Add(1)
	go s.maintain()
	return s, nil
}

func (s *Store) registerMetrics(reg prometheus.Registerer) {
	s.m.written = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchyard_results_written_total", Help: "Outcomes written to Cassandra (journal replays included)."})
	s.m.writeErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchyard_results_write_errors_total", Help: "Failed writes to Cassandra; the outcome went to the journal."})
	s.m.journaled = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchyard_results_journaled_total", Help: "Outcomes appended to the journal."})
	if reg == nil {
		return
	}
	reg.MustRegister(s.m.written, s.m.writeErrors, s.m.journaled,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_results_journal_bytes", Help: "Bytes of outcomes waiting in the journal."},
			func() float64 { b, _ := s.journal.stats(); return float64(b) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_results_journal_records", Help: "Outcomes waiting in the journal."},
			func() float64 { _, n := s.journal.stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_results_buffer_length", Help: "Outcomes waiting for a writer."},
			func() float64 { return float64(len(s.in)) }))
}

// newCluster returns the gocql configuration for cfg: protocol v4 (gocql's "v5" is an old beta
// framing that Cassandra 5 rejects).
func newCluster(cfg *Config) *gocql.ClusterConfig {
	c := gocql.NewCluster(cfg.Hosts...)
	c.ProtoVersion = 4
	c.Consistency = gocql.ParseConsistency(cfg.Consistency)
	c.Timeout = cfg.Timeout
	c.ConnectTimeout = cfg.Timeout
	c.ReconnectInterval = 2 * time.Second
	c.DisableInitialHostLookup = cfg.DisableHostLookup
	c.Logger = gocqlLogger{cfg.Logger.Named("gocql")}
	if cfg.LocalDC != "" {
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.DCAwareRoundRobinPolicy(cfg.LocalDC))
	} else {
		c.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(gocql.RoundRobinHostPolicy())
	}
	if cfg.Username != "" {
		c.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	if cfg.TLS != nil {
		c.SslOpts = &gocql.SslOptions{Config: cfg.TLS, EnableHostVerification: !cfg.TLS.InsecureSkipVerify}
	}
	return c
}

// Migrate creates the keyspace and tables when missing. It is idempotent and safe to run from
// several processes at once.
func Migrate(cfg Config) error {
	cfg.setDefaults()
	session, err := newCluster(&cfg).CreateSession()
	if err != nil {
		return fmt.Errorf("connecting to cassandra: %w", err)
	}
	defer session.Close()
	return migrate(session, &cfg)
}

func (s *Store) connect() error {
	if s.session.Load() != nil {
		return nil
	}
	session, err := newCluster(&s.cfg).CreateSession()
	if err != nil {
		return fmt.Errorf("connecting to cassandra %v: %w", s.cfg.Hosts, err)
	}
	if err := migrate(session, &s.cfg); err != nil {
		session.Close()
		return err
	}
	s.session.Store(session)
	s.logger.Info("connected to cassandra", zap.Strings("hosts", s.cfg.Hosts), zap.String("keyspace", s.cfg.Keyspace))
	return nil
}

// queued is an outcome waiting for a writer, with what to call once it is durable (or nil).
type queued struct {
	o       *router.Outcome
	durable func()
}

// Record queues o for writing. It waits only when both the buffer and the journal are full (the
// backpressure that reaches ingress), and not once BeginShutdown was called.
func (s *Store) Record(o *router.Outcome) { s.RecordThen(o, nil) }

// RecordThen is Record, then durable once o is in Cassandra or fsynced to the journal (one fsync
// serves the writers waiting for it). It is not called for an outcome that neither took.
func (s *Store) RecordThen(o *router.Outcome, durable func()) {
	q := queued{o, durable}
	s.inMu.RLock()
	if s.closed.Load() {
		s.inMu.RUnlock()
		s.logger.Error("outcome recorded after close: journaling it directly", zap.String("event_id", o.EventID))
		s.persist(q)
		return
	}
	select {
	case s.in <- q:
		s.inMu.RUnlock()
	case <-s.closing:
		s.inMu.RUnlock()
		s.persist(q) // straight to Cassandra or the journal, past its bound if need be
	}
}

// BeginShutdown stops every wait for journal space: outcomes that Cassandra cannot take go to the
// journal even past its bound. Call it when the process starts to stop (before the router drains),
// so that deliveries blocked in Record during an outage with a full journal can finish; Close
// calls it too.
func (s *Store) BeginShutdown() {
	s.closingOnce.Do(func() {
		close(s.closing)
		s.journal.wakeAll()
	})
}

// maxWriteGroup bounds the outcomes one writer takes from the buffer at once.
const maxWriteGroup = 32

// writeLoop takes an outcome from the buffer and, without waiting, up to maxWriteGroup-1 more that
// are waiting too, and writes them together: under load the outcomes of one trigger then share
// unlogged batches (see insertAll); when outcomes trickle in, each is written alone at once.
func (s *Store) writeLoop() {
	defer s.writers.Done()
	group := make([]queued, 0, maxWriteGroup)
	for q := range s.in {
		group = append(group[:0], q)
	more:
		for len(group) < maxWriteGroup {
			select {
			case q, ok := <-s.in:
				if !ok {
					break more
				}
				group = append(group, q)
			default:
				break more
			}
		}
		s.persistAll(group)
		clear(group) // let the outcomes go
	}
}

// persist writes one outcome: persistAll of it alone.
func (s *Store) persist(q queued) { s.persistAll([]queued{q}) }

// persistAll writes the outcomes to Cassandra, or to the journal when records wait there already
// (to keep their order) or when their write fails.
func (s *Store) persistAll(qs []queued) {
	recs := make([]*record, 0, len(qs))
	durable := make([]func(), 0, len(qs))
	for _, q := range qs {
		r, err := toRecord(q.o)
		if err != nil {
			s.logger.Error("outcome cannot be encoded", zap.Error(err))
			continue
		}
		recs, durable = append(recs, r), append(durable, q.durable)
	}
	var errs []error
	if !s.journal.active() {
		ctx, cancel := s.writeContext()
		errs = s.insertAll(ctx, recs)
		cancel()
	}
	for i, r := range recs {
		if errs != nil && errs[i] == nil {
			s.m.written.Inc()
			if durable[i] != nil {
				durable[i]()
			}
			continue
		}
		if errs != nil {
			s.m.writeErrors.Inc()
			s.logger.Warn("writing outcome to cassandra failed: journaling it", zap.String("event_id", r.EventID), zap.Error(errs[i]))
		}
		s.journalRecord(r, durable[i])
	}
}

// journalRecord appends r to the journal and, when durable is set, calls it once the journal is
// synced to disk past r.
func (s *Store) journalRecord(r *record, durable func()) {
	n, err := s.journal.append(r, s.closing)
	if err != nil {
		s.logger.Error("outcome lost: neither cassandra nor the journal took it", zap.String("event_id", r.EventID), zap.Error(err))
		return
	}
	s.m.journaled.Inc()
	if durable == nil {
		return
	}
	if err := s.journal.syncTo(n); err != nil {
		s.logger.Error("journaled outcome not synced to disk: its event is kept to be read again", zap.String("event_id", r.EventID), zap.Error(err))
		return
	}
	durable()
}

// shutdownWriteTimeout bounds a write once the store is shutting down: an outcome Cassandra does
// not take at once goes to the journal, so that a Cassandra that hangs (rather than refuses) does
// not hold the shutdown past its grace, one timeout per writer and outcome.
const shutdownWriteTimeout = time.Second

func (s *Store) writeContext() (context.Context, context.CancelFunc) {
	select {
	case <-s.closing:
		return context.WithTimeout(context.Background(), shutdownWriteTimeout)
	default:
		return context.Background(), func() {}
	}
}

var errNoSession = errors.New("cassandra is not connected")

// maxBatchBytes bounds an unlogged batch's rows, under Cassandra's batch_size_warn_threshold
// (5 KiB by default), which would log a warning for every larger batch.
const maxBatchBytes = 4 << 10

// insertAll writes the records' rows and returns each record's error (nil once all its rows are
// written). Every row is written with the outcome's finish time as its write time, not the time
// of the write. A write can happen twice and late (a journal replayed after a crash, or a record
// that reached Cassandra before its batch failed), and Cassandra keeps the newest write time: so
// an old outcome replayed late never overwrites a newer one of the same event and trigger, and
// never brings back a failed-list row that a redrive deleted (the delete is stamped later).
//
// A record's rows go to different partitions: outcomes_by_event is its event's own, written
// alone (token-aware routing takes it to a replica); failed_by_trigger rows carry the event, so
// they are written alone too. outcomes_by_trigger rows of one trigger and time bucket share a
// partition: they go as unlogged batches of at most maxBatchBytes, one mutation of that partition
// for Cassandra instead of one per row (a batch across partitions would only add coordinator
// work). Everything is written concurrently.
func (s *Store) insertAll(ctx context.Context, recs []*record) []error {
	errs := make([]error, len(recs))
	if len(recs) == 0 {
		return errs
	}
	session := s.session.Load()
	if session == nil {
		for i := range errs {
			errs[i] = errNoSession
		}
		return errs
	}
	var mu sync.Mutex
	fail := func(err error, of ...int) {
		if err != nil {
			mu.Lock()
			for _, i := range of {
				errs[i] = errors.Join(errs[i], err)
			}
			mu.Unlock()
		}
	}
	var writes []func()
	for _, part := range s.byTriggerBatches(recs) {
		writes = append(writes, func() { fail(s.writeByTrigger(ctx, session, recs, part), part...) })
	}
	for i, r := range recs {
		writes = append(writes, func() {
			fail(session.Query(s.cql.byEvent, r.EventID, r.Trigger, r.Received, r.Broker, r.Source, r.Type, r.Subscriber, r.Status, r.Attempts, r.LastCode, r.LastError, r.Finished, r.latencyMicros(), r.ReplyID, r.TraceID, r.eventBlob(), s.ttl(), r.stamp()).
				WithContext(ctx).Idempotent(true).Exec(), i)
		})
		if router.Status(r.Status).Failed() {
			writes = append(writes, func() {
				fail(session.Query(s.cql.failed, r.Trigger, s.bucket(r), r.Finished, r.EventID, r.Received, r.Broker, r.Source, r.Type, r.Subscriber, r.Status, r.Attempts, r.LastCode, r.LastError, r.latencyMicros(), r.ReplyID, r.TraceID, r.eventBlob(), s.ttl(), r.stamp()).
					WithContext(ctx).Idempotent(true).Exec(), i)
			})
		}
	}
	// The last write runs in this goroutine: an outcome written alone (the common case when
	// outcomes trickle in) starts one goroutine, not two.
	var wg sync.WaitGroup
	for _, w := range writes[:len(writes)-1] {
		wg.Go(w)
	}
	writes[len(writes)-1]()
	wg.Wait()
	return errs
}

// byTriggerBatches groups the records' positions by their outcomes_by_trigger partition (trigger
// and bucket), in order of first appearance, and cuts each group at maxBatchBytes.
func (s *Store) byTriggerBatches(recs []*record) [][]int {
	if len(recs) == 1 { // an outcome written alone, the common case: no grouping to do
		return [][]int{{0}}
	}
	type partition struct {
		trigger string
		bucket  time.Time
	}
	var order []partition
	groups := make(map[partition][]int, 4)
	for i, r := range recs {
		p := partition{r.Trigger, s.bucket(r)}
		if _, seen := groups[p]; !seen {
			order = append(order, p)
		}
		groups[p] = append(groups[p], i)
	}
	var batches [][]int
	for _, p := range order {
		idx := groups[p]
		for len(idx) > 0 {
			n, size := 1, recs[idx[0]].rowBytes()
			for n < len(idx) && size+recs[idx[n]].rowBytes() <= maxBatchBytes {
				size += recs[idx[n]].rowBytes()
				n++
			}
			batches, idx = append(batches, idx[:n]), idx[n:]
		}
	}
	return batches
}

// writeByTrigger writes the outcomes_by_trigger rows of the records at positions part, which
// share a partition: one statement, or an unlogged batch routed to that partition's replicas.
func (s *Store) writeByTrigger(ctx context.Context, session *gocql.Session, recs []*record, part []int) error {
	args := func(r *record) []any {
		return []any{r.Trigger, s.bucket(r), r.Finished, r.EventID, r.Received, r.Broker, r.Source, r.Type, r.Subscriber, r.Status, r.Attempts, r.LastCode, r.LastError, r.latencyMicros(), r.ReplyID, r.TraceID, s.ttl(), r.stamp()}
	}
	if len(part) == 1 {
		return session.Query(s.cql.byTrigger, args(recs[part[0]])...).WithContext(ctx).Idempotent(true).Exec()
	}
	b := session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	for _, i := range part {
		b.Entries = append(b.Entries, gocql.BatchEntry{Stmt: s.cql.byTrigger, Args: args(recs[i]), Idempotent: true})
	}
	return session.ExecuteBatch(b)
}

func (s *Store) ttl() int                   { return int(s.cfg.Retention / time.Second) }
func (s *Store) bucket(r *record) time.Time { return r.Finished.Truncate(s.cfg.Bucket) }

// outcomeCQL are the store's inserts, built once for its keyspace.
type outcomeCQL struct{ byEvent, byTrigger, failed string }

func newOutcomeCQL(ks string) outcomeCQL {
	return outcomeCQL{
		byEvent:   `INSERT INTO ` + ks + `.outcomes_by_event (event_id, trigger, received, broker, source, type, subscriber, status, attempts, last_code, last_error, finished, latency_us, reply_id, trace_id, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?`,
		byTrigger: `INSERT INTO ` + ks + `.outcomes_by_trigger (trigger, bucket, finished, event_id, received, broker, source, type, subscriber, status, attempts, last_code, last_error, latency_us, reply_id, trace_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?`,
		failed:    `INSERT INTO ` + ks + `.failed_by_trigger (trigger, bucket, finished, event_id, received, broker, source, type, subscriber, status, attempts, last_code, last_error, latency_us, reply_id, trace_id, event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?`,
	}
}

// maintain connects when not connected and replays the journal when Cassandra answers.
func (s *Store) maintain() {
	defer s.bg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if s.session.Load() == nil {
			if err := s.connect(); err != nil {
				continue
			}
		}
		s.replay(s.stopCtx)
	}
}

// Replay reads the journal in batches of at most replayBatchRecords records and replayBatchBytes
// bytes, so that its memory stays bounded however large the backlog.
const (
	replayBatchRecords = 1024
	replayBatchBytes   = 8 << 20
)

// replay writes journaled records to Cassandra, oldest first, batch after batch, until the journal
// is empty, a write fails, stop is closed or ctx ends.
func (s *Store) replay(ctx context.Context) {
	started, total := time.Now(), 0
	defer func() {
		if total > 0 {
			bytes, left := s.journal.stats()
			elapsed := time.Since(started)
			s.logger.Info("replayed journaled outcomes to cassandra", zap.Int("records", total), zap.Duration("took", elapsed),
				zap.Float64("per_second", float64(total)/max(elapsed.Seconds(), 1e-3)), zap.Int64("left", left), zap.Int64("left_bytes", bytes))
		}
	}()
	for {
		recs, ends, err := s.journal.next(replayBatchRecords, replayBatchBytes)
		if err != nil {
			s.logger.Error("reading the journal", zap.Error(err))
			return
		}
		if len(recs) == 0 {
			return
		}
		done, err := s.writeBatch(ctx, recs)
		if done > 0 {
			s.journal.replayedUpTo(ends[done-1], int64(done))
			total += done
		}
		if err != nil {
			s.replayFailed(err)
			return
		}
		s.failingSince = time.Time{}
		if ctx.Err() != nil {
			return
		}
	}
}

// writeBatch writes recs with the store's writers' parallelism and returns how many of them, from
// the first, are written: records after a failed one may be written too, and are written again by
// the next replay, which the rows' write timestamps make harmless. After a failure no new write
// starts, so that an outage costs one timeout per writer, not one per record.
func (s *Store) writeBatch(ctx context.Context, recs []*record) (int, error) {
	errs := make([]error, len(recs))
	var next atomic.Int64
	var failed atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < min(s.cfg.Writers, len(recs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var chunk []*record
			var at []int
			for !failed.Load() {
				// Records a group at a time, as the writers take them (see writeLoop).
				from := int(next.Add(maxWriteGroup) - maxWriteGroup)
				if from >= len(recs) {
					return
				}
				chunk, at = chunk[:0], at[:0]
				for i := from; i < min(from+maxWriteGroup, len(recs)); i++ {
					if recs[i] != nil { // nil: a line that did not parse, nothing to write
						chunk, at = append(chunk, recs[i]), append(at, i)
					}
				}
				for k, err := range s.insertAll(ctx, chunk) {
					if errs[at[k]] = err; err != nil {
						failed.Store(true)
					} else {
						s.m.written.Inc()
					}
				}
			}
		}()
	}
	wg.Wait()
	started := int(min(next.Load(), int64(len(recs))))
	for i := 0; i < started; i++ {
		if errs[i] != nil {
			return i, errs[i]
		}
	}
	if started < len(recs) {
		return started, errors.New("replay stopped after a failed write")
	}
	return len(recs), nil
}

// replayFailed replaces the session once replays have failed for reconnectAfter, so that the next
// maintain tick connects afresh.
func (s *Store) replayFailed(err error) {
	if s.failingSince.IsZero() {
		s.failingSince = time.Now()
		return
	}
	if time.Since(s.failingSince) < reconnectAfter {
		return
	}
	s.failingSince = time.Time{}
	if old := s.session.Swap(nil); old != nil {
		s.logger.Warn("cassandra unreachable: reconnecting", zap.Error(err))
		old.Close()
	}
}

// closeReplayFor bounds the journal replay in Close.
const closeReplayFor = 5 * time.Second

// Close writes what is buffered (to Cassandra or the journal), then stops. Journaled records stay
// on disk for the next start.
func (s *Store) Close() error {
	// Records blocked for journal space (Cassandra down, journal at its bound) are released first:
	// they, and the writers, journal past the bound instead of waiting for a stop that would
	// come only after them.
	s.BeginShutdown()
	s.inMu.Lock() // Records sending now finish first; later ones see closed
	swapped := s.closed.CompareAndSwap(false, true)
	if swapped {
		close(s.in)
	}
	s.inMu.Unlock()
	if !swapped {
		return nil
	}
	s.writers.Wait()
	close(s.stop)
	s.cancelStop()
	s.journal.wakeAll()
	s.bg.Wait()
	// One more pass for what the writers journaled while stopping, bounded so that a large
	// backlog (or a Cassandra that does not answer) does not hold the shutdown: the rest waits in
	// the journal for the next start.
	ctx, cancel := context.WithTimeout(context.Background(), closeReplayFor)
	s.replay(ctx)
	cancel()
	s.archive.close()
	if session := s.session.Load(); session != nil {
		session.Close()
	}
	bytes, n := s.journal.stats()
	if n > 0 {
		s.logger.Warn("outcomes wait in the journal for the next start", zap.Int64("records", n), zap.Int64("bytes", bytes), zap.String("journal", s.journal.dir))
	}
	return s.journal.close()
}

// inFlightTTL bounds how long a webhook delivery claimed by a replica that then died blocks its
// provider's retries (answered 409 meanwhile).
const inFlightTTL = time.Minute

// Reserve claims a webhook delivery for every replica at once, with a lightweight transaction
// (INSERT ... IF NOT EXISTS): one claim wins, the others learn whether it is in flight or done.
func (s *Store) Reserve(ctx context.Context, key string, window time.Duration) (router.DedupState, error) {
	session := s.session.Load()
	if session == nil {
		return router.DedupFresh, errNoSession
	}
	existing := map[string]any{}
	applied, err := session.Query(`INSERT INTO `+s.cfg.Keyspace+`.webhook_deliveries (key, state) VALUES (?, 'in-flight') IF NOT EXISTS USING TTL ?`,
		key, ttlSeconds(min(window, inFlightTTL))).WithContext(ctx).SerialConsistency(gocql.LocalSerial).MapScanCAS(existing)
	switch {
	case err != nil:
		return router.DedupFresh, err
	case applied:
		return router.DedupFresh, nil
	case existing["state"] == "accepted":
		return router.DedupAccepted, nil
	default:
		return router.DedupInFlight, nil
	}
}

// Settle remembers an accepted delivery for window, or releases the claim.
func (s *Store) Settle(ctx context.Context, key string, accepted bool, window time.Duration) error {
	session := s.session.Load()
	if session == nil {
		return errNoSession
	}
	if accepted {
		return session.Query(`UPDATE `+s.cfg.Keyspace+`.webhook_deliveries USING TTL ? SET state = 'accepted' WHERE key = ?`,
			ttlSeconds(window), key).WithContext(ctx).Exec()
	}
	return session.Query(`DELETE FROM `+s.cfg.Keyspace+`.webhook_deliveries WHERE key = ?`, key).WithContext(ctx).Exec()
}

func ttlSeconds(d time.Duration) int { return max(1, int(d/time.Second)) }

var (
	_ router.DrainingStore = (*Store)(nil)
	_ router.DurableStore  = (*Store)(nil)
	_ router.Deduplicator  = (*Store)(nil)
)

const columns = "event_id, trigger, received, broker, source, type, subscriber, status, attempts, last_code, last_error, finished, reply_id, trace_id"

func scanRecord(scan func(...any) error, withEvent bool) (*record, error) {
	var r record
	dest := []any{&r.EventID, &r.Trigger, &r.Received, &r.Broker, &r.Source, &r.Type, &r.Subscriber, &r.Status, &r.Attempts, &r.LastCode, &r.LastError, &r.Finished, &r.ReplyID, &r.TraceID}
	var blob []byte
	if withEvent {
		dest = append(dest, &blob)
	}
	if err := scan(dest...); err != nil {
		return nil, err
	}
	r.Event = blob
	return &r, nil
}

// EventOutcomes answers Q1: every trigger's outcomes of one event.
func (s *Store) EventOutcomes(ctx context.Context, id string) ([]router.Outcome, error) {
	session := s.session.Load()
	if session == nil {
		return nil, errNoSession
	}
	iter := session.Query(`SELECT `+columns+`, event FROM `+s.cfg.Keyspace+`.outcomes_by_event WHERE event_id = ?`, id).WithContext(ctx).Iter()
	sc := iter.Scanner()
	var out []router.Outcome
	for sc.Next() {
		r, err := scanRecord(sc.Scan, true)
		if err != nil {
			return nil, err
		}
		out = append(out, r.outcome())
	}
	return out, sc.Err()
}

// pageToken continues a trigger query: the bucket reached and Cassandra's paging state in it.
type pageToken struct {
	Bucket int64  `json:"b"`
	State  []byte `json:"s,omitempty"`
}

// TriggerOutcomes answers Q2 and Q3 (and Q4, with events), newest first, walking the trigger's time
// buckets back to Since or the retention horizon.
func (s *Store) TriggerOutcomes(ctx context.Context, q router.OutcomeQuery) ([]router.Outcome, string, error) {
	session := s.session.Load()
	if session == nil {
		return nil, "", errNoSession
	}
	if q.Trigger == (router.TriggerRef{}) {
		return nil, "", router.ErrListNeedsTrigger
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	table, cols := "outcomes_by_trigger", columns
	if q.OnlyFailed {
		table, cols = "failed_by_trigger", columns+", event"
	}
	now := time.Now().UTC()
	tok := pageToken{Bucket: now.Truncate(s.cfg.Bucket).UnixMilli()}
	if q.PageToken != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.PageToken)
		if err != nil || json.Unmarshal(raw, &tok) != nil {
			return nil, "", errors.New("invalid page token")
		}
	}
	oldest := now.Add(-s.cfg.Retention)
	if q.Since.After(oldest) {
		oldest = q.Since
	}
	trigger := q.Trigger.String()
	var out []router.Outcome
	for bucket := time.UnixMilli(tok.Bucket).UTC(); !bucket.Before(oldest.Truncate(s.cfg.Bucket)); bucket = bucket.Add(-s.cfg.Bucket) {
		stmt := `SELECT ` + cols + ` FROM ` + s.cfg.Keyspace + `.` + table + ` WHERE trigger = ? AND bucket = ?`
		args := []any{trigger, bucket}
		if !q.Since.IsZero() {
			stmt += ` AND finished >= ?`
			args = append(args, q.Since)
		}
		iter := session.Query(stmt, args...).WithContext(ctx).PageSize(limit - len(out)).PageState(tok.State).Iter()
		next := iter.PageState()
		sc := iter.Scanner()
		for sc.Next() {
			r, err := scanRecord(sc.Scan, q.OnlyFailed)
			if err != nil {
				return nil, "", err
			}
			// Filters other than trigger and since are applied as the partitions are read: a
			// page may hold fewer than limit outcomes, and its token goes on from there.
			if o := r.outcome(); q.Keeps(&o) {
				out = append(out, o)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, "", err
		}
		tok.State = nil
		if len(next) > 0 {
			tok = pageToken{Bucket: bucket.UnixMilli(), State: next}
			if len(out) >= limit {
				return out, encodeToken(tok), nil
			}
			bucket = bucket.Add(s.cfg.Bucket) // undo the loop's step: this bucket has another page
			continue
		}
		if len(out) >= limit {
			return out, encodeToken(pageToken{Bucket: bucket.Add(-s.cfg.Bucket).UnixMilli()}), nil
		}
	}
	return out, "", nil
}

func encodeToken(t pageToken) string {
	b, _ := json.Marshal(t)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Redriven removes o from its trigger's failed list (Q3/Q4); its history in Q1 and Q2 stays.
func (s *Store) Redriven(ctx context.Context, o *router.Outcome) error {
	session := s.session.Load()
	if session == nil {
		return errNoSession
	}
	finished := o.Finished.UTC().Truncate(time.Millisecond)
	return session.Query(`DELETE FROM `+s.cfg.Keyspace+`.failed_by_trigger WHERE trigger = ? AND bucket = ? AND finished = ? AND event_id = ? AND received = ?`,
		o.Trigger.String(), finished.Truncate(s.cfg.Bucket), finished, o.EventID, o.Received.UTC().Truncate(time.Millisecond)).
		WithContext(ctx).Idempotent(true).Exec()
}

// migrate creates the keyspace and tables when missing (see docs/cassandra.md).
func migrate(session *gocql.Session, cfg *Config) error {
	ks, ttl := cfg.Keyspace, int(cfg.Retention/time.Second)
	shared := `trigger text, bucket timestamp, finished timestamp, event_id text, received timestamp,
		broker text, source text, type text, subscriber text, status text, attempts int, last_code int,
		last_error text, latency_us bigint, reply_id text, trace_id text`
	stmts := []struct{ name, cql string }{
		{"keyspace " + ks, `CREATE KEYSPACE IF NOT EXISTS ` + ks + ` WITH replication = ` + cfg.Replication},
		{"table outcomes_by_event", `CREATE TABLE IF NOT EXISTS ` + ks + `.outcomes_by_event (
			event_id text, trigger text, received timestamp, broker text, source text, type text,
			subscriber text, status text, attempts int, last_code int, last_error text, finished timestamp,
			latency_us bigint, reply_id text, trace_id text, event blob,
			PRIMARY KEY ((event_id), trigger, received)) WITH default_time_to_live = ` + fmt.Sprint(ttl)},
		{"table outcomes_by_trigger", `CREATE TABLE IF NOT EXISTS ` + ks + `.outcomes_by_trigger (` + shared + `,
			PRIMARY KEY ((trigger, bucket), finished, event_id, received))
			WITH CLUSTERING ORDER BY (finished DESC, event_id ASC, received ASC) AND default_time_to_live = ` + fmt.Sprint(ttl)},
		{"table failed_by_trigger", `CREATE TABLE IF NOT EXISTS ` + ks + `.failed_by_trigger (` + shared + `, event blob,
			PRIMARY KEY ((trigger, bucket), finished, event_id, received))
			WITH CLUSTERING ORDER BY (finished DESC, event_id ASC, received ASC) AND default_time_to_live = ` + fmt.Sprint(ttl)},
		{"table webhook_deliveries", `CREATE TABLE IF NOT EXISTS ` + ks + `.webhook_deliveries (key text PRIMARY KEY, state text)`},
		// Each row's TTL is its broker's archive retention (docs/archive.md).
		{"table archive", `CREATE TABLE IF NOT EXISTS ` + ks + `.archive (
			broker text, bucket timestamp, received timestamp, source text, event_id text, event blob,
			PRIMARY KEY ((broker, bucket), received, source, event_id))`},
		{"table replay_runs", `CREATE TABLE IF NOT EXISTS ` + ks + `.replay_runs (
			id text PRIMARY KEY, run text, owner text, heartbeat timestamp) WITH default_time_to_live = 2592000`},
	}
	// Columns added since the tables were first made: added to a keyspace made by an older
	// Switchyard, a no-op (an "already exists" answer) on one made by this one.
	for _, table := range []string{"outcomes_by_event", "outcomes_by_trigger", "failed_by_trigger"} {
		stmts = append(stmts, struct{ name, cql string }{"column " + table + ".trace_id", `ALTER TABLE ` + ks + `.` + table + ` ADD trace_id text`})
	}
	for _, stmt := range stmts {
		if err := session.Query(stmt.cql).Exec(); err != nil {
			if strings.HasPrefix(stmt.name, "column ") && strings.Contains(err.Error(), "exist") {
				continue
			}
			return fmt.Errorf("creating %s: %w", stmt.name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := session.AwaitSchemaAgreement(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for schema agreement: %w", err)
		}
	}
	return nil
}

// gocqlLogger sends gocql's own messages (reconnects, dial errors) to zap instead of the standard
// logger.
type gocqlLogger struct{ l *zap.Logger }

func (g gocqlLogger) Print(v ...any) { g.l.Warn(strings.TrimSpace(fmt.Sprint(v...))) }
func (g gocqlLogger) Printf(format string, v ...any) {
	g.l.Warn(strings.TrimSpace(fmt.Sprintf(format, v...)))
}
func (g gocqlLogger) Println(v ...any) { g.l.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }

var _ router.ResultStore = (*Store)(nil)
