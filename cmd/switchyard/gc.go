package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
)

// tuneGC trades memory for CPU on the hot path. Routing allocates a few kilobytes per event that
// die young; with Go's default GOGC=100 the collector ran often enough to cost about 15% of the
// events/s on the 2-core benchmark machine (docs/performance.md). Unless the operator set GOGC,
// Switchyard uses 400, and unless GOMEMLIMIT is set it puts a soft limit at 80% of the
// container's memory limit (cgroup v2), so the larger heap never runs the pod out of memory.
//
// Outside a container (no cgroup limit) the soft limit is what the byte bounds of s add up to,
// plus room for the runtime (boundsSoftLimit): the bounds keep what is live below it, and the
// limit keeps GOGC=400 from letting the garbage of refused requests grow the heap to five times
// that (a producer's refused 9 MiB events did, on a laptop). Below the limit, nothing changes.
func tuneGC(logger *zap.Logger, s *config.Settings) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return
	}
	if limit, ok := containerMemoryLimit(); ok {
		debug.SetMemoryLimit(limit / 10 * 8)
		logger.Info("soft memory limit set from the container's", zap.Int64("bytes", limit/10*8))
		return
	}
	limit := boundsSoftLimit(s)
	debug.SetMemoryLimit(limit)
	logger.Info("soft memory limit set from the configured byte bounds (set GOMEMLIMIT to choose another)", zap.Int64("bytes", limit))
}

// runtimeRoom is what the soft limit leaves beyond the byte bounds: outcome records' fixed parts,
// response heads being read, goroutine stacks, the configuration and the runtime.
const runtimeRoom = 256 << 20

// boundsSoftLimit adds up the byte bounds of s (the defaults when s is nil, as in controller mode
// before the cluster's configuration is read): events held, bodies being read by the ingress and
// by the admin listener, replies being read, events and records kept by the in-memory results.
func boundsSoftLimit(s *config.Settings) int64 {
	unfinished, bodies, replies, kept, records := int64(config.DefaultMaxUnfinishedBytes), int64(config.DefaultMaxBodyBytesInFlight),
		int64(delivery.DefaultMaxReplyBytesInFlight), int64(config.DefaultMaxResultEventBytes), int64(config.DefaultMaxResultOutcomeBytes)
	if s != nil {
		unfinished, bodies, replies, kept, records = s.MaxUnfinishedBytes, s.MaxBodyBytesInFlight, s.MaxReplyBytesInFlight, s.MaxResultEventBytes, s.MaxResultOutcomeBytes
	}
	return unfinished + 2*bodies + replies + kept + records + runtimeRoom
}

// containerMemoryLimit is the cgroup v2 memory limit this process runs under, if any.
func containerMemoryLimit() (int64, bool) {
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return 0, false
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || limit <= 0 { // "max": no limit
		return 0, false
	}
	return limit, true
}
