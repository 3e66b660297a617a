package cassandra

import (
	"os"
	"path/filepath"
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

func pendingIDs(t *testing.T, j *journal) []string {
	t.Helper()
	recs, _, err := j.pending()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.EventID)
	}
	return ids
}

// TestJournalTornTail (issue #18, item 3): a crash that left half a line at the end made the first
// record appended after the restart glue onto it, and both were skipped by replay for good.
func TestJournalTornTail(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := j.append(journalRecord(t, id), nil); err != nil {
			t.Fatal(err)
		}
	}
	j.close()
	f, _ := os.OpenFile(filepath.Join(dir, journalFile), os.O_APPEND|os.O_WRONLY, 0o644)
	_, _ = f.WriteString(`{"EventID":"torn","Trig`) // the crash
	f.Close()

	j, err = openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if _, err := j.append(journalRecord(t, "c"), nil); err != nil {
		t.Fatal(err)
	}
	if got := pendingIDs(t, j); len(got) != 3 || got[2] != "c" {
		t.Errorf("records to replay after a torn tail: %v, want [a b c]", got)
	}
}

// TestJournalReplayPositionSurvivesRestarts (issue #18, item 3): the replay position was not saved,
// so a restart replayed the whole journal again, re-inserting failed-list rows a redrive had removed
// meanwhile: redriven events came back.
func TestJournalReplayPositionSurvivesRestarts(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		if _, err := j.append(journalRecord(t, id), nil); err != nil {
			t.Fatal(err)
		}
	}
	_, ends, err := j.pending()
	if err != nil {
		t.Fatal(err)
	}
	j.replayedUpTo(ends[1], 2) // a and b are in Cassandra; the process dies before c
	j.close()

	j, err = openJournal(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if got := pendingIDs(t, j); len(got) != 1 || got[0] != "c" {
		t.Errorf("records to replay after the restart: %v, want [c]", got)
	}
	if _, records := j.stats(); records != 1 {
		t.Errorf("%d records counted, want 1", records)
	}
}
