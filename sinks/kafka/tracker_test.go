package kafka

import (
	"context"
	"testing"
	"time"
)

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

// The byte window holds what fits, makes the rest wait until bytes are given back, and takes a
// record larger than the whole bound alone rather than never.
func TestByteWindow(t *testing.T) {
	w := newByteWindow(100)
	ctx := context.Background()
	if !w.take(ctx, 60) || !w.take(ctx, 40) {
		t.Fatal("100 bytes did not fit a window of 100")
	}
	took := make(chan bool)
	go func() { took <- w.take(ctx, 1) }()
	select {
	case <-took:
		t.Fatal("a byte past the window was taken")
	case <-time.After(50 * time.Millisecond):
	}
	w.give(60)
	if !<-took {
		t.Fatal("the waiting byte was not taken once 60 were given back")
	}
	w.give(40)
	w.give(1)
	if !w.take(ctx, 500) {
		t.Fatal("a record larger than the window was refused while nothing was held")
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if w.take(short, 1) {
		t.Fatal("a byte was taken past a record that fills the window")
	}
}
