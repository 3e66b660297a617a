// Command tracecycles reads a Go execution trace of a Switchyard router (admin /debug/pprof/trace
// with --profiling) and shows where its HTTP requests spend their time: each request cycle of a
// server connection, from the connection becoming readable to its next wait for the network, is
// split into runnable (waiting for a P), running and blocked time, and the sites that blocked the
// slowest cycles are listed. It also prints how many goroutines stood runnable at once.
//
//	go run . trace.out
//
// It is a module of its own so that golang.org/x/exp stays out of the router's dependencies.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"golang.org/x/exp/trace"
)

const serveFrame = "net/http.(*conn).serve"

// cycle is one request of a server connection.
type cycle struct {
	start                      trace.Time
	runnable, running, blocked time.Duration
	blockedAt                  map[string]time.Duration
}

type goroutine struct {
	serves   bool // a server connection's goroutine
	last     trace.Time
	waitSite string
	cur      *cycle
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tracecycles trace.out")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fail(err)
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		fail(err)
	}
	gs := map[trace.GoID]*goroutine{}
	var cycles []*cycle
	runnable, nextSample := 0, trace.Time(0)
	var samples []int
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(err)
		}
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		id := st.Resource.Goroutine()
		from, to := st.Goroutine()
		g := gs[id]
		if g == nil {
			g = &goroutine{last: ev.Time()}
			gs[id] = g
		}
		// Count runnable goroutines, sampled every 100 µs.
		if to == trace.GoRunnable && from != trace.GoRunnable {
			runnable++
		} else if from == trace.GoRunnable && to != trace.GoRunnable {
			runnable--
		}
		if ev.Time() >= nextSample {
			samples = append(samples, runnable)
			nextSample = ev.Time() + trace.Time(100*time.Microsecond)
		}
		// Account the time since the last transition to the cycle in progress.
		if c := g.cur; c != nil {
			d := time.Duration(ev.Time() - g.last)
			switch from {
			case trace.GoRunnable:
				c.runnable += d
			case trace.GoRunning, trace.GoSyscall:
				c.running += d
			case trace.GoWaiting:
				c.blocked += d
				c.blockedAt[g.waitSite] += d
			}
		}
		g.last = ev.Time()
		if to == trace.GoWaiting {
			stack := frames(st.Stack)
			g.serves = g.serves || strings.Contains(stack, serveFrame)
			g.waitSite = st.Reason + " @ " + stack
			if st.Reason == "network" && g.cur != nil {
				cycles = append(cycles, g.cur) // the request is answered; the connection waits for the next
				g.cur = nil
			}
		}
		if g.serves && from == trace.GoWaiting && to == trace.GoRunnable && strings.HasPrefix(g.waitSite, "network") {
			g.cur = &cycle{start: ev.Time(), blockedAt: map[string]time.Duration{}}
		}
	}
	report(cycles, samples)
}

func report(cycles []*cycle, samples []int) {
	if len(cycles) == 0 {
		fail(fmt.Errorf("no request cycles of an HTTP server connection in the trace"))
	}
	total := func(c *cycle) time.Duration { return c.runnable + c.running + c.blocked }
	sort.Slice(cycles, func(i, j int) bool { return total(cycles[i]) < total(cycles[j]) })
	fmt.Printf("%d request cycles\n%-6s %10s %10s %10s %10s\n", len(cycles), "", "total", "runnable", "running", "blocked")
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		c := cycles[int(q*float64(len(cycles)-1))]
		fmt.Printf("p%-5g %10v %10v %10v %10v\n", q*100, round(total(c)), round(c.runnable), round(c.running), round(c.blocked))
	}
	slow := cycles[len(cycles)*9/10:]
	var run, exec, blk time.Duration
	sites := map[string]time.Duration{}
	for _, c := range slow {
		run, exec, blk = run+c.runnable, exec+c.running, blk+c.blocked
		for s, d := range c.blockedAt {
			sites[s] += d
		}
	}
	n := time.Duration(len(slow))
	fmt.Printf("slowest 10%%, mean: runnable %v, running %v, blocked %v\n", round(run/n), round(exec/n), round(blk/n))
	type site struct {
		at string
		d  time.Duration
	}
	var top []site
	for s, d := range sites {
		top = append(top, site{s, d})
	}
	sort.Slice(top, func(i, j int) bool { return top[i].d > top[j].d })
	for i := 0; i < len(top) && i < 3; i++ {
		fmt.Printf("  blocked %v per slow cycle: %s\n", round(top[i].d/n), top[i].at)
	}
	sort.Ints(samples)
	if len(samples) > 0 {
		fmt.Printf("runnable goroutines (every 100µs): p50 %d, p90 %d, p99 %d, max %d\n",
			samples[len(samples)/2], samples[len(samples)*9/10], samples[len(samples)*99/100], samples[len(samples)-1])
	}
}

// frames names the innermost frames of st, innermost first.
func frames(st trace.Stack) string {
	var out []string
	for f := range st.Frames() {
		if len(out) == 4 {
			break
		}
		out = append(out, f.Func)
	}
	return strings.Join(out, " < ")
}

func round(d time.Duration) time.Duration { return d.Round(time.Microsecond) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "tracecycles:", err)
	os.Exit(1)
}
