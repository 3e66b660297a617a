// Command harness measures Switchyard side by side with what a user could put in its place: the
// load generator straight to the sink, a plain Go reverse proxy, nginx, and Benthos. Every
// scenario runs in the same invocation on 127.0.0.1, bounded in time, so ratios hold on a noisy
// machine. `make bench` runs it; docs/performance.md has the latest table and how to read it.
//
// Per scenario: a closed loop with wrk (events/s answered, and how many reached the sink), then an
// open loop at a fixed rate with this program's own generator, whose events carry the time they
// were due so the sink measures end-to-end latency (to subscriber receipt, not just the 202); then the
// same open loop "at load": at a rate that is three quarters of what the reverse proxy delivered
// in this run, for every scenario that delivered more than that. A saturated closed loop's p99
// compares systems at different throughputs, on two cores shared with wrk and the sink (a faster
// system gives wrk more work and its own tail grows); the at-load figure compares them at the same
// rate, which is what "latency under load" means. CPU time and peak RSS are read from /proc for
// the system under test's process.
package main

import (
	"bufio"
	"bytes"

	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "reverseproxy" {
		reverseProxy(os.Args[2], os.Args[3])
		return
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "closed-loop duration per scenario")
	flag.IntVar(&o.connections, "connections", 16, "closed-loop connections (wrk)")
	flag.IntVar(&o.rate, "rate", 2000, "open-loop events per second for latency")
	flag.IntVar(&o.loadRate, "load-rate", 0, "events per second of the at-load open loop (default: 3/4 of the reverse proxy's delivered/s in this run)")
	flag.DurationVar(&o.openFor, "open-duration", 5*time.Second, "open-loop duration")
	flag.IntVar(&o.size, "size", 1024, "event data size in bytes")
	flag.StringVar(&o.switchyard, "switchyard", "bin/switchyard", "the switchyard binary")
	flag.StringVar(&o.benthos, "benthos", "", "a Benthos v4.27.0 binary (make bench builds one)")
	flag.StringVar(&o.only, "only", "", "comma-separated scenario names to run (default all)")
	flag.StringVar(&o.out, "out", "test/bench/results", "directory for results.json and results.md")
	flag.StringVar(&o.kafka, "kafka", "", "a Kafka bootstrap address: adds Switchyard with a Kafka-class broker (make bench starts one)")
	flag.StringVar(&o.cassandra, "cassandra", "", "a Cassandra contact point: adds Switchyard with the Cassandra result store (make bench starts one)")
	flag.IntVar(&o.rounds, "rounds", 0, "after the table: this many interleaved saturated rounds of the proxy and Switchyard with and without pacing (make bench: 7)")
	flag.StringVar(&o.profileDir, "profile", "", "a directory: each Switchyard row runs with --profiling and its closed loop's CPU profile is saved there as SCENARIO.pprof (go tool pprof)")
	flag.IntVar(&o.cassandraWriters, "cassandra-writers", 0, "results.cassandra.writers of the Cassandra rows (default: Switchyard's)")
	flag.StringVar(&o.switchyardEnv, "switchyard-env", "", "environment variables for the Switchyard rows, space-separated NAME=VALUE (GOMAXPROCS=4, GOGC=100)")
	flag.IntVar(&benchConcurrency, "concurrency", benchConcurrency, "spec.triggers.concurrency of the Switchyard rows")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "a closed loop run and discarded before each Kafka or Cassandra row, so their JVMs are measured warm")
	flag.DurationVar(&o.roundFor, "round-duration", 4*time.Second, "the closed loop's duration in each round")
	flag.StringVar(&o.infraDir, "infra-dir", defaultInfraDir(), "test/infra's directory, whose pid files name the Kafka and Cassandra JVMs whose CPU is counted")
	flag.IntVar(&o.maxInFlight, "max-in-flight", 16, "switchyard.dev/max-in-flight of the paced Switchyard scenario")
	flag.Parse()
	if err := run(&o); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

// defaultInfraDir is where test/infra/infra.sh keeps its servers, as it computes it.
func defaultInfraDir() string {
	if d := os.Getenv("SWITCHYARD_INFRA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("TMPDIR"); d != "" {
		return filepath.Join(d, "switchyard-infra")
	}
	return "/tmp/switchyard-infra"
}

type options struct {
	duration, openFor, roundFor    time.Duration
	warmup                         time.Duration
	rounds                         int
	connections, rate, size        int
	loadRate, maxInFlight          int
	cassandraWriters               int
	switchyard, benthos, only, out string
	kafka, cassandra, infraDir     string
	profileDir, switchyardEnv      string
}

