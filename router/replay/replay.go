// Package replay runs replays of brokers' archived events (docs/archive.md): a run reads a time
// range of a broker's archive in chunks and hands each event to the broker, addressed to the
// named triggers only and marked with the run's id; a dry run judges the same range by the
// current and a candidate configuration's filters, and delivers nothing.
package replay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/filter"
)

// Deliverer hands a replayed event to a broker's triggers; broker.Router implements it.
type Deliverer interface {
	// CanReplay checks that broker ref exists and that only are triggers of it.
	CanReplay(ref router.BrokerRef, only []router.TriggerRef) error
	Replay(ctx context.Context, ref router.BrokerRef, only []router.TriggerRef, e *event.Event, observe func(router.Status), done func()) (int, error)
}

// RunStore keeps runs across restarts (the Cassandra store); without one a run lives in its
// process only.
type RunStore interface {
	// CreateRun stores a new run (JSON) as owner's.
	CreateRun(ctx context.Context, id string, run []byte, owner string) error
	// SaveRun stores run (JSON) and renews owner's claim, if owner still holds it: owned is false
	// when another process has taken the run over.
	SaveRun(ctx context.Context, id string, run []byte, owner string) (owned bool, err error)
	// ClaimRuns takes over, for owner, the stored runs whose owner has not saved them for
	// staleAfter, and returns them (JSON); a run is claimed by one process only.
	ClaimRuns(ctx context.Context, owner string, staleAfter time.Duration) ([][]byte, error)
}

// Spec is what to replay.
type Spec struct {
	Broker router.BrokerRef
	// Triggers receive the events (their filters still apply); empty with AllTriggers: every
	// trigger of the broker.
	Triggers    []router.TriggerRef
	AllTriggers bool
	From, To    time.Time
}

// Run states.
const (
	StateRunning   = "running"
	StateDone      = "done"
	StateCancelled = "cancelled"
	StateFailed    = "failed"
)

// Run is a replay's progress, as the admin API shows it.
type Run struct {
	ID          string    `json:"id"`
	Broker      string    `json:"broker"`
	Triggers    []string  `json:"triggers,omitempty"`
	AllTriggers bool      `json:"allTriggers,omitempty"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	State       string    `json:"state"`
	Error       string    `json:"error,omitempty"`
	// Read counts the events read from the archive; NotMatching those no trigger of the run took;
	// Delivered and Failed count the triggers' final outcomes (failed: dead-lettered or not
	// delivered).
	Read        int64     `json:"read"`
	Delivered   int64     `json:"delivered"`
	Failed      int64     `json:"failed"`
	NotMatching int64     `json:"notMatching"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished,omitzero"`
	// Position is the arrival time of the last event whose outcomes are final; Checkpoint the
	// archive's place after it (a resumed run continues from there).
	Position   time.Time         `json:"position,omitzero"`
	Checkpoint router.Checkpoint `json:"checkpoint,omitempty"`
	Resumed    int               `json:"resumed,omitempty"`
	// PerSecond is the events read per second; Remaining estimates the time left from the
	// share of the time range read.
	PerSecond float64 `json:"perSecond"`
	Remaining string  `json:"remaining,omitempty"`
}

// Options configure a Manager.
type Options struct {
	Logger  *zap.Logger
	Deliver Deliverer
	// Reader returns the archive of a broker (router.ErrNoArchive when it keeps none).
	Reader func(router.BrokerRef) (router.ArchiveReader, error)
	Store  RunStore
	// Owner names this process in the RunStore.
	Owner string
	// Filters returns the filters of a broker's triggers, by trigger name, as served now (for dry
	// runs; a nil filter matches everything).
	Filters func(router.BrokerRef) (map[string]filter.Filter, error)
}

// chunkSize is how many events a run reads before waiting for their outcomes.
const chunkSize = 500

// staleAfter is how long a running run's owner may go without saving it before another process
// takes it over; heartbeat is how often owners save their running runs.
const (
	staleAfter = 30 * time.Second
	heartbeat  = 10 * time.Second
)

