package cassandra

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/config"
)

// Sinks serves the configuration's CassandraSinks on the ingress, at
// /sinks/cassandra/{namespace}/{name}: each event POSTed there (by a trigger, a source, a flow or
// anyone) becomes a row of the sink's table, and is answered 202 only once the row is written at
// the sink's consistency. A value the table cannot take is 400 (not retried: the delivery's
// dead-letter sink gets it, with the reason); Cassandra unavailable or slow is 503 (retried under
// the delivery policy). docs/cassandra-sink.md.
type Sinks struct {
	logger  *zap.Logger
	maxBody func() int64
	rows    *prometheus.CounterVec

	mu    sync.Mutex
	sinks map[string]*sink
}

// NewSinks returns Sinks with none configured; maxBody bounds a request's body (the ingress's
// limit); rows are counted in reg.
func NewSinks(logger *zap.Logger, maxBody func() int64, reg prometheus.Registerer) *Sinks {
	s := &Sinks{logger: logger.Named("cassandra-sink"), maxBody: maxBody, sinks: map[string]*sink{},
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_cassandra_sink_rows_total",
			Help: "Events a CassandraSink was given, by result: written, rejected (a value the table cannot take: 400), failed (Cassandra did not take it: 503)."},
			[]string{"namespace_name", "sink_name", "result"})}
	if reg != nil {
		reg.MustRegister(s.rows)
	}
	return s
}

// Owns reports whether path is a CassandraSink's.
func Owns(path string) bool { return strings.HasPrefix(path, SinkPathPrefix) }

// Apply starts new sinks, restarts changed ones and stops removed ones; store is the result
// store's settings, whose cluster a sink without hosts of its own writes to (nil: none).
func (s *Sinks) Apply(objects []*config.Object, store *Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]*config.Object{}
	for _, o := range objects {
		want[o.Namespace+"/"+o.Name] = o
	}
	for key, k := range s.sinks {
		// Where the manifest sits (file, line) is not a change of the sink: lines moving in an
		// edited file must not restart it.
		if w, ok := want[key]; !ok || !reflect.DeepEqual(w.Spec, k.obj.Spec) || !reflect.DeepEqual(store, k.store) {
			k.close()
			delete(s.sinks, key)
		}
	}
	for key, o := range want {
		if s.sinks[key] != nil {
			continue
		}
		k := &sink{obj: o, spec: o.Spec.(*SinkSpec), store: store, logger: s.logger.With(zap.String("sink", key)), rows: s.rows,
			queue: make(chan *write, o.Spec.(*SinkSpec).Concurrency*4), stopped: make(chan struct{})}
		k.problem.Store(new(string))
		*k.problem.Load() = "starting: connecting to Cassandra"
		ctx, cancel := context.WithCancel(context.Background())
		k.cancel = cancel
		s.sinks[key] = k
		go k.run(ctx)
	}
}

// Has reports whether the CassandraSink namespace/name is configured: the ingress's sender
// authentication answers for an unknown one as for an unknown broker.
func (s *Sinks) Has(namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sinks[namespace+"/"+name] != nil
}

// Close stops every sink.
func (s *Sinks) Close() { s.Apply(nil, nil) }

func (s *Sinks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "a CassandraSink takes events by POST", http.StatusMethodNotAllowed)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, SinkPathPrefix)
	s.mu.Lock()
	k := s.sinks[key]
	s.mu.Unlock()
	if k == nil {
		http.Error(w, "no CassandraSink "+key+" is configured", http.StatusNotFound)
		return
	}
	body, ok := cehttp.ReadBody(w, r, s.maxBody())
	if !ok {
		return
	}
	events, err := cehttp.Decode(r.Header, body)
	if err != nil {
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	code, msg := k.writeEvents(r.Context(), events)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if code >= 300 {
		http.Error(w, msg, code)
		return
	}
	w.WriteHeader(code)
}