// Result is one scenario's figures.
type Result struct {
	Scenario     string  `json:"scenario"`
	AnsweredPerS float64 `json:"answered_per_s"`  // closed loop: responses/s seen by wrk
	DeliveredPS  float64 `json:"delivered_per_s"` // closed loop: events/s that reached the sink
	WrkP50MS     float64 `json:"wrk_p50_ms"`
	WrkP99MS     float64 `json:"wrk_p99_ms"`
	E2EP50MS     float64 `json:"e2e_p50_ms"` // open loop: due time to sink receipt
	E2EP99MS     float64 `json:"e2e_p99_ms"`
	E2EP999MS    float64 `json:"e2e_p999_ms"`
	LoadRate     int     `json:"load_rate,omitempty"` // the at-load open loop, when it ran
	LoadSentPS   float64 `json:"load_sent_per_s,omitempty"`
	LoadP50MS    float64 `json:"load_p50_ms,omitempty"`
	LoadP99MS    float64 `json:"load_p99_ms,omitempty"`
	LoadP999MS   float64 `json:"load_p999_ms,omitempty"`
	CPUUsPerEv   float64 `json:"cpu_us_per_event"`
	PeakRSSMB    float64 `json:"peak_rss_mb"`
	Errors       int64   `json:"errors"`
	Note         string  `json:"note,omitempty"`

	// Where the closed loop's CPU went, per delivered event, and how busy the machine was: with
	// every process on the same cores, a row whose machine is fully busy is bound by the sum.
	Connections    int     `json:"connections"`
	MachineBusyPct float64 `json:"machine_busy_pct"`      // of all cores, from /proc/stat
	JVMCPUUsPerEv  float64 `json:"jvm_cpu_us_per_event"`  // Kafka's and Cassandra's JVMs (test/infra)
	LoadCPUUsPerEv float64 `json:"load_cpu_us_per_event"` // wrk and this harness's sink

	// The durable rows also run the open loop at half their closed loop's delivered rate.
	HalfRate   int     `json:"half_rate,omitempty"`
	HalfSentPS float64 `json:"half_sent_per_s,omitempty"`
	HalfP50MS  float64 `json:"half_p50_ms,omitempty"`
	HalfP99MS  float64 `json:"half_p99_ms,omitempty"`
	HalfP999MS float64 `json:"half_p999_ms,omitempty"`
}

// scenario starts a system under test forwarding to sinkURL and returns the URL to load, its
// process (nil when there is none), and a stop function.
type scenario struct {
	name  string
	start func(o *options, sinkURL string) (target string, proc *os.Process, stop func(), err error)
	// connections overrides -connections for this row's closed loop (the 64-connection rows).
	connections int
}

func run(o *options) error {
	sink := newSink()
	defer sink.close()
	scenarios := []scenario{
		{name: "direct", start: func(_ *options, s string) (string, *os.Process, func(), error) { return s + "/", nil, func() {}, nil }},
		{name: "go-reverseproxy", start: startReverseProxy},
		{name: "nginx", start: startNginx},
		{name: "benthos", start: startBenthos},
	}
	for _, n := range []int{1, 100, 10000} {
		for _, dialect := range []string{"exact", "cesql"} {
			n, dialect := n, dialect
			scenarios = append(scenarios, scenario{name: fmt.Sprintf("switchyard-%s-%d", dialect, n), start: func(o *options, s string) (string, *os.Process, func(), error) {
				return startSwitchyard(o, s, n, dialect)
			}})
		}
	}
	// Paced: 100 exact triggers on a broker that holds at most -max-in-flight (16) unfinished
	// events, so a producer waits for room instead of the queue absorbing the overload.
	scenarios = append(scenarios, scenario{name: "switchyard-paced-exact-100", start: func(o *options, s string) (string, *os.Process, func(), error) {
		return startSwitchyardWith(o, s, 100, "exact", "", fmt.Sprintf("  annotations: {switchyard.dev/max-in-flight: \"%d\"}\n", o.maxInFlight))
	}})
	// The durable variants, 100 exact triggers: the broker's events in a Kafka topic (acks=all, read
	// back through the consumer group), or every outcome written to Cassandra.
	// What N triggers cost a Kafka-class broker per event (issue #29): each record is read once
	// and fanned out through the filter index, whatever N; every event matches one trigger.
	for _, n := range []int{1, 10} {
		scenarios = append(scenarios, scenario{name: fmt.Sprintf("switchyard-kafka-exact-%d", n), start: func(o *options, s string) (string, *os.Process, func(), error) {
			return startKafkaBrokerWith(o, s, n)
		}})
	}
	scenarios = append(scenarios,
		scenario{name: "switchyard-kafka-exact-100", start: startKafkaBroker},
		scenario{name: "switchyard-cassandra-exact-100", start: func(o *options, s string) (string, *os.Process, func(), error) {
			if o.cassandra == "" {
				return "", nil, nil, errors.New("needs -cassandra (make bench starts Cassandra)")
			}
			return startSwitchyardWith(o, s, 100, "exact", cassandraResults(o), "")
		}},
		// The Cassandra row with the broker's archive on (docs/archive.md): every accepted event
		// also written to the archive table, after its 202.
		scenario{name: "switchyard-cassandra-archive-exact-100", start: func(o *options, s string) (string, *os.Process, func(), error) {
			if o.cassandra == "" {
				return "", nil, nil, errors.New("needs -cassandra (make bench starts Cassandra)")
			}
			return startSwitchyardWith(o, s, 100, "exact", cassandraResults(o),
				"  annotations: {switchyard.dev/archive-retention: 24h}\n")
		}},
		// Issue #22 compares the Kafka-class broker with the in-memory one at 64 connections too:
		// at 16, a produce round trip per request bounds what 16 producers can send.
		scenario{name: "switchyard-exact-100-c64", connections: 64, start: func(o *options, s string) (string, *os.Process, func(), error) {
			return startSwitchyard(o, s, 100, "exact")
		}},
		scenario{name: "switchyard-kafka-exact-100-c64", connections: 64, start: startKafkaBroker},
	)
	var results []Result
	for _, sc := range scenarios {
		if o.only != "" && !slices.Contains(strings.Split(o.only, ","), sc.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "== %s\n", sc.name)
		r, err := measure(o, sc, sink)
		if err != nil {
			fmt.Fprintf(os.Stderr, "   skipped: %v\n", err)
			results = append(results, Result{Scenario: sc.name, Note: "skipped: " + err.Error()})
			continue
		}
		fmt.Fprintf(os.Stderr, "   %+v\n", r)
		results = append(results, r)
	}
	extra := ""
	if o.rounds > 0 {
		fmt.Fprintf(os.Stderr, "== %d saturated rounds\n", o.rounds)
		var err error
		if extra, err = saturatedRounds(o, scenarios, sink); err != nil {
			extra = fmt.Sprintf("\nSaturated rounds not run: %v\n", err)
		}
	}
	return write(o, results, extra)
}

