package cassandra

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/replay"
)

// The archive of in-memory brokers (docs/archive.md): accepted events, as CloudEvents JSON, by
// broker and hour of arrival, written in batches after the producer's 202 and read back in the
// order they arrived.

const (
	// archiveBufferBytes bounds the events waiting to be archived: past it, new ones are dropped
	// (counted) rather than held in memory while Cassandra is slow or down.
	archiveBufferBytes = 64 << 20
	// archiveBatchRows bounds one unlogged batch (rows of one partition).
	archiveBatchRows = 100
	// archiveFlushEvery is how long an event may wait for a batch to fill.
	archiveFlushEvery = 50 * time.Millisecond
	// archiveBucket is the time span of one archive partition.
	archiveBucket = time.Hour
)

type archiveRow struct {
	broker    string
	retention time.Duration
	rec       router.ArchiveRecord
}

// archiver buffers archive rows for its writer goroutine.
type archiver struct {
	s       *Store
	mu      sync.Mutex
	rows    []archiveRow
	bytes   int
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}
	// dropWarned and failWarned pace the warnings about dropped events and failed writes to one a
	// minute each; failWarned is the writer goroutine's own.
	dropWarned time.Time
	failWarned time.Time
	written    prometheus.Counter
	dropped    prometheus.Counter
	failed     prometheus.Counter
}

func newArchiver(s *Store, reg prometheus.Registerer) *archiver {
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_archive_events_total",
		Help: "Accepted events of brokers with an archive: written to Cassandra, or dropped because the archive's buffer was full."}, []string{"result"})
	a := &archiver{s: s, wake: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{}),
		written: events.WithLabelValues("written"), dropped: events.WithLabelValues("dropped"),
		failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "switchyard_archive_write_errors_total", Help: "Archive batches Cassandra refused; they are tried again."})}
	if reg != nil {
		reg.MustRegister(events, a.failed)
	}
	go a.run()
	return a
}

