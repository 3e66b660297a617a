package webhook

import (
	"testing"
	"time"
)

func TestDedupWindowAndBound(t *testing.T) {
	t0 := time.Unix(1000, 0)
	d := newDedup(time.Minute)
	if d.reserve("a", t0) != fresh {
		t.Fatal("a first seen is not fresh")
	}
	if d.reserve("a", t0) != inFlight {
		t.Fatal("a while routing is not in flight")
	}
	d.done("a", false, t0) // routing failed: the provider's retry must route
	if d.reserve("a", t0) != fresh {
		t.Fatal("a after a failed attempt is not fresh")
	}
	d.done("a", true, t0)
	if d.reserve("a", t0.Add(30*time.Second)) != accepted {
		t.Fatal("a within the window is not remembered")
	}
	if d.reserve("a", t0.Add(2*time.Minute)) != fresh {
		t.Fatal("a after the window is still remembered")
	}
	d.max = 3
	for _, id := range []string{"b", "c", "d", "e"} {
		d.reserve(id, t0.Add(2*time.Minute))
		d.done(id, true, t0.Add(2*time.Minute))
	}
	if len(d.order) > d.max || len(d.ids) > d.max {
		t.Errorf("bound of %d exceeded: %d in order, %d ids", d.max, len(d.order), len(d.ids))
	}
	if d.reserve("e", t0.Add(2*time.Minute)) != accepted {
		t.Error("the newest id was forgotten instead of the oldest")
	}
}