func measure(o *options, sc scenario, sink *sink) (Result, error) {
	res := Result{Scenario: sc.name}
	target, proc, stop, err := sc.start(o, sink.url)
	if err != nil {
		return res, err
	}
	defer stop()
	if err := waitReady(target, o); err != nil {
		return res, err
	}
	res.Connections = o.connections
	if sc.connections > 0 {
		res.Connections = sc.connections
	}
	if durable(sc.name) && o.warmup > 0 {
		// A JVM just started runs interpreted code until its JIT has compiled the hot paths: the
		// first closed loop against a fresh Kafka measured 936 events/s at 1,556 µs of the JVM's
		// CPU per event, a warm one four times that. Measure the servers as they run in
		// production, warm; this loop's figures are discarded.
		start := time.Now()
		if _, err := runWrk(o, target, o.warmup, res.Connections); err != nil {
			return res, err
		}
		settle(sink, start, o.warmup)
	}
	jvms := infraJVMs(o.infraDir)
	cpu0, jvm0, self0, machine0 := cpuTime(proc), cpuTimeOf(jvms), selfCPU(), readMachineCPU()
	delivered0 := sink.count.Load()

	// Closed loop with wrk.
	start := time.Now()
	profiled := profileDuring(o.profileDir, sc.name, target, o.duration-time.Second)
	w, err := runWrk(o, target, o.duration, res.Connections)
	profiled()
	if err != nil {
		return res, err
	}
	res.AnsweredPerS, res.WrkP50MS, res.WrkP99MS, res.Errors = w.answeredPS, w.p50MS, w.p99MS, w.errors
	settle(sink, start, o.duration)
	delivered := sink.count.Load() - delivered0
	res.DeliveredPS = float64(delivered) / (time.Since(start) - 500*time.Millisecond).Seconds()
	cpu1, jvm1, self1, machine1 := cpuTime(proc), cpuTimeOf(jvms), selfCPU(), readMachineCPU()
	if delivered > 0 {
		perEvent := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(delivered) }
		if proc != nil {
			res.CPUUsPerEv = perEvent(cpu1 - cpu0)
		}
		res.JVMCPUUsPerEv = perEvent(jvm1 - jvm0)
		res.LoadCPUUsPerEv = perEvent(w.cpu + self1 - self0)
	}
	res.MachineBusyPct = machine1.busySince(machine0)

	if sc.name == "go-reverseproxy" && o.loadRate == 0 {
		o.loadRate = int(res.DeliveredPS * 3 / 4) // the at-load rate of this run
	}

	// Open loop for end-to-end latency, then the same at load when the system can carry it.
	lat, errs, _ := openLoopLatency(target, sink, o.rate, o.openFor, o.size)
	res.E2EP50MS, res.E2EP99MS, res.E2EP999MS = percentiles(lat)
	res.Errors += errs
	if o.loadRate > 0 && res.DeliveredPS > float64(o.loadRate) {
		lat, errs, sent := openLoopLatency(target, sink, o.loadRate, o.openFor, o.size)
		res.LoadRate, res.LoadSentPS = o.loadRate, sent
		res.LoadP50MS, res.LoadP99MS, res.LoadP999MS = percentiles(lat)
		res.Errors += errs
	}
	if durable(sc.name) && res.DeliveredPS >= 2 {
		res.HalfRate = int(res.DeliveredPS / 2)
		lat, errs, sent := openLoopLatency(target, sink, res.HalfRate, o.openFor, o.size)
		res.HalfSentPS = sent
		res.HalfP50MS, res.HalfP99MS, res.HalfP999MS = percentiles(lat)
		res.Errors += errs
	}
	res.PeakRSSMB = peakRSS(proc)
	return res, nil
}

// cassandraResults is the spec's result store section for the Cassandra rows.
func cassandraResults(o *options) string {
	writers := ""
	if o.cassandraWriters > 0 {
		writers = fmt.Sprintf(", writers: %d", o.cassandraWriters)
	}
	return fmt.Sprintf("  results: {cassandra: {hosts: [%s], keyspace: switchyard_bench, replication: \"{'class': 'SimpleStrategy', 'replication_factor': 1}\", consistency: ONE%s}}\n", o.cassandra, writers)
}

// durable says whether a row keeps its events or outcomes outside the process (Kafka, Cassandra).
func durable(scenario string) bool {
	return strings.Contains(scenario, "kafka") || strings.Contains(scenario, "cassandra")
}

// startKafkaBroker runs Switchyard with 100 exact triggers on a Kafka-class broker (acks=all, read
// back through the consumer group) on a topic of its own.
func startKafkaBroker(o *options, s string) (string, *os.Process, func(), error) {
	return startKafkaBrokerWith(o, s, 100)
}

// startKafkaBrokerWith is startKafkaBroker with n triggers.
func startKafkaBrokerWith(o *options, s string, n int) (string, *os.Process, func(), error) {
	if o.kafka == "" {
		return "", nil, nil, errors.New("needs -kafka (make bench starts Kafka)")
	}
	topic := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	return startSwitchyardWith(o, s, n, "exact", fmt.Sprintf("  kafka: {bootstrapServers: [%s], partitions: 4}\n", o.kafka),
		"  annotations: {eventing.knative.dev/broker.class: Kafka, kafka.eventing.knative.dev/external.topic: "+topic+"}\n")
}

// wrkResult is what one wrk closed loop reports.
type wrkResult struct {
	answeredPS, p50MS, p99MS float64
	errors                   int64
	cpu                      time.Duration // wrk's own user+system time
}