// Manager starts, follows and cancels runs.
type Manager struct {
	o Options
	// dryRuns bounds the dry runs at once: each reads a range of the archive.
	dryRuns chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	runs    map[string]*run
	wg      sync.WaitGroup
}

type run struct {
	m      *Manager
	spec   Spec
	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	state  Run
	// counters the outcomes update from delivery goroutines
	delivered, failed atomic.Int64
	// atCheckpoint are the counters when the checkpoint last moved: what is stored, so that a
	// resumed run, which sends the chunk after the checkpoint again, does not count it twice.
	atCheckpoint counts
	// stored: the state as it is now is in the RunStore (a final state is saved until it is);
	// lost: another process took the run over.
	stored, lost bool
}

type counts struct{ read, delivered, failed, notMatching int64 }

// New returns a Manager; Start resumes stored runs.
func New(o Options) *Manager {
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{o: o, ctx: ctx, cancel: cancel, runs: map[string]*run{}, dryRuns: make(chan struct{}, maxDryRuns)}
}

// Resume takes over the stored runs of processes that stopped (a restart mid-run) and continues
// each from its checkpoint; from then on, every heartbeat, it renews this process's running runs
// and takes over those another process left (a run is stale once its owner has not saved it for
// staleAfter).
func (m *Manager) Resume() {
	if m.o.Store == nil {
		return
	}
	m.claim()
	m.wg.Add(1)
	go m.keepClaimed()
}

// claim takes over the stale runs in the store and resumes them.
func (m *Manager) claim() {
	ctx, cancel := context.WithTimeout(m.ctx, 10*time.Second)
	stored, err := m.o.Store.ClaimRuns(ctx, m.o.Owner, staleAfter)
	cancel()
	if err != nil && m.ctx.Err() == nil {
		m.o.Logger.Warn("replay runs of stopped processes not taken over yet: the run store did not answer", zap.Error(err))
	}
	for _, b := range stored {
		var st Run
		if err := json.Unmarshal(b, &st); err != nil || st.State != StateRunning {
			continue
		}
		m.mu.Lock()
		_, here := m.runs[st.ID]
		m.mu.Unlock()
		if here {
			continue // still running in this process (a save that was late, not a stopped owner)
		}
		spec := Spec{From: st.From, To: st.To, AllTriggers: st.AllTriggers}
		var ok bool
		if spec.Broker, ok = router.ParseRef(st.Broker); !ok {
			continue
		}
		for _, t := range st.Triggers {
			if ref, ok := router.ParseRef(t); ok {
				spec.Triggers = append(spec.Triggers, router.TriggerRef(ref))
			}
		}
		st.Resumed++
		m.o.Logger.Info("replay taken over from a stopped process: resumed from its checkpoint", zap.String("replay", st.ID), zap.Time("position", st.Position))
		m.mu.Lock()
		r := m.add(spec, st)
		m.mu.Unlock()
		r.save()
		m.start(r)
	}
}

// keepClaimed saves the running runs every heartbeat, so no other process takes them over.
func (m *Manager) keepClaimed() {
	defer m.wg.Done()
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var due []*run
		for _, r := range m.runs {
			r.mu.Lock()
			if !r.lost && (r.state.State == StateRunning || !r.stored) {
				due = append(due, r)
			}
			r.mu.Unlock()
		}
		m.mu.Unlock()
		for _, r := range due {
			r.save()
		}
		m.claim()
	}
}

// runningLocked counts the running runs; m.mu is held.
func (m *Manager) runningLocked() int {
	n := 0
	for _, r := range m.runs {
		r.mu.Lock()
		if r.state.State == StateRunning {
			n++
		}
		r.mu.Unlock()
	}
	return n
}

// ErrBadSpec marks a replay request that cannot be run as asked (a 400).
var ErrBadSpec = errors.New("bad replay")

// maxRunning bounds the runs a process runs at once: each reads its archive and shares its
// triggers' lanes with live traffic.
const maxRunning = 8

// maxDryRuns bounds the dry runs a process makes at once.
const maxDryRuns = 2

// ErrBusy: the process runs as many replays (or dry runs) as it takes at once (a 429).
var ErrBusy = errors.New("busy")

