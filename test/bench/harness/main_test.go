package main

import (
	"strings"
	"testing"
)

// TestIssue22Verdicts: the run's judgement against issue #22 compares each durable row with the
// in-memory row at the same connections and says which targets a run met.
func TestIssue22Verdicts(t *testing.T) {
	results := []Result{
		{Scenario: "nginx", DeliveredPS: 30000, CPUUsPerEv: 20, Connections: 16},
		{Scenario: "switchyard-exact-100", DeliveredPS: 20000, CPUUsPerEv: 45, PeakRSSMB: 90, Connections: 16},
		{Scenario: "switchyard-kafka-exact-100", DeliveredPS: 4000, Connections: 16, HalfRate: 2000, HalfP99MS: 12},
		{Scenario: "switchyard-exact-100-c64", DeliveredPS: 16000, Connections: 64},
		{Scenario: "switchyard-kafka-exact-100-c64", DeliveredPS: 8800, Connections: 64, HalfRate: 4400, HalfP99MS: 25},
		{Scenario: "switchyard-cassandra-exact-100", DeliveredPS: 17000, Errors: 3, Connections: 16},
	}
	out := issue22(results)
	for _, want := range []string{
		"at least half the in-memory row at 16 connections: NOT met (4000 against 20000 delivered/s, 20 %)",
		"at least half the in-memory row at 64 connections: met (8800 against 16000 delivered/s, 55 %)",
		"switchyard-kafka-exact-100: e2e p99 at half its rate (2000/s) under 20 ms: met (12.00 ms)",
		"switchyard-kafka-exact-100-c64: e2e p99 at half its rate (4400/s) under 20 ms: NOT met (25.00 ms)",
		"Cassandra result store at least 80 % of the in-memory row: met (17000 against 20000 delivered/s, 85 %)",
		"Cassandra result store without a 429: NOT met (3 refused)",
		"in memory at least nginx's delivered/s: NOT met",
		"in memory at most twice nginx's CPU per event: NOT met (45.0 against 20.0 µs, 2.2 ×)",
		"peak RSS at most 100 MB by default: met (90 MB)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}

func TestMachineBusy(t *testing.T) {
	m0 := machineCPU{total: 1000, idle: 400}
	m1 := machineCPU{total: 2000, idle: 650} // 1000 ticks, 250 idle
	if got := m1.busySince(m0); got != 75 {
		t.Fatalf("busy %v%%, want 75", got)
	}
	if got := m0.busySince(m0); got != 0 {
		t.Fatalf("no time passed: %v%%", got)
	}
	if m := readMachineCPU(); m.total == 0 || m.idle > m.total {
		t.Fatalf("/proc/stat read as %+v", m)
	}
}