// runWrk runs wrk's closed loop (two threads, the given connections) against target for d.
func runWrk(o *options, target string, d time.Duration, connections int) (wrkResult, error) {
	script, err := wrkScript(o.size)
	if err != nil {
		return wrkResult{}, err
	}
	defer os.Remove(script)
	cmd := exec.Command("wrk", "-t2", "-c"+strconv.Itoa(connections), "-d"+d.String(), "--latency", "-s", script, target)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return wrkResult{
		cpu:        cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		answeredPS: wrkFloat(out, `Requests/sec:\s+([\d.]+)`),
		p50MS:      wrkLatency(out, "50%"),
		p99MS:      wrkLatency(out, "99%"),
		errors:     int64(wrkFloat(out, `Non-2xx or 3xx responses:\s+(\d+)`)) + int64(wrkFloat(out, `Socket errors:.*?timeout (\d+)`)),
	}, nil
}

// settle waits until the sink stops receiving (asynchronous routers finish their backlog), for at
// most 30 s after a closed loop of d that began at start.
func settle(sink *sink, start time.Time, d time.Duration) {
	last, stable := sink.count.Load(), 0
	for stable < 5 && time.Since(start) < d+30*time.Second {
		time.Sleep(100 * time.Millisecond)
		if n := sink.count.Load(); n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
}

// roundsScenarios are the rows compared by -rounds, the proxy first.
var roundsScenarios = []string{"go-reverseproxy", "switchyard-exact-100", "switchyard-paced-exact-100"}

// saturatedRounds compares the saturated closed loop's p99 of the proxy and of Switchyard with
// and without pacing, interleaved: all three run at once (idle but for the one under load), and
// each round loads each in turn, in a rotating order, so that the machine's drifts in speed fall
// on all of them alike. One wrk run's p99 moves by a millisecond or more from run to run on two
// shared cores; medians over rounds compare the systems, not the moments.
func saturatedRounds(o *options, all []scenario, sink *sink) (string, error) {
	targets := make([]string, len(roundsScenarios))
	for i, name := range roundsScenarios {
		for _, sc := range all {
			if sc.name != name {
				continue
			}
			target, _, stop, err := sc.start(o, sink.url)
			if err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			defer stop()
			if err := waitReady(target, o); err != nil {
				return "", fmt.Errorf("%s: %w", name, err)
			}
			targets[i] = target
		}
	}
	p99s := make([][]float64, len(roundsScenarios))
	errs := make([]int64, len(roundsScenarios)) // a 429 answers fast: a p99 with refusals flatters
	for round := 0; round < o.rounds; round++ {
		for k := range roundsScenarios {
			i := (round + k) % len(roundsScenarios)
			start := time.Now()
			w, err := runWrk(o, targets[i], o.roundFor, o.connections)
			if err != nil {
				return "", err
			}
			settle(sink, start, o.roundFor)
			p99s[i] = append(p99s[i], w.p99MS)
			errs[i] += w.errors
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nSaturated closed loop, %d interleaved rounds of %s each (wrk p99 ms per round; median):\n", o.rounds, o.roundFor)
	medians := make([]float64, len(p99s))
	for i, ps := range p99s {
		medians[i] = median(ps)
		fmt.Fprintf(&b, "- %s: %s; median %.2f; errors %d\n", roundsScenarios[i], joinFloats(ps), medians[i], errs[i])
	}
	for i := 1; i < len(p99s); i++ {
		lower := 0
		for r := range p99s[i] {
			if p99s[i][r] <= p99s[0][r] {
				lower++
			}
		}
		fmt.Fprintf(&b, "- %s median p99 no worse than the proxy's: %s (%.2f against %.2f ms; no worse in %d of %d rounds)\n", roundsScenarios[i], verdict(medians[i] <= medians[0]), medians[i], medians[0], lower, len(p99s[i]))
	}
	return b.String(), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func joinFloats(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.2f", x)
	}
	return strings.Join(parts, " / ")
}

// openLoopLatency runs an open loop and returns the sorted latencies (from each event's due time
// to its receipt at the sink), the errors and the rate actually sent.
func openLoopLatency(target string, sink *sink, rate int, d time.Duration, size int) ([]time.Duration, int64, float64) {
	sink.resetLatencies()
	start := time.Now()
	errs, sent := openLoop(target, rate, d, size)
	elapsed := time.Since(start)
	time.Sleep(500 * time.Millisecond)
	return sink.latencies(), errs, float64(sent) / elapsed.Seconds()
}

// --- the sink -------------------------------------------------------------------------------

type sink struct {
	srv   *http.Server
	url   string
	count atomic.Int64
	mu    sync.Mutex
	lat   []time.Duration
	bad   atomic.Int64
}

func newSink() *sink {
	s := &sink{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.Header.Get("Ce-Id") == "" || n == 0 {
			s.bad.Add(1)
		}
		if sent, err := strconv.ParseInt(r.Header.Get("Ce-Benchsent"), 10, 64); err == nil {
			d := time.Since(time.Unix(0, sent))
			s.mu.Lock()
			s.lat = append(s.lat, d)
			s.mu.Unlock()
		}
		s.count.Add(1)
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s
}

func (s *sink) resetLatencies() { s.mu.Lock(); s.lat = s.lat[:0]; s.mu.Unlock() }
func (s *sink) latencies() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]time.Duration(nil), s.lat...)
	slices.Sort(out)
	return out
}
func (s *sink) close() { _ = s.srv.Close() }

func pct(sorted []time.Duration, p float64) float64 {
	i := int(float64(len(sorted)-1) * p)
	return float64(sorted[i].Microseconds()) / 1000
}

// percentiles returns the p50, p99 and p99.9 of sorted latencies in milliseconds (zeros when
// there are none).
func percentiles(sorted []time.Duration) (p50, p99, p999 float64) {
	if len(sorted) == 0 {
		return 0, 0, 0
	}
	return pct(sorted, 0.50), pct(sorted, 0.99), pct(sorted, 0.999)
}

// --- load -----------------------------------------------------------------------------------

var eventTypes = []string{"bench.t0", "bench.t1", "bench.t2", "bench.t3"}

// wrkScript writes a wrk Lua script posting binary-mode events of a mix of types.
func wrkScript(size int) (string, error) {
	body := `{"payload":"` + strings.Repeat("x", max(size-14, 1)) + `"}`
	script := fmt.Sprintf(`local types = {"bench.t0","bench.t1","bench.t2","bench.t3"}
local n = 0
request = function()
  n = n + 1
  local h = {}
  h["Content-Type"] = "application/json"
  h["Ce-Specversion"] = "1.0"
  h["Ce-Id"] = "wrk-" .. n
  h["Ce-Source"] = "/bench"
  h["Ce-Type"] = types[(n %% 4) + 1]
  return wrk.format("POST", "/bench/default", h, %q)
end
`, body)
	f, err := os.CreateTemp("", "switchyard-wrk-*.lua")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.WriteString(script)
	return f.Name(), err
}

func wrkFloat(out []byte, re string) float64 {
	m := regexp.MustCompile(re).FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func wrkLatency(out []byte, p string) float64 {
	m := regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(p) + `\s+([\d.]+)(us|ms|s)`).FindSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	switch string(m[2]) {
	case "us":
		return v / 1000
	case "s":
		return v * 1000
	}
	return v
}

// openLoop sends rate events per second for d and returns the errors and how many it sent (fewer
// than asked when the system under test falls behind). Event i is due at start + i/rate; it
// carries that due time, so the sink's latency counts any wait for a free connection (no
// coordinated omission), as wrk2 does. openLoopConns workers each keep one connection and write
// the request bytes themselves: a goroutine and an http.Client request per event cost the two
// cores more than some systems under test do.
func openLoop(target string, rate int, d time.Duration, size int) (errs, sent int64) {
	u, err := url.Parse(target)
	if err != nil {
		return 1, 0
	}
	body := bytes.Repeat([]byte("y"), size)
	interval := time.Second / time.Duration(rate)
	total := int64(d / interval)
	start := time.Now()
	var next, failed, written atomic.Int64
	var wg sync.WaitGroup
	for range openLoopConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			var req []byte
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				due := start.Add(time.Duration(i) * interval)
				if wait := time.Until(due); wait > 0 {
					time.Sleep(wait)
				}
				if conn == nil {
					c, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
					if err != nil {
						failed.Add(1)
						continue
					}
					conn, br = c, bufio.NewReader(c)
				}
				req = appendEvent(req[:0], u, int(i), due, body)
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				written.Add(1)
				status, keep, err := writeAndRead(conn, br, req)
				if err != nil || status >= 300 {
					failed.Add(1)
				}
				if !keep {
					conn.Close()
					conn = nil
				}
			}
		}()
	}
	wg.Wait()
	return failed.Load(), written.Load()
}

