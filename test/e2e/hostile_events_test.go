package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Black-box tests of what producers and subscribers choose the bytes of (issue #36, cases 1 to 6),
// each under default settings: every attribute counted at its cost, kept failures and outcomes
// bounded in bytes, metric labels bounded in length, batches counted before they are built, and
// replies not read past their limit. Memory is read as the live Go heap after a collection (what is
// retained) or as VmHWM over the RSS before (what an attack costs at its peak).

// liveHeapMB is the router's live heap after a full collection: /debug/pprof/heap?gc=1 collects
// first (the router runs with --profiling), then /metrics tells the heap in use.
func liveHeapMB(t *testing.T, r *router) float64 {
	t.Helper()
	resp, err := http.Get(r.Admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_, metrics := r.get(t, "/metrics")
	v := metricValue(metrics, "go_memstats_heap_alloc_bytes")
	if v < 0 {
		t.Fatal("no go_memstats_heap_alloc_bytes in /metrics")
	}
	return v / (1 << 20)
}

// rawSubscriber is a subscriber on a bare TCP listener, for deliveries net/http's server refuses
// before a handler sees them (heads over 1 MiB): it reads each request whole, counts it, and
// answers with answer's response ("" holds the connection unanswered until the test ends).
type rawSubscriber struct {
	URL      string
	requests atomic.Int64
}

func newRawSubscriber(t *testing.T, answer string) *rawSubscriber {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	s := &rawSubscriber{URL: "http://" + ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					s.requests.Add(1)
					if answer == "" {
						<-done
						return
					}
					if _, err := io.WriteString(c, answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

// waitFor waits until the subscriber has read n requests.
func (s *rawSubscriber) waitFor(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.requests.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber read %d requests, want %d", s.requests.Load(), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const (
	answer200 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
	answer500 = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"
)

// structuredEvent is a structured-mode event with extra members (`,"name":value...`).
func structuredEvent(id, extra string) ceRequest {
	return ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"},
		Body: `{"specversion":"1.0","id":"` + id + `","source":"/e2e","type":"t"` + extra + `}`}
}

// TestAttributesCountAtTheirCost (case 1): unfinished events carrying 3 MiB in dataschema,
// datacontenttype or their source's fragment or userinfo were counted at about 1 KiB each (150
// accepted, the gauge at 0.16 MB, RSS 1.26 GB), and 200,000 empty extensions at 16 bytes each (59
// accepted at a gauge of 265 MB, RSS 2.19 GB). Now the broker's 256 MiB bound refuses them with 429
// once their real bytes reach it, and the router's peak stays near the bound.
func TestAttributesCountAtTheirCost(t *testing.T) {
	// A subscriber that never answers: every accepted event stays unfinished. The attempt's timeout
	// outlasts the test: at the default 30 s, a run slowed by the rest of the suite saw its first
	// events fail and leave (their outcome, event and all, in the result store's memory), and more
	// accepted than the bound holds at once.
	hung := newRawSubscriber(t, "")
	r := startRouter(t, brokerYAML("default")+triggerYAML("stalled", "  broker: default\n  subscriber:\n    uri: "+hung.URL+"\n  delivery:\n    retry: 0\n    timeout: PT600S\n"), "", "--profiling")
	_ = liveHeapMB(t, r)
	big := strings.Repeat("a", 3<<20)
	shapes := []func(i int) ceRequest{
		func(i int) ceRequest {
			return structuredEvent(fmt.Sprint("ds-", i), `,"dataschema":"https://x/`+big+`"`)
		},
		func(i int) ceRequest {
			return structuredEvent(fmt.Sprint("ct-", i), `,"datacontenttype":"text/`+big+`"`)
		},
		func(i int) ceRequest {
			return ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"},
				Body: fmt.Sprintf(`{"specversion":"1.0","id":"fr-%d","source":"/e2e#%s","type":"t"}`, i, big)}
		},
		func(i int) ceRequest {
			return ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"},
				Body: fmt.Sprintf(`{"specversion":"1.0","id":"ui-%d","source":"https://%s@h/","type":"t"}`, i, big)}
		},
	}
	accepted := 0
	peak, _ := attack(t, r, 1, func(int) int {
		for i := range 200 {
			code, _, msg := r.send(t, "/default/default", shapes[i%len(shapes)](i))
			switch code {
			case 202:
				accepted++
			case 429:
				if !strings.Contains(msg, "maxUnfinishedBytes") {
					t.Errorf("429 %q, want it to name maxUnfinishedBytes", msg)
				}
			default:
				t.Errorf("event %d: %d %q", i, code, msg)
			}
		}
		return 0
	})
	_, metrics := r.get(t, "/metrics")
	unfinished := metricValue(metrics, "switchyard_unfinished_event_bytes")
	heap := liveHeapMB(t, r)
	t.Logf("200 events of 3 MiB attributes to a stalled trigger: %d accepted, unfinished bytes %.0f MB, live heap %.0f MB, peak RSS +%.0f MB", accepted, unfinished/1e6, heap, peak)
	if accepted == 0 || accepted > 86 {
		t.Errorf("%d accepted, want 1 to 86 (256 MiB of 3 MiB events)", accepted)
	}
	if unfinished < float64(accepted)*float64(3<<20) {
		t.Errorf("the unfinished-bytes gauge says %.0f bytes for %d events of 3 MiB", unfinished, accepted)
	}
	if heap > unfinished/(1<<20)+100 {
		t.Errorf("live heap %.0f MB for %.0f MB counted: attributes cost more than they are counted", heap, unfinished/(1<<20))
	}
	// The bounds' sum is the soft memory limit outside a container (896 MiB by default): the
	// garbage of the refused bodies stays under it too.
	if peak > 896 {
		t.Errorf("peak RSS grew by %.0f MB, past the 896 MiB soft limit the default bounds add up to", peak)
	}

	// The same with 200,000 empty extensions per event, on a router of its own.
	r = startRouter(t, brokerYAML("default")+triggerYAML("stalled", "  broker: default\n  subscriber:\n    uri: "+hung.URL+"\n  delivery:\n    retry: 0\n    timeout: PT600S\n"), "", "--profiling")
	var ext strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&ext, `,"a%d":""`, i)
	}
	accepted = 0
	peak, _ = attack(t, r, 1, func(int) int {
		for i := range 40 {
			code, _, msg := r.send(t, "/default/default", structuredEvent(fmt.Sprint("ext-", i), ext.String()))
			switch code {
			case 202:
				accepted++
			case 429:
			default:
				t.Errorf("event %d: %d %q", i, code, msg)
			}
		}
		return 0
	})
	_, metrics = r.get(t, "/metrics")
	unfinished = metricValue(metrics, "switchyard_unfinished_event_bytes")
	heap = liveHeapMB(t, r)
	t.Logf("40 events of 200,000 empty extensions: %d accepted, unfinished bytes %.0f MB, live heap %.0f MB, peak RSS +%.0f MB", accepted, unfinished/1e6, heap, peak)
	if accepted == 0 || accepted > 9 {
		t.Errorf("%d accepted, want 1 to 9 (each holds about 12 MB, and 20 MB more while a delivery of it is in flight)", accepted)
	}
	if peak > 896 {
		t.Errorf("peak RSS grew by %.0f MB, past the 896 MiB soft limit the default bounds add up to", peak)
	}
	if heap > unfinished/(1<<20)+100 {
		t.Errorf("live heap %.0f MB for %.0f MB counted: extensions cost more than they are counted", heap, unfinished/(1<<20))
	}
}