// Start starts a run of spec and returns its first state. To is at most now: events accepted after
// the run starts are live traffic, not history.
func (m *Manager) Start(spec Spec) (Run, error) {
	now := time.Now()
	if spec.To.IsZero() || spec.To.After(now) {
		spec.To = now
	}
	switch {
	case spec.From.IsZero():
		return Run{}, fmt.Errorf("%w: from is required (an RFC 3339 time)", ErrBadSpec)
	case !spec.From.Before(spec.To):
		return Run{}, fmt.Errorf("%w: from (%s) must be before to (%s)", ErrBadSpec, spec.From.Format(time.RFC3339), spec.To.Format(time.RFC3339))
	case len(spec.Triggers) == 0 && !spec.AllTriggers:
		return Run{}, fmt.Errorf("%w: name the triggers to replay to (trigger=NS/NAME, repeatable), or allTriggers=true to re-fan to every trigger of the broker", ErrBadSpec)
	case len(spec.Triggers) > 0 && spec.AllTriggers:
		return Run{}, fmt.Errorf("%w: triggers and allTriggers exclude each other", ErrBadSpec)
	}
	if _, err := m.o.Reader(spec.Broker); err != nil {
		return Run{}, err
	}
	// The triggers are checked now, not at the first event: a typo must not start a run.
	if err := m.o.Deliver.CanReplay(spec.Broker, spec.Triggers); err != nil {
		return Run{}, err
	}
	st := Run{ID: newID(), Broker: spec.Broker.String(), AllTriggers: spec.AllTriggers, From: spec.From, To: spec.To, State: StateRunning, Started: now}
	for _, t := range spec.Triggers {
		st.Triggers = append(st.Triggers, t.String())
	}
	m.mu.Lock()
	if m.runningLocked() >= maxRunning {
		m.mu.Unlock()
		return Run{}, fmt.Errorf("%w: %d replays are running in this process already: wait for one to end, or cancel one", ErrBusy, maxRunning)
	}
	r := m.add(spec, st)
	m.mu.Unlock()
	if m.o.Store != nil {
		b, _ := json.Marshal(r.snapshot())
		ctx, cancel := context.WithTimeout(m.ctx, 5*time.Second)
		err := m.o.Store.CreateRun(ctx, st.ID, b, m.o.Owner)
		cancel()
		if err != nil {
			m.mu.Lock()
			delete(m.runs, st.ID)
			m.mu.Unlock()
			return Run{}, fmt.Errorf("%w: the replay could not be stored, so it would not survive a restart: %v", router.ErrUnavailable, err)
		}
		r.stored = true
	}
	m.start(r)
	return r.snapshot(), nil
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "rp-" + time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b)
}

// maxKept bounds the ended runs a process remembers for GET; the oldest go first.
const maxKept = 100

// add makes the run of spec in state st and files it; m.mu is held. Ended runs past maxKept are
// forgotten, oldest first.
func (m *Manager) add(spec Spec, st Run) *run {
	ctx, cancel := context.WithCancel(m.ctx)
	r := &run{m: m, spec: spec, cancel: cancel, state: st, ctx: ctx,
		atCheckpoint: counts{st.Read, st.Delivered, st.Failed, st.NotMatching}}
	r.delivered.Store(st.Delivered)
	r.failed.Store(st.Failed)
	m.runs[st.ID] = r
	var ended []*run
	for _, o := range m.runs {
		o.mu.Lock()
		if o.state.State != StateRunning && o.stored {
			ended = append(ended, o)
		}
		o.mu.Unlock()
	}
	if len(ended) > maxKept {
		sort.Slice(ended, func(i, j int) bool { return ended[i].state.Finished.Before(ended[j].state.Finished) })
		for _, o := range ended[:len(ended)-maxKept] {
			delete(m.runs, o.state.ID)
		}
	}
	return r
}

// start runs r in the background.
func (m *Manager) start(r *run) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		r.execute(r.ctx)
	}()
}