// sink is one CassandraSink at work.
type sink struct {
	obj    *config.Object
	spec   *SinkSpec
	store  *Spec
	logger *zap.Logger
	rows   *prometheus.CounterVec
	cancel context.CancelFunc
	done   sync.WaitGroup
	// stopped is closed when the sink is stopped: requests waiting on it are answered 503.
	stopped chan struct{}

	session *gocql.Session
	// table is the checked table, nil until it is; problem says why not (a 503's message).
	table   atomic.Pointer[table]
	problem atomic.Pointer[string]
	queue   chan *write
}

// table is what a row of the sink's table is made of: the mapped columns in order, their types,
// the partition key (to batch rows of one partition), and the statement.
type table struct {
	columns   []string
	types     []cqlType
	partition []int // indexes into columns
	insert    string
	ttl       int
}

// write is one row waiting for a writer.
type write struct {
	values []any
	key    string // the partition key's values, for batching
	done   chan error
}

func (k *sink) at(field string) string {
	return fmt.Sprintf("%s:%d: spec.%s", k.obj.File, k.obj.Line, field)
}

func (k *sink) setProblem(msg string) {
	if p := k.problem.Load(); p == nil || *p != msg {
		k.logger.Error("CassandraSink not ready: its events are answered 503 until it is", zap.String("problem", msg))
	}
	k.problem.Store(&msg)
}

// run connects, checks (or creates) the table, then writes until ctx ends; a problem is retried
// every few seconds (a table created or altered meanwhile is picked up).
func (k *sink) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := k.start(); err != nil {
			k.setProblem(err.Error())
			if !router.Sleep(ctx, 5*time.Second) {
				break
			}
			continue
		}
		k.problem.Store(nil)
		k.logger.Info("CassandraSink ready", zap.String("table", k.spec.Keyspace+"."+k.spec.Table))
		for range k.spec.Concurrency {
			k.done.Add(1)
			go k.writer(ctx)
		}
		<-ctx.Done()
		k.done.Wait()
	}
	if k.session != nil {
		k.session.Close()
	}
}

func (k *sink) close() {
	k.cancel()
	close(k.stopped)
}

// start connects (once) and checks the table, creating it when createTable says so.
func (k *sink) start() error {
	if k.session == nil {
		cfg := Config{Hosts: k.spec.Hosts, Consistency: strings.ToUpper(k.spec.Consistency), DisableHostLookup: true}
		if k.store != nil {
			var err error
			if cfg, err = k.store.Config(k.logger, nil); err != nil {
				return err
			}
			if len(k.spec.Hosts) > 0 {
				cfg.Hosts = k.spec.Hosts
			}
			cfg.Consistency = strings.ToUpper(k.spec.Consistency)
		}
		cfg.Logger = k.logger
		cfg.setDefaults()
		session, err := newCluster(&cfg).CreateSession()
		if err != nil {
			return fmt.Errorf("connecting to Cassandra %v: %w", cfg.Hosts, err)
		}
		k.session = session
	}
	cols, err := k.readColumns()
	if err != nil {
		return err
	}
	if len(cols) == 0 && k.spec.CreateTable != nil {
		if err := k.session.Query(k.createStatement()).Exec(); err != nil {
			return fmt.Errorf("%s: creating table %s.%s: %v", k.at("createTable"), k.spec.Keyspace, k.spec.Table, err)
		}
		if cols, err = k.readColumns(); err != nil {
			return err
		}
	}
	t, err := k.check(cols)
	if err != nil {
		return err
	}
	k.table.Store(t)
	return nil
}

type column struct {
	typ      string
	kind     string // partition_key, clustering, regular, static
	position int
}

func (k *sink) readColumns() (map[string]column, error) {
	iter := k.session.Query(`SELECT column_name, type, kind, position FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?`,
		k.spec.Keyspace, k.spec.Table).Iter()
	out := map[string]column{}
	var name, typ, kind string
	var pos int
	for iter.Scan(&name, &typ, &kind, &pos) {
		out[name] = column{typ: typ, kind: kind, position: pos}
	}
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading the schema of %s.%s: %w", k.spec.Keyspace, k.spec.Table, err)
	}
	return out, nil
}

