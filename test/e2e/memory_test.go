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
// the rest is refused with 429 (and nothing accepted is lost). 8 senders offer 20,000 events of
// 32 KiB (625 MB; times SWITCHYARD_SOAK_SCALE), more than the memory bound below, however long that
// takes on a busy machine.
func TestSlowSubscriberMemoryIsBounded(t *testing.T) {
	sub := newSubscriber(t, func(int, received, http.ResponseWriter) { time.Sleep(200 * time.Millisecond) })
	r := startRouter(t, brokerYAML("default")+triggerYAML("slow", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"),
		"    queueSize: 500\n")
	body := strings.Repeat("x", 32<<10)
	base := rssMB(t, r.cmd.Process.Pid)

	scale := soakScale(t)
	toOffer := int64(20000 * scale)
	var accepted, refused, sent atomic.Int64
	deadline := time.Now().Add(time.Duration(scale) * 60 * time.Second)
	var peak float64
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; sent.Add(1) <= toOffer && time.Now().Before(deadline); i++ {
				req := binaryEvent(fmt.Sprintf("m-%d-%d", w, i), "t")
				req.Headers["Content-Type"] = "text/plain"
				req.Body = body
				code, _, _ := r.send(t, "/default/default", req)
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
	go func() { wg.Wait(); close(done) }()
	for watching := true; watching; {
		peak = max(peak, rssMB(t, r.cmd.Process.Pid))
		select {
		case <-done:
			watching = false
		case <-time.After(200 * time.Millisecond):
		}
	}
	offered := accepted.Load() + refused.Load()
	t.Logf("offered %d events (%.0f MB), accepted %d, refused with 429: %d; RSS %.0f MB at start, peak %.0f MB",
		offered, float64(offered)*32/1024, accepted.Load(), refused.Load(), base, peak)
	if offered < toOffer {
		t.Fatalf("only %d of %d events offered within %d s: too few to tell a bound from a leak", offered, toOffer, 60*scale)
	}
	if refused.Load() == 0 {
		t.Fatal("no 429: the subscriber was not slow enough to test the bound")
	}
	// The bound: queue (500) + lane (64 in flight + 256 waiting) events of 32 KiB is ~26 MB held,
	// a few copies each on the way, and GOGC=400 lets the heap reach five times what is live; 300 MB
	// above the start leaves room for that, not for memory that grows with the 625 MB offered.
	if peak-base > 300 {
		t.Errorf("RSS grew by %.0f MB under a slow subscriber", peak-base)
	}
	sub.waitFor(t, int(accepted.Load()), time.Duration(scale)*120*time.Second)
}