// openLoopConns is how many connections the open loop keeps: enough for 10,000 events/s at 6 ms
// each.
const openLoopConns = 64

// appendEvent appends a binary-mode CloudEvent POST for event i, due at due, to buf.
func appendEvent(buf []byte, u *url.URL, i int, due time.Time, body []byte) []byte {
	buf = append(buf, "POST "...)
	buf = append(buf, u.RequestURI()...)
	buf = append(buf, " HTTP/1.1\r\nHost: "...)
	buf = append(buf, u.Host...)
	buf = append(buf, "\r\nContent-Type: text/plain\r\nCe-Specversion: 1.0\r\nCe-Source: /bench\r\nCe-Id: open-"...)
	buf = strconv.AppendInt(buf, int64(i), 10)
	buf = append(buf, '-')
	buf = strconv.AppendUint(buf, uint64(rand.Uint32()), 10)
	buf = append(buf, "\r\nCe-Type: "...)
	buf = append(buf, eventTypes[i%len(eventTypes)]...)
	buf = append(buf, "\r\nCe-Benchsent: "...)
	buf = strconv.AppendInt(buf, due.UnixNano(), 10)
	buf = append(buf, "\r\nContent-Length: "...)
	buf = strconv.AppendInt(buf, int64(len(body)), 10)
	buf = append(buf, "\r\n\r\n"...)
	return append(buf, body...)
}

// writeAndRead sends one request and reads its response: its status, and whether the connection
// can carry the next request.
func writeAndRead(conn net.Conn, br *bufio.Reader, req []byte) (status int, keep bool, err error) {
	if _, err := conn.Write(req); err != nil {
		return 0, false, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, false, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err == nil && !resp.Close, err
}

func waitReady(target string, o *options) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodPost, target, strings.NewReader("{}"))
		req.Header.Set("Ce-Specversion", "1.0")
		req.Header.Set("Ce-Id", "warmup")
		req.Header.Set("Ce-Source", "/bench")
		req.Header.Set("Ce-Type", "bench.t0")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 300 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer 2xx within 20s", target)
}

// --- /proc ----------------------------------------------------------------------------------

