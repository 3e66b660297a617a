package broker

import (
	"testing"
	"time"
)

// TestLatencyHistogram: power-of-two buckets from 0.25 ms; a quantile is its bucket's bound.
func TestLatencyHistogram(t *testing.T) {
	for d, want := range map[time.Duration]int{0: 0, 249 * time.Microsecond: 0, 250 * time.Microsecond: 1, 499 * time.Microsecond: 1,
		500 * time.Microsecond: 2, 3 * time.Millisecond: 4, time.Hour: LatencyBuckets - 1} {
		if got := latencyBucket(d); got != want {
			t.Errorf("bucket of %s: %d, want %d", d, got, want)
		}
		if i := latencyBucket(d); i < LatencyBuckets-1 && d >= LatencyBucketBound(i) {
			t.Errorf("%s is not below its bucket's bound %s", d, LatencyBucketBound(i))
		}
	}
	var h LatencyHistogram
	for i := 0; i < 90; i++ {
		h.observe(time.Millisecond)
	}
	for i := 0; i < 10; i++ {
		h.observe(100 * time.Millisecond)
	}
	c := h.counts()
	if p50, p99 := c.Quantile(0.5), c.Quantile(0.99); p50 != 2*time.Millisecond || p99 != 128*time.Millisecond {
		t.Errorf("p50 %s p99 %s", p50, p99)
	}
	var none LatencyCounts
	if none.Quantile(0.99) != 0 {
		t.Error("no events: a latency")
	}
}