func (k *sink) createStatement() string {
	ct := k.spec.CreateTable
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s (", k.spec.Keyspace, k.spec.Table)
	for _, col := range sortedKeys(ct.Columns) {
		fmt.Fprintf(&b, "%s %s, ", col, ct.Columns[col])
	}
	pk := ct.PartitionKey
	if len(pk) == 0 {
		pk = k.spec.idColumns()
	}
	fmt.Fprintf(&b, "PRIMARY KEY ((%s)", strings.Join(pk, ", "))
	for _, c := range ct.ClusteringKey {
		fmt.Fprintf(&b, ", %s", c)
	}
	b.WriteString("))")
	return b.String()
}

// check compares the table with the mapping (and createTable's declaration) and prepares the
// statement; every mismatch is named at the sink's file, line and field.
func (k *sink) check(cols map[string]column) (*table, error) {
	if len(cols) == 0 {
		return nil, fmt.Errorf("%s: table %s.%s does not exist (create it, or set createTable)", k.at("table"), k.spec.Keyspace, k.spec.Table)
	}
	var problems []string
	t := &table{}
	for _, name := range sortedKeys(k.spec.Columns) {
		c, ok := cols[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: the table has no column %s", k.at("columns."+name), name))
			continue
		}
		typ, err := parseCQLType(c.typ)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", k.at("columns."+name), err))
			continue
		}
		if ct := k.spec.CreateTable; ct != nil {
			if declared, ok := ct.Columns[name]; ok {
				if want, err := parseCQLType(declared); err == nil && want.String() != typ.String() {
					problems = append(problems, fmt.Sprintf("%s: declared %s, but the table's column is %s", k.at("createTable.columns."+name), want, typ))
				}
			}
		}
		if c.kind == "partition_key" {
			t.partition = append(t.partition, len(t.columns))
		}
		t.columns = append(t.columns, name)
		t.types = append(t.types, typ)
	}
	for _, name := range sortedKeys(cols) {
		c := cols[name]
		if _, mapped := k.spec.Columns[name]; !mapped && (c.kind == "partition_key" || c.kind == "clustering") {
			problems = append(problems, fmt.Sprintf("%s: the table's key column %s is not mapped", k.at("columns"), name))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	marks := strings.TrimSuffix(strings.Repeat("?, ", len(t.columns)), ", ")
	t.insert = fmt.Sprintf("INSERT INTO %s.%s (%s) VALUES (%s)", k.spec.Keyspace, k.spec.Table, strings.Join(t.columns, ", "), marks)
	if k.spec.IfNotExists {
		t.insert += " IF NOT EXISTS"
	}
	if k.spec.TTL != "" {
		d, _ := time.ParseDuration(k.spec.TTL)
		t.ttl = int(d / time.Second)
		t.insert += " USING TTL ?"
	}
	return t, nil
}

// row maps e to the table's values, or says (for a 400) which column could not be made.
func (k *sink) row(t *table, e *event.Event) ([]any, string, error) {
	values := make([]any, len(t.columns), len(t.columns)+1)
	var key strings.Builder
	for i, col := range t.columns {
		path := k.spec.Columns[col]
		v, err := valueAt(e, path)
		switch {
		case errors.Is(err, errMissing) && isOptional(k.spec, col):
			values[i] = gocql.UnsetValue
			continue
		case errors.Is(err, errMissing):
			return nil, "", fmt.Errorf("column %s: %s has no value in event %s", col, path, e.ID())
		case err != nil:
			return nil, "", fmt.Errorf("column %s: %v", col, err)
		}
		if values[i], err = toCQL(v, t.types[i]); err != nil {
			return nil, "", fmt.Errorf("column %s (%s) from %s: %v", col, t.types[i], path, err)
		}
	}
	for _, i := range t.partition {
		fmt.Fprintf(&key, "%v\x00", values[i])
	}
	if t.ttl > 0 {
		values = append(values, t.ttl)
	}
	return values, key.String(), nil
}

func isOptional(s *SinkSpec, col string) bool {
	for _, o := range s.Optional {
		if o == col {
			return true
		}
	}
	return false
}

// writeEvents writes one row per event and returns the status to answer.
func (k *sink) writeEvents(ctx context.Context, events []*event.Event) (int, string) {
	t := k.table.Load()
	if t == nil {
		msg := "CassandraSink not ready"
		if p := k.problem.Load(); p != nil {
			msg += ": " + *p
		}
		k.count("failed", len(events))
		return http.StatusServiceUnavailable, msg
	}
	writes := make([]*write, 0, len(events))
	for _, e := range events {
		values, key, err := k.row(t, e)
		if err != nil {
			k.count("rejected", len(events))
			return http.StatusBadRequest, err.Error()
		}
		writes = append(writes, &write{values: values, key: key, done: make(chan error, 1)})
	}
	// A request stops waiting when it ends, or when the sink is reconfigured (its writers stop).
	abandon := func() (int, string) {
		k.count("failed", len(events))
		if ctx.Err() != nil {
			return http.StatusServiceUnavailable, "the request ended before the row was written"
		}
		return http.StatusServiceUnavailable, "the CassandraSink was reconfigured: send the event again"
	}
	for _, w := range writes {
		select {
		case k.queue <- w:
		case <-ctx.Done():
			return abandon()
		case <-k.stopped:
			return abandon()
		}
	}
	for _, w := range writes {
		var err error
		select {
		case err = <-w.done:
		case <-ctx.Done():
			return abandon()
		case <-k.stopped:
			return abandon()
		}
		if err != nil {
			code := writeErrorCode(err)
			k.count(map[bool]string{true: "rejected", false: "failed"}[code == http.StatusBadRequest], len(events))
			return code, fmt.Sprintf("writing to %s.%s: %v", k.spec.Keyspace, k.spec.Table, err)
		}
	}
	k.count("written", len(events))
	return http.StatusAccepted, ""
}

func (k *sink) count(result string, n int) {
	k.rows.WithLabelValues(k.obj.Namespace, k.obj.Name, result).Add(float64(n))
}

// maxBatch bounds the rows of one partition written in one unlogged batch.
const maxBatch = 32

// writer takes rows off the queue, and with them every row already waiting (up to maxBatch):
// rows of one partition go in one unlogged batch, one round trip for all.
func (k *sink) writer(ctx context.Context) {
	defer k.done.Done()
	t := k.table.Load()
	consistency := gocql.ParseConsistency(strings.ToUpper(k.spec.Consistency))
	for {
		var first *write
		select {
		case <-ctx.Done():
			return
		case first = <-k.queue:
		}
		batch := []*write{first}
	gather:
		for len(batch) < maxBatch && !k.spec.IfNotExists {
			select {
			case w := <-k.queue:
				batch = append(batch, w)
			default:
				break gather
			}
		}
		byPartition := map[string][]*write{}
		for _, w := range batch {
			byPartition[w.key] = append(byPartition[w.key], w)
		}
		for _, group := range byPartition {
			err := k.exec(t, consistency, group)
			if err != nil && len(group) > 1 && writeErrorCode(err) == http.StatusBadRequest {
				// One row Cassandra refuses must not fail its neighbours: each alone.
				for _, w := range group {
					w.done <- k.exec(t, consistency, []*write{w})
				}
				continue
			}
			for _, w := range group {
				w.done <- err
			}
		}
	}
}

func (k *sink) exec(t *table, consistency gocql.Consistency, group []*write) error {
	// Not any one request's context: the batch carries other requests' rows too.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(group) == 1 {
		q := k.session.Query(t.insert, group[0].values...).Consistency(consistency).WithContext(ctx)
		if k.spec.IfNotExists {
			_, err := q.MapScanCAS(map[string]any{}) // not applied: the row was there, as intended
			return err
		}
		return q.Exec()
	}
	b := k.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	b.SetConsistency(consistency)
	for _, w := range group {
		b.Query(t.insert, w.values...)
	}
	return k.session.ExecuteBatch(b)
}

// writeErrorCode is what a failed write answers: 400 when Cassandra refused the row itself
// (retrying cannot help), else 503.
func writeErrorCode(err error) int {
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeInvalid, gocql.ErrCodeSyntax:
			return http.StatusBadRequest
		}
	}
	return http.StatusServiceUnavailable
}