// tree is the process and its children (nginx's workers): the system under test's processes.
func tree(p *os.Process) []int {
	if p == nil {
		return nil
	}
	pids := []int{p.Pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 && f[1] == strconv.Itoa(p.Pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// statFields are the fields of /proc/pid/stat after the command name: state, ppid, ...
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
}

// cpuTime is the user+system CPU time of the process and its children.
func cpuTime(p *os.Process) time.Duration {
	var total int64
	for _, pid := range tree(p) {
		if f := statFields(pid); len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += ut + st
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ is 100 on Linux
}

// cpuTimeOf is the user+system CPU time of the given processes (gone ones count nothing).
func cpuTimeOf(pids []int) time.Duration {
	var total int64
	for _, pid := range pids {
		if f := statFields(pid); len(f) > 12 {
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += ut + st
		}
	}
	return time.Duration(total) * time.Second / 100 // USER_HZ is 100 on Linux
}

// infraJVMs are the Kafka and Cassandra processes test/infra/infra.sh started, from its pid files.
func infraJVMs(dir string) []int {
	var pids []int
	for _, name := range []string{"kafka", "cassandra"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".pid"))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// selfCPU is this process's user+system time: the sink's share of a closed loop.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU is the first line of /proc/stat: all cores' time, and how much of it was idle.
type machineCPU struct{ total, idle int64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var m machineCPU
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		m.total += v
		if i == 3 || i == 4 { // idle, iowait
			m.idle += v
		}
	}
	return m
}

// busySince is the share of all cores' time that was not idle since m0, in percent.
func (m machineCPU) busySince(m0 machineCPU) float64 {
	if m.total <= m0.total {
		return 0
	}
	return 100 * (1 - float64(m.idle-m0.idle)/float64(m.total-m0.total))
}

// peakRSS is the sum of the peak resident sets of the process and its children, in MiB.
func peakRSS(p *os.Process) float64 {
	var kb float64
	for _, pid := range tree(p) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			kb += v
		}
	}
	return kb / 1024
}

// --- systems under test ---------------------------------------------------------------------

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startProc(name string, args ...string) (*os.Process, func(), error) {
	return startProcEnv("", name, args...)
}

// startProcEnv is startProc with extra environment variables (space-separated NAME=VALUE).
func startProcEnv(env, name string, args ...string) (*os.Process, func(), error) {
	cmd := exec.Command(name, args...) // output to /dev/null: no pipe for a grandchild to hold open
	if env != "" {
		cmd.Env = append(os.Environ(), strings.Fields(env)...)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stop := func() {
		// TERM first: nginx's master stops its workers only when asked nicely.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	return cmd.Process, stop, nil
}

func reverseProxy(listen, target string) {
	u, err := url.Parse(target)
	if err != nil {
		panic(err)
	}
	p := httputil.NewSingleHostReverseProxy(u)
	p.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	_ = http.ListenAndServe(listen, p)
}

func startReverseProxy(_ *options, sinkURL string) (string, *os.Process, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, nil, err
	}
	addr := freeAddr()
	p, stop, err := startProc(self, "reverseproxy", addr, sinkURL)
	return "http://" + addr + "/bench/default", p, stop, err
}

func startNginx(_ *options, sinkURL string) (string, *os.Process, func(), error) {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		return "", nil, nil, fmt.Errorf("nginx is not installed (apt-get install nginx-light)")
	}
	dir, err := os.MkdirTemp("", "switchyard-nginx")
	if err != nil {
		return "", nil, nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // nginx's workers run as nobody
		return "", nil, nil, err
	}
	addr := freeAddr()
	conf := fmt.Sprintf(`worker_processes 1;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  upstream sink { server %[2]s; keepalive 256; }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
`, dir, strings.TrimPrefix(sinkURL, "http://"), addr)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		return "", nil, nil, err
	}
	p, stop, err := startProc(bin, "-c", filepath.Join(dir, "nginx.conf"), "-p", dir)
	return "http://" + addr + "/bench/default", p, func() { stop(); os.RemoveAll(dir) }, err
}

func startBenthos(o *options, sinkURL string) (string, *os.Process, func(), error) {
	if o.benthos == "" {
		return "", nil, nil, fmt.Errorf("no Benthos binary (make bench builds one)")
	}
	dir, err := os.MkdirTemp("", "switchyard-benthos")
	if err != nil {
		return "", nil, nil, err
	}
	addr := freeAddr()
	var cases strings.Builder
	for _, t := range eventTypes {
		fmt.Fprintf(&cases, `      - check: 'meta("Ce-Type") == %q'
        output:
          http_client:
            url: %s/
            verb: POST
            max_in_flight: 64
            headers: {Content-Type: application/json}
            metadata: {include_prefixes: ["Ce-"]}
`, t, sinkURL)
	}
	conf := fmt.Sprintf(`http:
  address: %s
input:
  http_server:
    address: %s
    path: /bench/default
output:
  switch:
    cases:
%s`, freeAddr(), addr, cases.String())
	if err := os.WriteFile(filepath.Join(dir, "benthos.yaml"), []byte(conf), 0o644); err != nil {
		return "", nil, nil, err
	}
	p, stop, err := startProc(o.benthos, "-c", filepath.Join(dir, "benthos.yaml"))
	return "http://" + addr + "/bench/default", p, func() { stop(); os.RemoveAll(dir) }, err
}

// startSwitchyard runs the router with n triggers: four live ones (one per event type, so every
// event is delivered once, as through a proxy) and n-4 that match nothing; with n = 1, one trigger
// takes every type.
func startSwitchyard(o *options, sinkURL string, n int, dialect string) (string, *os.Process, func(), error) {
	return startSwitchyardWith(o, sinkURL, n, dialect, "", "")
}

