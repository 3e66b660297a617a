package broker

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// LatencyBuckets is how many buckets a LatencyHistogram has: bucket i counts latencies below
// latencyBase·2^i (bucket 0: below 0.25 ms), the last one everything longer (over 2 min).
const LatencyBuckets = 20

const latencyBase = 250 * time.Microsecond

// LatencyHistogram counts latencies in power-of-two buckets: one atomic add per observation,
// so the hot path pays next to nothing for the console's latency chart.
type LatencyHistogram struct{ n [LatencyBuckets]atomic.Uint64 }

// LatencyCounts is a copy of a histogram's buckets.
type LatencyCounts [LatencyBuckets]uint64

func latencyBucket(d time.Duration) int {
	if d < latencyBase {
		return 0
	}
	i := bits.Len64(uint64(d / latencyBase))
	return min(i, LatencyBuckets-1)
}

func (h *LatencyHistogram) observe(d time.Duration) { h.n[latencyBucket(d)].Add(1) }

func (h *LatencyHistogram) counts() LatencyCounts {
	var c LatencyCounts
	for i := range h.n {
		c[i] = h.n[i].Load()
	}
	return c
}

// LatencyBucketBound is the upper bound of bucket i (the last one's is its lower bound doubled).
func LatencyBucketBound(i int) time.Duration { return latencyBase << i }

// Quantile returns the latency below which a fraction q of the counted events fall, as the
// upper bound of the bucket it lands in (so within a factor of two), and 0 when none are counted.
func (c *LatencyCounts) Quantile(q float64) time.Duration {
	var total uint64
	for _, n := range c {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total-1)) + 1
	var seen uint64
	for i, n := range c {
		seen += n
		if seen >= rank {
			return LatencyBucketBound(i)
		}
	}
	return LatencyBucketBound(LatencyBuckets - 1)
}

// Sub returns the counts added since earlier.
func (c *LatencyCounts) Sub(earlier *LatencyCounts) LatencyCounts {
	var d LatencyCounts
	for i := range c {
		if c[i] >= earlier[i] {
			d[i] = c[i] - earlier[i]
		}
	}
	return d
}

// Add adds other's counts.
func (c *LatencyCounts) Add(other *LatencyCounts) {
	for i := range c {
		c[i] += other[i]
	}
}
