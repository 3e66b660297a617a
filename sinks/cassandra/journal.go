package cassandra

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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

// positionFile beside the journal keeps how far replay has written it to Cassandra, so that a
// restart does not replay it all again: that would re-insert failed-list rows a redrive removed
// meanwhile, and the redriven events would come back.
const positionFile = journalFile + ".replayed"

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
	// A crash can leave half a line at the end: cut it, or the next append would be glued to it
	// and both lost to replay.
	if whole, err := wholeLines(f, j.size); err != nil {
		f.Close()
		return nil, err
	} else if whole < j.size {
		if err := f.Truncate(whole); err != nil {
			f.Close()
			return nil, fmt.Errorf("cutting the journal's torn last line: %w", err)
		}
		j.size = whole
	}
	if b, err := os.ReadFile(filepath.Join(dir, positionFile)); err == nil {
		if pos, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && pos > 0 && pos <= j.size {
			j.replayed = pos
		}
	}
	if j.size > j.replayed {
		n, err := countLines(path, j.replayed)
		if err != nil {
			f.Close()
			return nil, err
		}
		j.records = n
	}
	return j, nil
}

// wholeLines returns the length of f's first size bytes up to and including its last newline.
func wholeLines(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 4096)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && err != io.EOF {
			return 0, fmt.Errorf("reading the journal: %w", err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// countLines counts the lines of path from offset on.
func countLines(path string, offset int64) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	var n int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		n++
	}
	return n, sc.Err()
}

// savePosition records how far replay got, atomically (written aside, renamed, synced).
func (j *journal) savePosition(pos int64) {
	dir := filepath.Dir(j.path)
	tmp := filepath.Join(dir, positionFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(pos, 10)), 0o644); err != nil {
		return // replay goes on; a restart would replay more than needed
	}
	if f, err := os.Open(tmp); err == nil {
		_ = f.Sync()
		f.Close()
	}
	_ = os.Rename(tmp, filepath.Join(dir, positionFile))
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
	j.savePosition(j.replayed)
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