// startSwitchyardWith is startSwitchyard with more SwitchyardConfig spec lines and broker
// metadata lines (both indented by two spaces).
func startSwitchyardWith(o *options, sinkURL string, n int, dialect, spec, brokerMeta string) (string, *os.Process, func(), error) {
	dir, err := os.MkdirTemp("", "switchyard-bench")
	if err != nil {
		return "", nil, nil, err
	}
	addr, admin := freeAddr(), freeAddr()
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: bench}\nspec:\n  ingress: {addr: %q}\n  admin: {addr: %q}\n  log: {level: error}\n  triggers: {concurrency: %d}\n%s---\n", addr, admin, benchConcurrency, spec)
	fmt.Fprintf(&b, "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: default\n  namespace: bench\n%s", brokerMeta)
	for i := 0; i < n; i++ {
		typ := fmt.Sprintf("bench.unused%d", i)
		if i < len(eventTypes) {
			typ = eventTypes[i]
		}
		filter := fmt.Sprintf("  filters: [{exact: {type: %s}}]\n", typ)
		switch {
		case n == 1 && dialect == "exact":
			filter = "  filters: [{prefix: {type: bench.}}]\n"
		case n == 1:
			filter = "  filters: [{cesql: \"type LIKE 'bench.%'\"}]\n"
		case dialect == "cesql":
			filter = fmt.Sprintf("  filters: [{cesql: \"type = '%s'\"}]\n", typ)
		}
		fmt.Fprintf(&b, "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t%d, namespace: bench}\nspec:\n  broker: default\n%s  subscriber: {uri: %q}\n  delivery: {retry: 0}\n", i, filter, sinkURL+"/")
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(b.String()), 0o644); err != nil {
		return "", nil, nil, err
	}
	args := []string{"serve", "--config", dir}
	if o.profileDir != "" {
		args = append(args, "--profiling")
	}
	p, stop, err := startProcEnv(o.switchyardEnv, o.switchyard, args...)
	target := "http://" + addr + "/bench/default"
	adminOf.Store(target, admin)
	return target, p, func() { stop(); os.RemoveAll(dir) }, err
}

// adminOf maps a Switchyard row's target URL to its admin address, where -profile reads its profile.
var adminOf sync.Map

// profileDuring saves a CPU profile of the Switchyard behind target, taken over d, to
// dir/scenario.pprof, in the background; wait returns once it is written (or failed, said on stderr).
func profileDuring(dir, scenario, target string, d time.Duration) (wait func()) {
	admin, ok := adminOf.Load(target)
	if !ok || dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(d.Seconds()))
		resp, err := http.Get(url)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("%s", resp.Status)
		}
		if err == nil {
			var b []byte
			if b, err = io.ReadAll(resp.Body); err == nil {
				err = os.WriteFile(filepath.Join(dir, scenario+".pprof"), b, 0o644)
			}
			resp.Body.Close()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "   profile of %s: %v\n", scenario, err)
		}
	}()
	return func() { <-done }
}

// --- output ---------------------------------------------------------------------------------

func write(o *options, results []Result, extra string) error {
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(struct {
		When    time.Time `json:"when"`
		Options string    `json:"options"`
		Results []Result  `json:"results"`
	}{time.Now().UTC(), fmt.Sprintf("closed loop %s x %d connections (wrk); open loop %d/s for %s; at load %d/s; %d-byte events", o.duration, o.connections, o.rate, o.openFor, o.loadRate, o.size), results}, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "results.json"), j, 0o644); err != nil {
		return err
	}
	var md strings.Builder
	fmt.Fprintf(&md, "| scenario | answered/s (wrk) | delivered/s | wrk p50 / p99 ms | e2e p50 / p99 / p99.9 ms | e2e p50 / p99 / p99.9 ms at %d/s | CPU µs/event | peak RSS MB | errors |\n|---|---|---|---|---|---|---|---|---|\n", o.loadRate)
	for _, r := range results {
		if r.Note != "" {
			fmt.Fprintf(&md, "| %s | %s | | | | | | | |\n", r.Scenario, r.Note)
			continue
		}
		atLoad := "-"
		if r.LoadRate > 0 {
			atLoad = fmt.Sprintf("%.2f / %.2f / %.2f", r.LoadP50MS, r.LoadP99MS, r.LoadP999MS)
			if r.LoadSentPS < 0.95*float64(r.LoadRate) {
				atLoad += fmt.Sprintf(" (sent %.0f/s)", r.LoadSentPS)
			}
		}
		cpu, rss := fmt.Sprintf("%.1f", r.CPUUsPerEv), fmt.Sprintf("%.0f", r.PeakRSSMB)
		if r.Scenario == "direct" { // no process of its own between generator and sink
			cpu, rss = "-", "-"
		}
		fmt.Fprintf(&md, "| %s | %.0f | %.0f | %.2f / %.2f | %.2f / %.2f / %.2f | %s | %s | %s | %d |\n", r.Scenario, r.AnsweredPerS, r.DeliveredPS,
			r.WrkP50MS, r.WrkP99MS, r.E2EP50MS, r.E2EP99MS, r.E2EP999MS, atLoad, cpu, rss, r.Errors)
	}
	md.WriteString(targets(results))
	md.WriteString(issue22(results))
	md.WriteString(extra)
	if err := os.WriteFile(filepath.Join(o.out, "results.md"), []byte(md.String()), 0o644); err != nil {
		return err
	}
	fmt.Print(md.String())
	return nil
}

// findResult is the row of the named scenario that ran, or nil.
func findResult(results []Result, name string) *Result {
	for i := range results {
		if results[i].Scenario == name && results[i].Note == "" {
			return &results[i]
		}
	}
	return nil
}

