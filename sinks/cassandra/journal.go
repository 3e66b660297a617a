package cassandra

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// journal holds records that could not be written to Cassandra yet, in a directory of append-only
// segment files. Positions are logical offsets into the journal as a whole: a segment is named by
// the offset of its first byte (as Kafka names log segments), so the bytes waiting are end-replayed
// however many segments they span. Appends go to the last segment, which rotates at segmentBytes;
// a segment replay has moved past is deleted, so disk use is the backlog plus one segment.
//
// Appends and position changes happen under mu; the replayer reads segments without holding mu, so
// appends go on while it writes to Cassandra. There is one replayer at a time.
//
// Lock order: journal.mu is never held while calling Cassandra.
type journal struct {
	dir          string
	maxBytes     int64
	segmentBytes int64

	mu       sync.Mutex
	space    *sync.Cond // signalled when the journal shrinks
	segments []int64    // bases of the segment files, oldest first; the last one is appended to
	f        *os.File   // the last segment
	end      int64      // logical offset after the last byte appended
	replayed int64      // logical offset up to which records are in Cassandra
	records  int64      // records not yet replayed
	lastSync time.Time
	// appended counts every record ever appended; synced is the count the last fsync covered.
	// syncMu lets one fsync serve every writer waiting meanwhile (group commit).
	appended uint64
	syncMu   sync.Mutex
	synced   uint64
}

const (
	segmentPrefix, segmentSuffix = "outcomes-", ".journal"
	// legacyJournalFile is the single file journals were before segments: it is taken over as the
	// segment at offset 0, and its position file (below) keeps its name and meaning.
	legacyJournalFile = "outcomes.journal"
	// positionFile keeps how far replay has written the journal to Cassandra, so that a restart
	// does not replay records again (harmless for rows, see insert's timestamps, but slow).
	positionFile = "outcomes.journal.replayed"
)

func segmentName(base int64) string {
	return fmt.Sprintf("%s%020d%s", segmentPrefix, base, segmentSuffix)
}

// defaultSegmentBytes is a sixteenth of the journal's bound, between 1 and 64 MiB: small enough that
// replayed bytes are given back to the disk soon, large enough that rotations are rare.
func defaultSegmentBytes(maxBytes int64) int64 { return min(64<<20, max(1<<20, maxBytes/16)) }

func openJournal(dir string, maxBytes, segmentBytes int64) (*journal, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating journal directory: %w", err)
	}
	if segmentBytes <= 0 {
		segmentBytes = defaultSegmentBytes(maxBytes)
	}
	j := &journal{dir: dir, maxBytes: maxBytes, segmentBytes: segmentBytes}
	j.space = sync.NewCond(&j.mu)
	if err := j.load(); err != nil {
		if j.f != nil {
			j.f.Close()
		}
		return nil, err
	}
	return j, nil
}

// load finds the segments and the replay position, cuts a torn tail, deletes what was replayed
// and counts what was not.
func (j *journal) load() error {
	legacy := filepath.Join(j.dir, legacyJournalFile)
	if _, err := os.Stat(legacy); err == nil {
		if err := os.Rename(legacy, filepath.Join(j.dir, segmentName(0))); err != nil {
			return fmt.Errorf("taking over the journal file %s: %w", legacy, err)
		}
	}
	entries, err := os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("reading the journal directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, segmentPrefix) || !strings.HasSuffix(name, segmentSuffix) {
			continue
		}
		base, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(name, segmentPrefix), segmentSuffix), 10, 64)
		if err != nil || base < 0 {
			continue
		}
		j.segments = append(j.segments, base)
	}
	sort.Slice(j.segments, func(a, b int) bool { return j.segments[a] < j.segments[b] })

	saved := int64(-1)
	if b, err := os.ReadFile(filepath.Join(j.dir, positionFile)); err == nil {
		if pos, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && pos >= 0 {
			saved = pos
		}
	}
	if len(j.segments) == 0 {
		j.segments = []int64{max(saved, 0)}
	}
	last := j.segments[len(j.segments)-1]
	j.f, err = os.OpenFile(filepath.Join(j.dir, segmentName(last)), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the journal: %w", err)
	}
	st, err := j.f.Stat()
	if err != nil {
		return err
	}
	// A crash can leave half a line at the end: cut it, or the next append would be glued to it
	// and both lost to replay. Only the last segment is ever written, so only it can be torn.
	size, err := wholeLines(j.f, st.Size())
	if err != nil {
		return err
	}
	if size < st.Size() {
		if err := j.f.Truncate(size); err != nil {
			return fmt.Errorf("cutting the journal's torn last line: %w", err)
		}
	}
	j.end = last + size
	j.replayed = j.segments[0]
	if saved > j.replayed {
		j.replayed = min(saved, j.end)
	}
	j.dropReplayedLocked()
	j.records, err = j.countFrom(j.replayed)
	return err
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

