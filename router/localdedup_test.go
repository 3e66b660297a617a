package router

import (
	"testing"
	"time"
)

func TestLocalDedupWindowAndBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := NewLocalDedup(time.Minute, 3)
	if d.Reserve("a", t0) != DedupFresh {
		t.Fatal("a first seen is not fresh")
	}
	if d.Reserve("a", t0) != DedupInFlight {
		t.Fatal("a while being accepted is not in flight")
	}
	d.Settle("a", false, t0) // the attempt failed: a retry must go through
	if d.Reserve("a", t0) != DedupFresh {
		t.Fatal("a after a failed attempt is not fresh")
	}
	d.Settle("a", true, t0)
	if d.Reserve("a", t0.Add(30*time.Second)) != DedupAccepted {
		t.Fatal("a within the window is not remembered")
	}
	if d.Reserve("a", t0.Add(2*time.Minute)) != DedupFresh {
		t.Fatal("a after the window is still remembered")
	}
	for _, key := range []string{"b", "c", "d", "e"} {
		d.Reserve(key, t0.Add(2*time.Minute))
		d.Settle(key, true, t0.Add(2*time.Minute))
	}
	if len(d.order) > d.max || len(d.keys) > d.max {
		t.Errorf("bound of %d exceeded: %d in order, %d keys", d.max, len(d.order), len(d.keys))
	}
	if d.Reserve("e", t0.Add(2*time.Minute)) != DedupAccepted {
		t.Error("the newest key was forgotten instead of the oldest")
	}
}
