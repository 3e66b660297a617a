package cassandra

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// journal is an append-only file of records that could not be written to Cassandra yet. Appends
// and truncation happen under mu; the replayer reads what was appended before it started without
// holding mu, so appends go on while it writes to Cassandra.
//
// Lock order: journal.mu is never held while calling Cassandra.
type journal struct {
	path     string
	maxBytes int64

	mu       sync.Mutex
	space    *sync.Cond // signalled when the journal shrinks
	f        *os.File
	size     int64 // bytes in the file
	replayed int64 // bytes from the start already written to Cassandra
	records  int64 // records not yet replayed
	lastSync time.Time
	// appended counts every record ever appended; synced is the count the last fsync covered.
	// syncMu lets one fsync serve every writer waiting meanwhile (group commit).
	appended uint64
	syncMu   sync.Mutex
	synced   uint64
}

const journalFile = "outcomes.journal"

func openJournal(dir string, maxBytes int64) (*journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating journal directory: %w", err)
	}
	path := filepath.Join(dir, journalFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	j := &journal{path: path, maxBytes: maxBytes, f: f}
	j.space = sync.NewCond(&j.mu)
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	j.size = st.Size()
	if j.size > 0 {
		n, err := countLines(path)
		if err != nil {
			f.Close()
			return nil, err
		}
		j.records = n
	}
	return j, nil
}

func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// active reports whether records wait in the journal: new records must then queue behind them.
func (j *journal) active() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size > j.replayed
}

// syncTo makes the first n records ever appended durable on disk: one fsync covers every writer
// that waits for it meanwhile.
func (j *journal) syncTo(n uint64) error {
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.synced >= n {
		return nil
	}
	j.mu.Lock()
	upTo, f := j.appended, j.f
	j.mu.Unlock()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing the journal: %w", err)
	}
	j.synced = upTo
	return nil
}

// append adds r, waiting while the journal is at its bound (the backpressure that reaches ingress
// as 429). Once closing is closed it no longer waits but writes past the bound: at shutdown the
// outcomes still in the store's buffer (at most Buffer of them) must go somewhere, and the wait
// for space could only end when Cassandra takes the journal, which during an outage it does not.
func (j *journal) append(r *record, closing <-chan struct{}) (uint64, error) {
	line, err := json.Marshal(r)
	if err != nil {
		return 0, err
	}
	line = append(line, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
wait:
	for j.size-j.replayed+int64(len(line)) > j.maxBytes && j.size > j.replayed {
		select {
		case <-closing:
			break wait
		default:
		}
		j.space.Wait()
	}
	if _, err := j.f.Write(line); err != nil {
		return 0, fmt.Errorf("appending to journal: %w", err)
	}
	j.size += int64(len(line))
	j.records++
	j.appended++
	if time.Since(j.lastSync) > time.Second {
		_ = j.f.Sync()
		j.lastSync = time.Now()
	}
	return j.appended, nil
}

// pending returns the records appended but not replayed, oldest first, with the offset each ends at.
func (j *journal) pending() ([]*record, []int64, error) {
	j.mu.Lock()
	from, to := j.replayed, j.size
	j.mu.Unlock()
	if from == to {
		return nil, nil, nil
	}
	f, err := os.Open(j.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	rd := bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 64<<10)
	var recs []*record
	var ends []int64
	pos := from
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			pos += int64(len(line))
			var r record
			if json.Unmarshal(line, &r) == nil { // a torn last line from a crash is skipped
				recs = append(recs, &r)
				ends = append(ends, pos)
			}
		}
		if err != nil {
			break
		}
	}
	return recs, ends, nil
}

// replayedUpTo records that everything before offset is in Cassandra; once all of it is, the file
// is truncated.
func (j *journal) replayedUpTo(offset int64, n int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.replayed = offset
	j.records -= n
	if j.replayed == j.size {
		if err := j.f.Truncate(0); err == nil {
			j.size, j.replayed, j.records = 0, 0, 0
		}
	}
	j.space.Broadcast()
}

func (j *journal) stats() (bytes, records int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.size - j.replayed, j.records
}

func (j *journal) wakeAll() {
	j.mu.Lock()
	j.space.Broadcast()
	j.mu.Unlock()
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.f.Sync()
	return j.f.Close()
}
