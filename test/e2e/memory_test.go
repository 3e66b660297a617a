package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rssMB reads a process's resident set size from /proc.
func rssMB(t *testing.T, pid int) float64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestSlowSubscriberMemoryIsBounded: a subscriber far slower than the producers does not make the
// router's memory grow with the events sent: the queue and the trigger's lane bound what is held,
// the rest is refused with 429 (and nothing accepted is lost). 32 KiB events, 8 senders for 8 s.
func TestSlowSubscriberMemoryIsBounded(t *testing.T) {
	sub := newSubscriber(t, func(int, received, http.ResponseWriter) { time.Sleep(200 * time.Millisecond) })
	r := startRouter(t, brokerYAML("default")+triggerYAML("slow", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"    queueSize: 500\n")
	body := strings.Repeat("x", 32<<10)
	base := rssMB(t, r.cmd.Process.Pid)

	var accepted, refused, sent atomic.Int64
	stop := time.Now().Add(8 * time.Second)
	var peak, firstHalf float64
	half := time.Now().Add(4 * time.Second)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				req := binaryEvent(fmt.Sprintf("m-%d-%d", w, i), "t")
				req.Headers["Content-Type"] = "text/plain"
				req.Body = body
				code, _, _ := r.send(t, "/default/default", req)
				sent.Add(1)
				switch code {
				case 202:
					accepted.Add(1)
				case 429:
					refused.Add(1)
					time.Sleep(5 * time.Millisecond)
				default:
					t.Errorf("answer %d", code)
					return
				}
			}
		}()
	}
	for time.Now().Before(stop) {
		peak = max(peak, rssMB(t, r.cmd.Process.Pid))
		if time.Now().Before(half) {
			firstHalf = peak
		}
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("sent %d (%.0f MB of events), accepted %d, refused with 429: %d; RSS %.0f MB at start, peak %.0f MB in the first 4 s, %.0f MB in all",
		sent.Load(), float64(sent.Load())*32/1024, accepted.Load(), refused.Load(), base, firstHalf, peak)
	if refused.Load() == 0 {
		t.Fatal("no 429: the subscriber was not slow enough to test the bound")
	}
	// The bound: queue (500) + lane (64 in flight + 256 waiting) events of 32 KiB is ~26 MB held,
	// a few copies each on the way, and GOGC=400 lets the heap reach five times what is live; 300 MB
	// above the start leaves room for that, not for memory that grows with the ~400 MB sent.
	if peak-base > 300 {
		t.Errorf("RSS grew by %.0f MB under a slow subscriber", peak-base)
	}
	// Bounded means flat: the second half of the run, with as much again sent, does not climb on.
	if peak > firstHalf*1.25+20 {
		t.Errorf("RSS still climbing: %.0f MB after 4 s, %.0f MB after 8 s", firstHalf, peak)
	}
	sub.waitFor(t, int(accepted.Load()), 120*time.Second)
}