// verdict says whether a target was met, in the words the results use.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// targets judges the run against issue #8's targets (100 exact triggers, 1 KiB, 16 connections):
// delivered/s at least the reverse proxy's and twice Benthos's, p99 no worse than the proxy's,
// both at the same load and in the saturated closed loop. Switchyard is judged as it runs by
// default and paced (switchyard.dev/max-in-flight). Rows that did not run are not judged.
func targets(results []Result) string {
	find := func(name string) *Result { return findResult(results, name) }
	proxy, benthos := find("go-reverseproxy"), find("benthos")
	if proxy == nil {
		return ""
	}
	var b strings.Builder
	for _, name := range roundsScenarios[1:] {
		sy := find(name)
		if sy == nil {
			continue
		}
		fmt.Fprintf(&b, "\nTargets (%s against this run's other rows):\n", name)
		fmt.Fprintf(&b, "- delivered/s at least the reverse proxy's: %s (%.0f against %.0f)\n", verdict(sy.DeliveredPS >= proxy.DeliveredPS), sy.DeliveredPS, proxy.DeliveredPS)
		if benthos != nil {
			fmt.Fprintf(&b, "- twice Benthos's: %s (%.0f against 2 x %.0f)\n", verdict(sy.DeliveredPS >= 2*benthos.DeliveredPS), sy.DeliveredPS, benthos.DeliveredPS)
		}
		if sy.LoadRate > 0 && proxy.LoadRate > 0 {
			fmt.Fprintf(&b, "- e2e p99 at %d/s no worse than the proxy's: %s (%.2f against %.2f ms)\n", sy.LoadRate, verdict(sy.LoadP99MS <= proxy.LoadP99MS), sy.LoadP99MS, proxy.LoadP99MS)
		}
		fmt.Fprintf(&b, "- wrk p99 at saturation no worse than the proxy's: %s (%.2f against %.2f ms)\n", verdict(sy.WrkP99MS <= proxy.WrkP99MS), sy.WrkP99MS, proxy.WrkP99MS)
	}
	return b.String()
}

// issue22 prints where each row's closed-loop CPU went and judges the run against issue #22's
// targets: the durable rows against the in-memory one at the same connections, the in-memory row
// against nginx. On cores every process shares, a row whose machine is fully busy is bound by the
// sum of its CPU per event, not by its own share alone.
func issue22(results []Result) string {
	find := func(name string) *Result { return findResult(results, name) }
	var b strings.Builder
	b.WriteString("\nWhere the closed loop's CPU went, µs per delivered event (the system under test; Kafka's and Cassandra's JVMs; wrk and the harness's sink), how busy the two cores were, and the durable rows' e2e latency at half their delivered rate:\n\n")
	b.WriteString("| scenario | connections | delivered/s | machine busy | system | JVMs | wrk + sink | sum | e2e p50 / p99 / p99.9 ms at half its rate |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		if r.Note != "" || r.Scenario == "direct" {
			continue
		}
		half := "-"
		if r.HalfRate > 0 {
			half = fmt.Sprintf("%.2f / %.2f / %.2f at %d/s", r.HalfP50MS, r.HalfP99MS, r.HalfP999MS, r.HalfRate)
			if r.HalfSentPS < 0.95*float64(r.HalfRate) {
				half += fmt.Sprintf(" (sent %.0f/s)", r.HalfSentPS)
			}
		}
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f %% | %.1f | %.1f | %.1f | %.1f | %s |\n", r.Scenario, r.Connections, r.DeliveredPS, r.MachineBusyPct,
			r.CPUUsPerEv, r.JVMCPUUsPerEv, r.LoadCPUUsPerEv, r.CPUUsPerEv+r.JVMCPUUsPerEv+r.LoadCPUUsPerEv, half)
	}
	mem := find("switchyard-exact-100")
	if mem == nil {
		return b.String()
	}
	b.WriteString("\nTargets of issue #22 (this run):\n")
	ratio := func(name string, against *Result, atLeast float64, what string) {
		r := find(name)
		if r == nil || against == nil || against.DeliveredPS == 0 {
			return
		}
		share := r.DeliveredPS / against.DeliveredPS
		fmt.Fprintf(&b, "- %s: %s (%.0f against %.0f delivered/s, %.0f %%)\n", what, verdict(share >= atLeast), r.DeliveredPS, against.DeliveredPS, 100*share)
	}
	ratio("switchyard-kafka-exact-100", mem, 0.5, fmt.Sprintf("Kafka-class broker at least half the in-memory row at %d connections", mem.Connections))
	ratio("switchyard-kafka-exact-100-c64", find("switchyard-exact-100-c64"), 0.5, "Kafka-class broker at least half the in-memory row at 64 connections")
	for _, name := range []string{"switchyard-kafka-exact-100", "switchyard-kafka-exact-100-c64"} {
		if r := find(name); r != nil && r.HalfRate > 0 {
			fmt.Fprintf(&b, "- %s: e2e p99 at half its rate (%d/s) under 20 ms: %s (%.2f ms)\n", name, r.HalfRate, verdict(r.HalfP99MS < 20), r.HalfP99MS)
		}
	}
	if r := find("switchyard-cassandra-exact-100"); r != nil {
		ratio(r.Scenario, mem, 0.8, "Cassandra result store at least 80 % of the in-memory row")
		fmt.Fprintf(&b, "- Cassandra result store without a 429: %s (%d refused)\n", verdict(r.Errors == 0), r.Errors)
	}
	if nginx := find("nginx"); nginx != nil && nginx.CPUUsPerEv > 0 {
		ratio(mem.Scenario, nginx, 1, "in memory at least nginx's delivered/s")
		fmt.Fprintf(&b, "- in memory at most twice nginx's CPU per event: %s (%.1f against %.1f µs, %.1f ×)\n", verdict(mem.CPUUsPerEv <= 2*nginx.CPUUsPerEv), mem.CPUUsPerEv, nginx.CPUUsPerEv, mem.CPUUsPerEv/nginx.CPUUsPerEv)
	}
	fmt.Fprintf(&b, "- in memory peak RSS at most 100 MB by default: %s (%.0f MB)\n", verdict(mem.PeakRSSMB <= 100), mem.PeakRSSMB)
	return b.String()
}

// benchConcurrency is the router's per-trigger delivery concurrency in the benchmark (its default).
var benchConcurrency = 64
