package cassandra

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

func journalRecord(t *testing.T, id string) *record {
	t.Helper()
	r, err := toRecord(testOutcome(id, "t", router.StatusFailed, time.Unix(1_800_000_000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func openTestJournal(t *testing.T, dir string, segmentBytes int64) *journal {
	t.Helper()
	j, err := openJournal(dir, 1<<30, segmentBytes)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func appendIDs(t *testing.T, j *journal, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, err := j.append(journalRecord(t, id), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// pendingIDs is every record replay has still to write, oldest first.
func pendingIDs(t *testing.T, j *journal) []string {
	t.Helper()
	recs, _, err := j.next(math.MaxInt, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		if r != nil {
			ids = append(ids, r.EventID)
		}
	}
	return ids
}

// diskBytes is what the segment files hold, replayed or not.
func (j *journal) diskBytes() int64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.end - j.segments[0]
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, segmentPrefix+"*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestJournalTornTail (issue #18, item 3): a crash that left half a line at the end made the first
// record appended after the restart glue onto it, and both were skipped by replay for good.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	j := openTestJournal(t, dir, 0)
	appendIDs(t, j, "a", "b")
	j.close()
	f, _ := os.OpenFile(filepath.Join(dir, segmentName(0)), os.O_APPEND|os.O_WRONLY, 0o644)
	_, _ = f.WriteString(`{"EventID":"torn","Trig`) // the crash
	f.Close()

	j = openTestJournal(t, dir, 0)
	defer j.close()
	appendIDs(t, j, "c")
	if got := pendingIDs(t, j); len(got) != 3 || got[2] != "c" {
		t.Errorf("records to replay after a torn tail: %v, want [a b c]", got)
	}
}

// TestJournalReplayPositionSurvivesRestarts (issue #18, item 3): the replay position was not saved,
// so a restart replayed the whole journal again.
func TestJournalReplayPositionSurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	j := openTestJournal(t, dir, 0)
	appendIDs(t, j, "a", "b", "c")
	_, ends, err := j.next(2, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	j.replayedUpTo(ends[1], 2) // a and b are in Cassandra; the process dies before c
	j.close()

	j = openTestJournal(t, dir, 0)
	defer j.close()
	if got := pendingIDs(t, j); len(got) != 1 || got[0] != "c" {
		t.Errorf("records to replay after the restart: %v, want [c]", got)
	}
	if _, records := j.stats(); records != 1 {
		t.Errorf("%d records counted, want 1", records)
	}
}

// TestJournalSegments (issue #18, item 3): the journal was one file, truncated only once replay had
// caught up entirely, so under steady load it never shrank; and replay read the whole backlog (up
// to 1 GiB) into memory. Now it is segments, deleted as replay passes them, read in batches.
func TestJournalSegments(t *testing.T) {
	dir := t.TempDir()
	j := openTestJournal(t, dir, 2048) // a record is ~300 bytes: ~7 per segment
	var ids []string
	for i := range 100 {
		ids = append(ids, fmt.Sprintf("r%03d", i))
	}
	appendIDs(t, j, ids...)
	if n := len(segmentFiles(t, dir)); n < 10 {
		t.Fatalf("%d segment files for 100 records of ~300 bytes at 2 KiB each, want at least 10", n)
	}

	// Replay streams: a batch is bounded by records and by bytes.
	recs, ends, err := j.next(30, math.MaxInt64)
	if err != nil || len(recs) != 30 || recs[0].EventID != "r000" || recs[29].EventID != "r029" {
		t.Fatalf("first batch of 30: %d records, err %v", len(recs), err)
	}
	if byBytes, _, _ := j.next(math.MaxInt, 1000); len(byBytes) > 4 {
		t.Errorf("a batch of about 1000 bytes held %d records of ~300 bytes", len(byBytes))
	}
	before := j.diskBytes()
	j.replayedUpTo(ends[29], 30) // while appends go on
	appendIDs(t, j, "r100")
	if after := j.diskBytes(); after >= before {
		t.Errorf("replaying 30 records left %d bytes on disk, was %d: replayed segments are not deleted", after, before)
	}
	if _, records := j.stats(); records != 71 {
		t.Errorf("%d records waiting, want 71", records)
	}

	// A restart goes on from the position, across segment boundaries.
	j.close()
	j = openTestJournal(t, dir, 2048)
	got := pendingIDs(t, j)
	if len(got) != 71 || got[0] != "r030" || got[70] != "r100" {
		t.Fatalf("after a restart %d records wait, from %v, want r030..r100", len(got), got[:min(3, len(got))])
	}

	// Caught up, nothing of the records is left on disk.
	_, ends, _ = j.next(math.MaxInt, math.MaxInt64)
	j.replayedUpTo(ends[len(ends)-1], int64(len(ends)))
	if b, n := j.stats(); b != 0 || n != 0 {
		t.Errorf("caught up, %d bytes and %d records wait", b, n)
	}
	if files := segmentFiles(t, dir); len(files) != 1 || j.diskBytes() != 0 {
		t.Errorf("caught up, segments %v hold %d bytes; want one empty segment", files, j.diskBytes())
	}
	appendIDs(t, j, "r101")
	j.close()
	j = openTestJournal(t, dir, 2048)
	defer j.close()
	if got := pendingIDs(t, j); len(got) != 1 || got[0] != "r101" {
		t.Errorf("after catching up and a restart: %v, want [r101]", got)
	}
}

// TestJournalTakesOverTheSingleFile: a journal written by a version before segments is replayed.
func TestJournalTakesOverTheSingleFile(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for _, id := range []string{"old1", "old2"} {
		b, _ := json.Marshal(journalRecord(t, id))
		lines = append(lines, string(b)+"\n")
	}
	if err := os.WriteFile(filepath.Join(dir, legacyJournalFile), []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	j := openTestJournal(t, dir, 0)
	defer j.close()
	if got := pendingIDs(t, j); len(got) != 2 || got[0] != "old1" {
		t.Errorf("records of the old single-file journal: %v, want [old1 old2]", got)
	}
}

// TestJournalCorruptLineIsPassed: a whole line that does not parse (a disk that returned garbage)
// neither stops replay nor is counted twice: it is passed with nothing to write.
func TestJournalCorruptLineIsPassed(t *testing.T) {
	dir := t.TempDir()
	j := openTestJournal(t, dir, 0)
	appendIDs(t, j, "a")
	j.close()
	f, _ := os.OpenFile(filepath.Join(dir, segmentName(0)), os.O_APPEND|os.O_WRONLY, 0o644)
	_, _ = f.WriteString("\x00\xffnot json\n")
	f.Close()
	j = openTestJournal(t, dir, 0)
	defer j.close()
	appendIDs(t, j, "b")
	recs, ends, err := j.next(math.MaxInt, math.MaxInt64)
	if err != nil || len(recs) != 3 || recs[0].EventID != "a" || recs[1] != nil || recs[2].EventID != "b" {
		t.Fatalf("records after a corrupt line: %v (%v)", recs, err)
	}
	if _, n := j.stats(); n != 3 {
		t.Errorf("%d lines counted, want 3", n)
	}
	j.replayedUpTo(ends[2], 3)
	if b, n := j.stats(); b != 0 || n != 0 {
		t.Errorf("after replaying all: %d bytes, %d records wait", b, n)
	}
}