// Keep queues recs for the archive of broker ref; it never blocks. What does not fit in the
// buffer is dropped and counted.
func (s *Store) Keep(ref router.BrokerRef, retention time.Duration, recs []router.ArchiveRecord) {
	a := s.archive
	a.mu.Lock()
	dropped := 0
	for _, rec := range recs {
		if a.bytes+len(rec.JSON) > archiveBufferBytes {
			dropped++
			continue
		}
		a.rows = append(a.rows, archiveRow{broker: ref.String(), retention: retention, rec: rec})
		a.bytes += len(rec.JSON)
	}
	warn := dropped > 0 && time.Since(a.dropWarned) > time.Minute
	if warn {
		a.dropWarned = time.Now()
	}
	a.mu.Unlock()
	if dropped > 0 {
		a.dropped.Add(float64(dropped))
		if warn {
			s.logger.Warn("events not archived: the archive's buffer is full (Cassandra slow or down); switchyard_archive_events_total{result=\"dropped\"} counts them",
				zap.String("broker", ref.String()), zap.Int("dropped", dropped))
		}
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *archiver) run() {
	defer close(a.stopped)
	tick := time.NewTicker(archiveFlushEvery)
	defer tick.Stop()
	for {
		select {
		case <-a.done:
			a.flush(true)
			return
		case <-tick.C:
		case <-a.wake:
			a.mu.Lock()
			n := len(a.rows)
			a.mu.Unlock()
			if n < archiveBatchRows {
				continue // the tick writes it; a batch fills meanwhile
			}
		}
		a.flush(false)
	}
}

// flush writes what is buffered, a partition's rows per batch. The rows stay counted against the
// buffer's bound until written: when a batch fails, it and the rows after it go back to the front of
// the buffer, to be tried again after a pause (when closing they are given up and counted dropped),
// so the buffer never holds more than archiveBufferBytes however long Cassandra is slow.
func (a *archiver) flush(closing bool) {
	a.mu.Lock()
	rows := a.rows
	a.rows = nil
	a.mu.Unlock()
	if len(rows) == 0 {
		return
	}
	session := a.s.session.Load()
	written, writtenBytes := 0, 0
	var failure error
	for written < len(rows) {
		key := partitionOf(&rows[written])
		end := written + 1
		for end < len(rows) && end-written < archiveBatchRows && partitionOf(&rows[end]) == key {
			end++
		}
		if failure = a.write(session, rows[written:end]); failure != nil {
			break
		}
		for _, r := range rows[written:end] {
			writtenBytes += len(r.rec.JSON)
		}
		a.written.Add(float64(end - written))
		written = end
	}
	rest := rows[written:]
	a.mu.Lock()
	a.bytes -= writtenBytes
	if len(rest) > 0 && !closing {
		a.rows = append(rest, a.rows...)
	} else if len(rest) > 0 {
		for _, r := range rest {
			a.bytes -= len(r.rec.JSON)
		}
	}
	a.mu.Unlock()
	if failure == nil {
		return
	}
	a.failed.Inc()
	if closing {
		a.dropped.Add(float64(len(rest)))
		a.s.logger.Warn("archive rows not written before the process stopped", zap.Int("events", len(rest)), zap.Error(failure))
		return
	}
	if time.Since(a.failWarned) > time.Minute {
		a.failWarned = time.Now()
		a.s.logger.Warn("archive batch not written: it and the rows after it are tried again every second; switchyard_archive_write_errors_total counts the tries",
			zap.Int("waiting", len(rest)), zap.Error(failure))
	}
	select {
	case <-a.done:
	case <-time.After(time.Second): // Cassandra refused: give it a moment
	}
}

type partitionKey struct {
	broker string
	bucket int64
}

func partitionOf(r *archiveRow) partitionKey {
	return partitionKey{r.broker, r.rec.Received.Truncate(archiveBucket).UnixMilli()}
}

func (a *archiver) write(session *gocql.Session, rows []archiveRow) error {
	if session == nil {
		return fmt.Errorf("not connected to cassandra yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*a.s.cfg.Timeout)
	defer cancel()
	stmt := `INSERT INTO ` + a.s.cfg.Keyspace + `.archive (broker, bucket, received, source, event_id, event) VALUES (?, ?, ?, ?, ?, ?) USING TTL ?`
	if len(rows) == 1 {
		r := rows[0]
		return session.Query(stmt, r.broker, r.rec.Received.Truncate(archiveBucket), r.rec.Received, r.rec.Source, r.rec.ID, r.rec.JSON, ttlSeconds(r.retention)).WithContext(ctx).Exec()
	}
	b := session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	for _, r := range rows {
		b.Query(stmt, r.broker, r.rec.Received.Truncate(archiveBucket), r.rec.Received, r.rec.Source, r.rec.ID, r.rec.JSON, ttlSeconds(r.retention))
	}
	return session.ExecuteBatch(b)
}

// close writes what is buffered (one try) and stops the writer.
func (a *archiver) close() {
	select {
	case <-a.done:
	default:
		close(a.done)
	}
	<-a.stopped
}

// archivePlace is a Checkpoint of the Cassandra archive: the clustering key of the last event read.
type archivePlace struct {
	Received int64  `json:"r"` // Unix milliseconds, as Cassandra keeps it
	Source   string `json:"s"`
	ID       string `json:"i"`
}

// ReadArchive reads broker q.Broker's archived events received in [q.From, q.To), hour by hour,
// each hour in the order of arrival.
func (s *Store) ReadArchive(ctx context.Context, q router.ArchiveQuery, fn func(router.ArchivedEvent) error) error {
	session := s.session.Load()
	if session == nil {
		return fmt.Errorf("%w: not connected to cassandra yet", router.ErrUnavailable)
	}
	var after *archivePlace
	if q.After != "" {
		after = &archivePlace{}
		if err := json.Unmarshal([]byte(q.After), after); err != nil {
			return fmt.Errorf("checkpoint %q is not one of the Cassandra archive's: %w", q.After, err)
		}
	}
	broker := q.Broker.String()
	first := q.From.Truncate(archiveBucket)
	if after != nil {
		first = time.UnixMilli(after.Received).Truncate(archiveBucket)
	}
	for bucket := first; bucket.Before(q.To); bucket = bucket.Add(archiveBucket) {
		var iter *gocql.Iter
		sel := `SELECT received, source, event_id, event FROM ` + s.cfg.Keyspace + `.archive WHERE broker = ? AND bucket = ? AND `
		if after != nil && time.UnixMilli(after.Received).Truncate(archiveBucket).Equal(bucket) {
			iter = session.Query(sel+`(received, source, event_id) > (?, ?, ?) AND (received) < (?)`, broker, bucket,
				time.UnixMilli(after.Received), after.Source, after.ID, q.To).WithContext(ctx).PageSize(500).Iter()
		} else {
			iter = session.Query(sel+`(received) >= (?) AND (received) < (?)`, broker, bucket, q.From, q.To).WithContext(ctx).PageSize(500).Iter()
		}
		var received time.Time
		var source, id string
		var blob []byte
		for iter.Scan(&received, &source, &id, &blob) {
			e := event.New()
			if err := e.UnmarshalJSON(blob); err != nil {
				s.logger.Warn("archived event cannot be decoded: skipped", zap.String("event_id", id), zap.Error(err))
				continue
			}
			place, _ := json.Marshal(archivePlace{Received: received.UnixMilli(), Source: source, ID: id})
			if err := fn(router.ArchivedEvent{Event: &e, Received: received, At: router.Checkpoint(place)}); err != nil {
				_ = iter.Close()
				return err
			}
		}
		if err := iter.Close(); err != nil {
			return fmt.Errorf("reading the archive of %s: %w", broker, err)
		}
	}
	return nil
}

// The Store keeps replay runs across restarts (router/replay).
var _ replay.RunStore = (*Store)(nil)

// CreateRun stores the new replay run id (JSON) as owner's.
func (s *Store) CreateRun(ctx context.Context, id string, run []byte, owner string) error {
	session := s.session.Load()
	if session == nil {
		return fmt.Errorf("%w: not connected to cassandra yet", router.ErrUnavailable)
	}
	return session.Query(`INSERT INTO `+s.cfg.Keyspace+`.replay_runs (id, run, owner, heartbeat) VALUES (?, ?, ?, ?)`,
		id, string(run), owner, time.Now()).WithContext(ctx).Exec()
}

// SaveRun stores replay run id (JSON) and renews owner's claim, if owner still holds the run (a
// lightweight transaction): owned is false once another process has taken it over.
func (s *Store) SaveRun(ctx context.Context, id string, run []byte, owner string) (bool, error) {
	session := s.session.Load()
	if session == nil {
		return false, fmt.Errorf("%w: not connected to cassandra yet", router.ErrUnavailable)
	}
	return session.Query(`UPDATE `+s.cfg.Keyspace+`.replay_runs SET run = ?, heartbeat = ? WHERE id = ? IF owner = ?`,
		string(run), time.Now(), id, owner).WithContext(ctx).SerialConsistency(gocql.Serial).MapScanCAS(map[string]any{})
}

// ClaimRuns takes over, for owner, the stored runs still running whose owner has not saved them for
// staleAfter: a lightweight transaction on the previous owner makes each claim one process's.
func (s *Store) ClaimRuns(ctx context.Context, owner string, staleAfter time.Duration) ([][]byte, error) {
	session := s.session.Load()
	if session == nil {
		return nil, fmt.Errorf("%w: not connected to cassandra yet", router.ErrUnavailable)
	}
	iter := session.Query(`SELECT id, run, owner, heartbeat FROM ` + s.cfg.Keyspace + `.replay_runs`).WithContext(ctx).PageSize(500).Iter()
	type stored struct {
		id, run, owner string
		heartbeat      time.Time
	}
	var stale []stored
	var st stored
	for iter.Scan(&st.id, &st.run, &st.owner, &st.heartbeat) {
		var probe struct {
			State string `json:"state"`
		}
		if json.Unmarshal([]byte(st.run), &probe) == nil && probe.State == "running" && time.Since(st.heartbeat) > staleAfter {
			stale = append(stale, st)
		}
	}
	if err := iter.Close(); err != nil {
		return nil, err
	}
	var out [][]byte
	for _, r := range stale {
		applied, err := session.Query(`UPDATE `+s.cfg.Keyspace+`.replay_runs SET owner = ?, heartbeat = ? WHERE id = ? IF owner = ?`,
			owner, time.Now(), r.id, r.owner).WithContext(ctx).SerialConsistency(gocql.Serial).MapScanCAS(map[string]any{})
		if err != nil {
			return out, err
		}
		if applied {
			out = append(out, []byte(r.run))
		}
	}
	return out, nil
}
