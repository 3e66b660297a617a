package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// tuneGC trades memory for CPU on the hot path. Routing allocates a few kilobytes per event that
// die young; with Go's default GOGC=100 the collector ran often enough to cost about 15% of the
// events/s on the 2-core benchmark machine (docs/performance.md). Unless the operator set GOGC,
// Switchyard uses 400, and unless GOMEMLIMIT is set it puts a soft limit at 80% of the
// container's memory limit (cgroup v2), so the larger heap never runs the pod out of memory.
func tuneGC(logger *zap.Logger) {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); set {
		return
	}
	b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
	if err != nil {
		return
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || limit <= 0 { // "max": no limit
		return
	}
	debug.SetMemoryLimit(limit / 10 * 8)
	logger.Info("soft memory limit set from the container's", zap.Int64("bytes", limit/10*8))
}
