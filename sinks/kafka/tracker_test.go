package kafka

import "testing"

func TestTrackerCommitsOnlyTheContiguousRun(t *testing.T) {
	tr := newTracker()
	if _, ok := tr.committable(); ok {
		t.Fatal("committable before anything is final")
	}
	for _, o := range []int64{10, 11, 12, 13} {
		tr.add(o)
	}
	tr.done(12)
	if _, ok := tr.committable(); ok {
		t.Fatal("12 final but 10 and 11 are not: nothing may be committed")
	}
	tr.done(10)
	if next, _ := tr.committable(); next != 11 {
		t.Fatalf("after 10: commit %d, want 11", next)
	}
	tr.done(11)
	if next, _ := tr.committable(); next != 13 {
		t.Fatalf("after 10-12: commit %d, want 13 (the next to read)", next)
	}
	tr.done(13)
	if next, _ := tr.committable(); next != 14 || len(tr.pending) != 0 || len(tr.final) != 0 {
		t.Fatalf("after all: commit %d, %d pending, %d final", next, len(tr.pending), len(tr.final))
	}
}