// Get returns run id's state.
func (m *Manager) Get(id string) (Run, bool) {
	m.mu.Lock()
	r := m.runs[id]
	m.mu.Unlock()
	if r == nil {
		return Run{}, false
	}
	return r.snapshot(), true
}

// List returns every run this process knows, newest first.
func (m *Manager) List() []Run {
	m.mu.Lock()
	out := make([]Run, 0, len(m.runs))
	for _, r := range m.runs {
		out = append(out, r.snapshot())
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Started.After(out[j].Started) })
	return out
}

// Cancel stops run id: what is in flight finishes, nothing more is read.
func (m *Manager) Cancel(id string) (Run, bool) {
	m.mu.Lock()
	r := m.runs[id]
	m.mu.Unlock()
	if r == nil {
		return Run{}, false
	}
	r.cancel()
	return r.snapshot(), true
}

// Close stops every run where it is (a resumable place: their stored state stays running, for the
// next process to take over) and waits for them.
func (m *Manager) Close() {
	m.cancel()
	m.wg.Wait()
}

func (r *run) snapshot() Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.state
	st.Delivered, st.Failed = r.delivered.Load(), r.failed.Load()
	if st.State == StateRunning {
		elapsed := time.Since(st.Started).Seconds()
		if elapsed > 0 {
			st.PerSecond = float64(st.Read) / elapsed
		}
		if span := st.To.Sub(st.From); span > 0 && !st.Position.IsZero() {
			done := float64(st.Position.Sub(st.From)) / float64(span)
			if done > 0 && done < 1 {
				st.Remaining = (time.Duration(elapsed/done*(1-done)) * time.Second).Round(time.Second).String()
			}
		}
	}
	return st
}

// save stores the run's state, with the counters as of its checkpoint while it runs. When another
// process has taken the run over (this one could not save it for staleAfter), this one stops it.
func (r *run) save() {
	if r.m.o.Store == nil {
		return
	}
	st := r.snapshot()
	r.mu.Lock()
	if st.State == StateRunning {
		c := r.atCheckpoint
		st.Read, st.Delivered, st.Failed, st.NotMatching = c.read, c.delivered, c.failed, c.notMatching
	}
	r.mu.Unlock()
	b, _ := json.Marshal(st)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	owned, err := r.m.o.Store.SaveRun(ctx, st.ID, b, r.m.o.Owner)
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.stored = false
		r.m.o.Logger.Warn("replay progress not stored yet: it is tried again; a restart meanwhile resumes it from an earlier checkpoint", zap.String("replay", st.ID), zap.Error(err))
	case !owned:
		r.lost = true
		r.cancel()
		r.m.o.Logger.Warn("replay taken over by another process (this one could not store its progress for 30 s): stopped here", zap.String("replay", st.ID))
	default:
		r.stored = r.state.State == st.State
	}
}

func (r *run) finish(state string, err error) {
	r.mu.Lock()
	r.state.State, r.state.Finished = state, time.Now()
	r.stored = false
	if err != nil {
		r.state.Error = err.Error()
	}
	r.mu.Unlock()
	r.save()
	r.m.o.Logger.Info("replay ended", zap.String("replay", r.state.ID), zap.String("state", state), zap.Error(err))
}

// errChunkFull stops a read once a chunk is full.
var errChunkFull = errors.New("chunk full")