// waitForGauge waits until a /metrics series reads want.
func waitForGauge(t *testing.T, r *router, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, metrics := r.get(t, "/metrics")
		if v := metricValue(metrics, series); v == want {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("%s is %v, want %v", series, v, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKeptFailuresCountAttributes (case 2): failed events kept for redrive with a 3 MiB
// datacontenttype were counted at about 1 KiB each (300 kept, the gauge at 0.3 MB, RSS 1.48 GB).
// Now the result store's 64 MiB bound on kept events counts them whole.
func TestKeptFailuresCountAttributes(t *testing.T) {
	sub := newRawSubscriber(t, answer500)
	r := startRouter(t, brokerYAML("default")+triggerYAML("failing", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n  delivery:\n    retry: 0\n"), "", "--profiling")
	base := liveHeapMB(t, r)
	big := strings.Repeat("a", 3<<20)
	for i := range 100 {
		if code, _, msg := r.send(t, "/default/default", structuredEvent(fmt.Sprint("kept-", i), `,"datacontenttype":"text/`+big+`"`)); code != 202 {
			t.Fatalf("event %d: %d %q", i, code, msg)
		}
	}
	sub.waitFor(t, 100, 30*time.Second)
	waitForGauge(t, r, "switchyard_unfinished_event_bytes", 0)
	_, metrics := r.get(t, "/metrics")
	kept := metricValue(metrics, "switchyard_results_event_bytes")
	heap := liveHeapMB(t, r) - base
	t.Logf("100 failed events with a 3 MiB datacontenttype: %.0f MB kept by the count, live heap +%.0f MB", kept/1e6, heap)
	if kept > 64<<20 || kept < 32<<20 {
		t.Errorf("the result store counts %.0f bytes of kept events, want near its 64 MiB bound", kept)
	}
	if heap > 64+48 {
		t.Errorf("live heap grew by %.0f MB keeping at most 64 MiB of failed events", heap)
	}
}

// TestOutcomesDoNotKeepProducerStrings (case 3): unmatched events with a 3 MiB traceparent left
// the whole value alive in every outcome through its trace id, a substring (200 events, RSS
// 1.18 GB, every gauge 0); and delivered outcomes keep their event's id, however long. Now an
// invalid traceparent is dropped at the door, the trace id is a copy, and the outcomes' records
// are bounded in bytes (128 MiB).
func TestOutcomesDoNotKeepProducerStrings(t *testing.T) {
	sub := newRawSubscriber(t, answer200)
	r := startRouter(t, brokerYAML("default")+triggerYAML("some", "  broker: default\n  filter:\n    attributes:\n      type: wanted\n  subscriber:\n    uri: "+sub.URL+"\n"), "", "--profiling")
	base := liveHeapMB(t, r)
	long := strings.Repeat("a", 3<<20)
	for i := range 100 {
		tp := fmt.Sprintf("00-%032x-%s", i+1, long)
		if code, _, msg := r.send(t, "/default/default", structuredEvent(fmt.Sprint("tp-", i), `,"traceparent":"`+tp+`"`)); code != 202 {
			t.Fatalf("event %d: %d %q", i, code, msg)
		}
		time.Sleep(10 * time.Millisecond) // under the unmatched outcomes' rate: each is recorded
	}
	waitForGauge(t, r, "switchyard_unfinished_event_bytes", 0)
	heap := liveHeapMB(t, r) - base
	t.Logf("100 unmatched events with a 3 MiB traceparent: live heap +%.0f MB", heap)
	if heap > 40 {
		t.Errorf("live heap grew by %.0f MB after 100 unmatched events: their traceparents are kept", heap)
	}
	// Delivered outcomes with 2 MiB ids: 300 MiB of ids, at most 128 MiB of records held.
	id := strings.Repeat("i", 2<<20)
	for i := range 150 {
		if code, _, msg := r.send(t, "/default/default", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			Body: fmt.Sprintf(`{"specversion":"1.0","id":"%d-%s","source":"/e2e","type":"wanted"}`, i, id)}); code != 202 {
			t.Fatalf("event %d: %d %q", i, code, msg)
		}
	}
	sub.waitFor(t, 150, 30*time.Second)
	waitForGauge(t, r, "switchyard_unfinished_event_bytes", 0)
	heap = liveHeapMB(t, r) - base
	t.Logf("150 delivered events with 2 MiB ids: live heap +%.0f MB", heap)
	if heap > 128+40 {
		t.Errorf("live heap grew by %.0f MB keeping outcomes bounded to 128 MiB of records", heap)
	}
}

// TestLongEventTypesAreNotLabels (case 4): 100 distinct event types of 1 MB each made /metrics
// answer 3.5 GB. Types over 256 bytes are counted under event_type="(other)".
func TestLongEventTypesAreNotLabels(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, hostileManifests(sub), "")
	long := strings.Repeat("t", 1<<20)
	for i := range 100 {
		req := ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			Body: fmt.Sprintf(`{"specversion":"1.0","id":"lt-%d","source":"/e2e","type":"%d%s"}`, i, i, long)}
		if code, _, msg := r.send(t, "/default/default", req); code != 202 {
			t.Fatalf("event %d: %d %q", i, code, msg)
		}
	}
	sub.waitFor(t, 100, 30*time.Second)
	_, metrics := r.get(t, "/metrics")
	t.Logf("/metrics after 100 event types of 1 MB: %d bytes", len(metrics))
	if len(metrics) > 1<<20 {
		t.Errorf("/metrics is %d bytes after 100 event types of 1 MB", len(metrics))
	}
	if !strings.Contains(metrics, `event_type="(other)"`) {
		t.Error(`no series with event_type="(other)"`)
	}
}

// TestBatchesAreCountedBeforeTheyAreBuilt (case 5): 16 concurrent batches of 3.9 MB, 68,000
// tiny events each, were all refused with 413, but only after each was decoded: peak RSS 2.35 GB.
// Now a batch is counted before any of its events is built.
func TestBatchesAreCountedBeforeTheyAreBuilt(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, hostileManifests(sub), "")
	var b strings.Builder
	b.WriteString("[")
	for i := range 68000 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"specversion":"1.0","id":"%d","source":"/s","type":"t"}`, i)
	}
	b.WriteString("]")
	batch := b.String()
	peak, codes := attack(t, r, 16, func(int) int {
		code, _, _, err := r.trySend("/default/default", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: batch})
		if err != nil {
			return 0
		}
		return code
	})
	t.Logf("16 batches of %.1f MB, 68,000 events each: answers %v, peak RSS +%.0f MB", float64(len(batch))/1e6, codes, peak)
	if codes[http.StatusRequestEntityTooLarge] != 16 {
		t.Errorf("answers %v, want 16 × 413", codes)
	}
	if peak > 200 {
		t.Errorf("peak RSS grew by %.0f MB refusing batches whose bodies are 64 MB in all", peak)
	}
	sub.quiet(t, 0, 100*time.Millisecond)
}

// TestOversizedRepliesAreNotReadOn (case 6): a subscriber's reply announcing 1 GiB, or an endless
// chunked one, failed its attempt past 4 MiB but was read whole first (32.9 GB in 10 s for the
// endless one). Now the connection is dropped at the limit.
func TestOversizedRepliesAreNotReadOn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var written, attempts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(15 * time.Second))
				buf := make([]byte, 64<<10)
				if _, err := c.Read(buf); err != nil {
					return
				}
				attempts.Add(1)
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nCe-Specversion: 1.0\r\nCe-Id: r\r\nCe-Source: /r\r\nCe-Type: r\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
				chunk := []byte(fmt.Sprintf("%x\r\n%s\r\n", 32<<10, strings.Repeat("x", 32<<10)))
				for written.Load() < 8<<30 {
					n, err := c.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	r := startRouter(t, brokerYAML("default")+triggerYAML("endless", "  broker: default\n  subscriber:\n    uri: http://"+ln.Addr().String()+"\n  delivery:\n    retry: 2\n    backoffDelay: PT0.1S\n"), "")
	if code, _, msg := r.send(t, "/default/default", binaryEvent("endless-1", "t")); code != 202 {
		t.Fatalf("%d %q", code, msg)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, body := r.get(t, "/v1/events/endless-1")
		if strings.Contains(body, `"failed"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failed outcome: %s", body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d attempts against an endless chunked reply: the subscriber wrote %d MiB", attempts.Load(), written.Load()>>20)
	if attempts.Load() != 3 {
		t.Errorf("%d attempts, want 3", attempts.Load())
	}
	if written.Load() > 3*32<<20 {
		t.Errorf("the subscriber wrote %d MiB in 3 attempts with a 4 MiB reply limit", written.Load()>>20)
	}
}