// countFrom counts the records from logical offset pos on, streaming.
func (j *journal) countFrom(pos int64) (int64, error) {
	var n int64
	for _, base := range j.segments {
		f, err := os.Open(filepath.Join(j.dir, segmentName(base)))
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(io.NewSectionReader(f, max(0, pos-base), 1<<62))
		sc.Buffer(make([]byte, 64<<10), maxRecordBytes)
		for sc.Scan() {
			n++
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return 0, fmt.Errorf("counting the journal's records: %w", err)
		}
	}
	return n, nil
}

// maxRecordBytes bounds one journal line: an outcome with its event (events are at most a few MiB).
const maxRecordBytes = 64 << 20

// segmentEndLocked is the logical offset after segment i's last byte.
func (j *journal) segmentEndLocked(i int) int64 {
	if i+1 < len(j.segments) {
		return j.segments[i+1]
	}
	return j.end
}

// dropReplayedLocked deletes the segments replay has moved past (never the last one).
func (j *journal) dropReplayedLocked() {
	for len(j.segments) > 1 && j.segments[1] <= j.replayed {
		_ = os.Remove(filepath.Join(j.dir, segmentName(j.segments[0])))
		j.segments = j.segments[1:]
	}
}

// rotateLocked starts a new segment at the current end. The old one is synced first, so records
// appended to it are durable before anyone can sync only the new file.
func (j *journal) rotateLocked() error {
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing the journal segment: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(j.dir, segmentName(j.end)), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("starting a journal segment: %w", err)
	}
	syncDir(j.dir)
	old := j.f
	j.f = f
	j.segments = append(j.segments, j.end)
	j.lastSync = time.Now()
	old.Close()
	return nil
}

// syncDir makes file creations and renames in dir durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// savePosition records how far replay got, atomically (written aside, synced, renamed).
func (j *journal) savePosition(pos int64) {
	tmp := filepath.Join(j.dir, positionFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return // replay goes on; a restart would replay more than needed
	}
	_, err = f.WriteString(strconv.FormatInt(pos, 10))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err == nil {
		_ = os.Rename(tmp, filepath.Join(j.dir, positionFile))
	}
}

// active reports whether records wait in the journal: new records must then queue behind them.
func (j *journal) active() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.end > j.replayed
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
	// A segment closed meanwhile was synced by the rotation that closed it, and the records up to
	// upTo are all in it or before it.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
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
	for j.end-j.replayed+int64(len(line)) > j.maxBytes && j.end > j.replayed {
		select {
		case <-closing:
			break wait
		default:
		}
		j.space.Wait()
	}
	if j.end-j.segments[len(j.segments)-1] >= j.segmentBytes {
		if err := j.rotateLocked(); err != nil {
			return 0, err
		}
	}
	if _, err := j.f.Write(line); err != nil {
		return 0, fmt.Errorf("appending to journal: %w", err)
	}
	j.end += int64(len(line))
	j.records++
	j.appended++
	if time.Since(j.lastSync) > time.Second {
		_ = j.f.Sync()
		j.lastSync = time.Now()
	}
	return j.appended, nil
}

// next reads the records after the replay position, oldest first, at most maxRecords of them and
// about maxBytes, with the logical offset each ends at: replay streams the journal in batches, so
// its memory is bounded whatever the backlog. A line that does not parse is a nil record, so that
// every line counts once, as countFrom counts them.
func (j *journal) next(maxRecords int, maxBytes int64) ([]*record, []int64, error) {
	j.mu.Lock()
	from := j.replayed
	type span struct{ base, from, to int64 }
	var spans []span
	for i, base := range j.segments {
		segEnd := j.segmentEndLocked(i)
		if segEnd > from {
			spans = append(spans, span{base, max(from, base), segEnd})
		}
	}
	j.mu.Unlock()

	var recs []*record
	var ends []int64
	var read int64
	for _, sp := range spans {
		f, err := os.Open(filepath.Join(j.dir, segmentName(sp.base)))
		if err != nil {
			return recs, ends, err
		}
		rd := bufio.NewReaderSize(io.NewSectionReader(f, sp.from-sp.base, sp.to-sp.from), 64<<10)
		pos := sp.from
		for len(recs) < maxRecords && read < maxBytes {
			line, err := rd.ReadBytes('\n')
			if len(line) > 0 && line[len(line)-1] == '\n' {
				pos += int64(len(line))
				read += int64(len(line))
				var r *record
				if json.Unmarshal(line, &r) != nil {
					r = nil // a line that does not parse: passed with nothing to write
				}
				recs, ends = append(recs, r), append(ends, pos)
			}
			if err != nil {
				break
			}
		}
		f.Close()
		if len(recs) >= maxRecords || read >= maxBytes {
			break
		}
	}
	return recs, ends, nil
}

// replayedUpTo records that everything before offset is in Cassandra (n records): segments before
// it are deleted, and once everything is, the last segment too is replaced by an empty one.
func (j *journal) replayedUpTo(offset int64, n int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.replayed = max(j.replayed, offset)
	j.records = max(0, j.records-n)
	if j.replayed == j.end && j.end > j.segments[len(j.segments)-1] {
		_ = j.rotateLocked()
	}
	j.dropReplayedLocked()
	j.savePosition(j.replayed)
	j.space.Broadcast()
}

func (j *journal) stats() (bytes, records int64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.end - j.replayed, j.records
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