// execute reads the archive a chunk at a time and replays each chunk, waiting for its outcomes
// before the checkpoint moves past it.
func (r *run) execute(ctx context.Context) {
	reader, err := r.m.o.Reader(r.spec.Broker)
	if err != nil {
		r.finish(StateFailed, err)
		return
	}
	chunk := make([]router.ArchivedEvent, 0, chunkSize)
	for {
		if ctx.Err() != nil {
			r.stopped()
			return
		}
		chunk = chunk[:0]
		q := router.ArchiveQuery{Broker: r.spec.Broker, From: r.spec.From, To: r.spec.To, After: r.snapshot().Checkpoint}
		err := reader.ReadArchive(ctx, q, func(ae router.ArchivedEvent) error {
			chunk = append(chunk, ae)
			if len(chunk) == chunkSize {
				return errChunkFull
			}
			return nil
		})
		if err != nil && !errors.Is(err, errChunkFull) {
			if ctx.Err() != nil {
				r.stopped()
				return
			}
			r.finish(StateFailed, fmt.Errorf("reading the archive: %w", err))
			return
		}
		if len(chunk) == 0 {
			r.finish(StateDone, nil)
			return
		}
		var inFlight sync.WaitGroup
		sent := 0
		for i := range chunk {
			if ctx.Err() != nil {
				break // cancelled: what is in flight finishes, the rest of the chunk is not sent
			}
			e := chunk[i].Event
			e.SetExtension(router.ExtReplay, r.state.ID)
			inFlight.Add(1)
			// The process's context, not the run's: a cancel lets what was handed over finish;
			// the process stopping must not wait for room in a trigger's full lane.
			n, err := r.m.o.Deliver.Replay(r.m.ctx, r.spec.Broker, r.spec.Triggers, e, r.observe, inFlight.Done)
			if err != nil {
				inFlight.Done()
				if r.m.ctx.Err() != nil {
					return // the process stops: the stored state resumes from the last checkpoint
				}
				inFlight.Wait()
				r.finish(StateFailed, err)
				return
			}
			sent++
			r.mu.Lock()
			r.state.Read++
			if n == 0 {
				r.state.NotMatching++
			}
			r.mu.Unlock()
		}
		final := make(chan struct{})
		go func() { inFlight.Wait(); close(final) }()
		select {
		case <-final:
		case <-r.m.ctx.Done():
			return // the process stops: the chunk is sent again by the process that resumes the run
		}
		if sent < len(chunk) {
			r.stopped()
			return
		}
		last := chunk[len(chunk)-1]
		r.mu.Lock()
		r.state.Checkpoint, r.state.Position = last.At, last.Received
		r.atCheckpoint = counts{r.state.Read, r.delivered.Load(), r.failed.Load(), r.state.NotMatching}
		r.mu.Unlock()
		r.save()
	}
}

// stopped ends a run whose context ended: cancelled by a person, or left for the next process
// when this one stops.
func (r *run) stopped() {
	if r.m.ctx.Err() != nil {
		return // the process stops: the run stays running in the store, to be resumed
	}
	r.mu.Lock()
	lost := r.lost
	if lost {
		r.state.State, r.state.Finished = StateFailed, time.Now()
		r.state.Error = "another process took this replay over (this one could not store its progress for 30 s): follow it there"
	}
	r.mu.Unlock()
	if !lost {
		r.finish(StateCancelled, nil)
	}
}

func (r *run) observe(s router.Status) {
	if s == router.StatusDelivered {
		r.delivered.Add(1)
	} else {
		r.failed.Add(1)
	}
}

// Filtered is r reading only the events f matches (a Kafka-class broker's archive filter, applied
// when its topic is read back).
func Filtered(r router.ArchiveReader, f filter.Filter) router.ArchiveReader {
	if f == nil {
		return r
	}
	return filteredReader{r, f}
}

type filteredReader struct {
	r router.ArchiveReader
	f filter.Filter
}

func (fr filteredReader) ReadArchive(ctx context.Context, q router.ArchiveQuery, fn func(router.ArchivedEvent) error) error {
	return fr.r.ReadArchive(ctx, q, func(ae router.ArchivedEvent) error {
		if !fr.f.Match(ae.Event) {
			return nil
		}
		return fn(ae)
	})
}

// Clamped is r reading nothing older than retention before now: an archive that keeps events for
// retention has none older, and a range starting years ago would otherwise be read bucket by
// empty bucket.
func Clamped(r router.ArchiveReader, retention time.Duration) router.ArchiveReader {
	return clampedReader{r, retention}
}

type clampedReader struct {
	r         router.ArchiveReader
	retention time.Duration
}

func (c clampedReader) ReadArchive(ctx context.Context, q router.ArchiveQuery, fn func(router.ArchivedEvent) error) error {
	if oldest := time.Now().Add(-c.retention); q.From.Before(oldest) {
		q.From = oldest
	}
	return c.r.ReadArchive(ctx, q, fn)
}
