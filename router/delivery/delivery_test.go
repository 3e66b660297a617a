package delivery

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/cehttp"
)

func TestBackoffWaits(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		want []time.Duration // waits before retries 1, 2, 3, ...
	}{
		{"exponential", Policy{Backoff: Exponential, Delay: 200 * time.Millisecond}, []time.Duration{200, 400, 800, 1600}},
		{"linear", Policy{Backoff: Linear, Delay: 200 * time.Millisecond}, []time.Duration{200, 400, 600, 800}},
		{"zero delay", Policy{Backoff: Exponential}, []time.Duration{0, 0, 0}},
		{"exponential to backoffMax", Policy{Backoff: Exponential, Delay: 200 * time.Millisecond, BackoffMax: time.Second}, []time.Duration{200, 400, 800, 1000, 1000}},
		{"linear to backoffMax", Policy{Backoff: Linear, Delay: 200 * time.Millisecond, BackoffMax: 500 * time.Millisecond}, []time.Duration{200, 400, 500, 500}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, w := range c.want {
				if got := c.p.Wait(i + 1); got != w*time.Millisecond {
					t.Errorf("Wait(%d) = %s, want %s", i+1, got, w*time.Millisecond)
				}
			}
		})
	}
	p := Policy{Backoff: Exponential, Delay: time.Second}
	if got := p.Wait(200); got != maxWait {
		t.Errorf("Wait(200) = %s, want the %s cap", got, maxWait)
	}
	for i := 0; i < 1000; i++ {
		if j := jitter(200 * time.Millisecond); j < 0 || j >= 20*time.Millisecond {
			t.Fatalf("jitter(200ms) = %s, want [0, 20ms)", j)
		}
		if j := jitter(time.Hour); j >= maxJitter {
			t.Fatalf("jitter(1h) = %s, want below the %s cap", j, maxJitter)
		}
	}
}

func TestRetryAfterWait(t *testing.T) {
	p := Policy{RetryAfterMax: 5 * time.Second}
	for _, c := range []struct{ backoff, retryAfter, want time.Duration }{
		{time.Second, 3 * time.Second, 3 * time.Second},
		{time.Second, 60 * time.Second, 5 * time.Second}, // capped
		{4 * time.Second, time.Second, 4 * time.Second},  // backoff is larger
		{time.Second, -1, time.Second},                   // no header
	} {
		if got := p.RetryAfterWait(c.backoff, c.retryAfter); got != c.want {
			t.Errorf("RetryAfterWait(%s, %s) = %s, want %s", c.backoff, c.retryAfter, got, c.want)
		}
	}
	unset := Policy{}
	if got := unset.RetryAfterWait(time.Second, time.Minute); got != time.Second {
		t.Errorf("without retryAfterMax the header must be ignored, got %s", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              -1,
		"7":                             7 * time.Second,
		"-3":                            -1,
		"soon":                          -1,
		"Thu, 01 Jan 2026 00:00:30 GMT": 30 * time.Second,
		"Wed, 31 Dec 2025 23:00:00 GMT": 0,
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

func TestRetryableCodes(t *testing.T) {
	retry := []int{404, 408, 409, 429, 500, 502, 503, 504, 599}
	final := []int{100, 301, 304, 400, 401, 403, 405, 410, 413, 422}
	for _, c := range retry {
		if !retryableCode(c) {
			t.Errorf("%d not retried", c)
		}
	}
	for _, c := range final {
		if retryableCode(c) {
			t.Errorf("%d retried", c)
		}
	}
}

func testEvent() *event.Event {
	e := event.New()
	e.SetID("e1")
	e.SetSource("/s")
	e.SetType("t")
	_ = e.SetData("application/json", map[string]int{"a": 1})
	return &e
}

func TestDeliverOutcomes(t *testing.T) {
	fast := Policy{Retry: 2, Delay: time.Millisecond, Timeout: 2 * time.Second}
	cases := []struct {
		name      string
		handler   func(n int32, w http.ResponseWriter, r *http.Request)
		policy    Policy
		delivered bool
		attempts  int
		code      int
		reply     string
		errHas    string
	}{
		{"2xx no body", func(_ int32, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }, fast, true, 1, 204, "", ""},
		{"fails then succeeds", func(n int32, w http.ResponseWriter, _ *http.Request) {
			if n < 3 {
				w.WriteHeader(500)
			}
		}, fast, true, 3, 200, "", ""},
		{"retries exhausted", func(_ int32, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, fast, false, 3, 503, "", "subscriber answered 503"},
		{"400 is final", func(_ int32, w http.ResponseWriter, _ *http.Request) { w.WriteHeader(400) }, fast, false, 1, 400, "", "400"},
		// The reason quotes the start of what the subscriber said, on one line.
		{"reason quotes the body", func(_ int32, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(422)
			_, _ = w.Write([]byte("order 42:\n\tamount is missing\x00" + strings.Repeat("x", 1000)))
		}, fast, false, 1, 422, "", "subscriber answered 422: order 42: amount is missing " + strings.Repeat("x", 256-29) + "..."},
		{"redirect is final", func(_ int32, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Location", "/elsewhere")
			w.WriteHeader(302)
		}, fast, false, 1, 302, "", "302"},
		{"binary reply", func(_ int32, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Ce-Specversion", "1.0")
			w.Header().Set("Ce-Id", "r1")
			w.Header().Set("Ce-Source", "/fn")
			w.Header().Set("Ce-Type", "reply")
			_, _ = w.Write([]byte("x"))
		}, fast, true, 1, 200, "r1", ""},
		{"structured reply", func(_ int32, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/cloudevents+json")
			_, _ = w.Write([]byte(`{"specversion":"1.0","id":"r2","source":"/fn","type":"reply"}`))
		}, fast, true, 1, 200, "r2", ""},
		{"invalid reply", func(_ int32, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Ce-Specversion", "1.0")
			_, _ = w.Write([]byte("x"))
		}, fast, false, 3, 502, "", "invalid reply"},
		{"non-event body", func(_ int32, w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }, fast, false, 3, 502, "", "not a CloudEvent"},
		{"timeout", func(_ int32, _ http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body) // the server notices the client leaving only once the body is read
			<-r.Context().Done()
		},
			Policy{Retry: 1, Delay: time.Millisecond, Timeout: 50 * time.Millisecond}, false, 2, 0, "", "no response within 50ms"},
	}
	d := New(Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { c.handler(n.Add(1), w, r) }))
			defer srv.Close()
			res := d.Deliver(context.Background(), &Request{URL: srv.URL, Event: testEvent(), Namespace: "ns"}, &c.policy)
			if res.Delivered() != c.delivered || res.Attempts != c.attempts || res.Code != c.code {
				t.Errorf("got delivered=%v attempts=%d code=%d (%s), want %v %d %d", res.Delivered(), res.Attempts, res.Code, res.Err, c.delivered, c.attempts, c.code)
			}
			if c.reply != "" && (res.Reply == nil || res.Reply.ID() != c.reply) {
				t.Errorf("reply %v, want id %s", res.Reply, c.reply)
			}
			if !strings.Contains(fmt.Sprint(res.Err), c.errHas) {
				t.Errorf("error %q does not contain %q", res.Err, c.errHas)
			}
		})
	}
}

func TestDeadLetterTruncatesBody(t *testing.T) {
	var got *event.Event
	dls := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		evs, err := cehttp.Decode(r.Header, body)
		if err != nil {
			t.Errorf("dead-letter sink got no event: %v", err)
		} else {
			got = evs[0]
		}
	}))
	defer dls.Close()
	long := strings.Repeat("e", 5000)
	failure := &Result{Code: 422, Body: []byte(long)}
	p := &Policy{DeadLetterSink: dls.URL}
	res, ok := New(Options{}).DeadLetter(context.Background(), &Request{URL: "http://sub", Event: testEvent()}, p, failure, "http://sub")
	if !ok || !res.Delivered() || got == nil {
		t.Fatalf("dead-lettering failed: %+v", res)
	}
	data := got.Extensions()[ExtErrorData].(string)
	if len(data) != 1368 { // base64 of exactly 1024 bytes
		t.Errorf("knativeerrordata has %d characters, want base64 of 1024 bytes (1368)", len(data))
	}
	if got.Extensions()[ExtErrorCode] != "422" || got.Extensions()[ExtErrorDest] != "http://sub" {
		t.Errorf("extensions %v", got.Extensions())
	}
	if _, ok := New(Options{}).DeadLetter(context.Background(), &Request{Event: testEvent()}, &Policy{}, failure, "x"); ok {
		t.Error("DeadLetter without a sink reported a send")
	}
}

// BenchmarkDeliver measures deliveries to a subscriber on loopback, connections reused, through
// http.Transport and through the directTransport, one at a time and 64 at once. cpu-µs/op counts
// the whole process (the subscriber's server too), which a busy machine disturbs less than ns/op.
func BenchmarkDeliver(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(200)
	}))
	defer srv.Close()
	transports := []struct {
		name string
		make func() http.RoundTripper
	}{
		{"net-http", func() http.RoundTripper { return &http.Transport{MaxIdleConnsPerHost: maxIdlePerHost} }},
		{"direct", func() http.RoundTripper { return NewTransport(0) }},
	}
	for _, tr := range transports {
		for _, parallel := range []int{1, 64} {
			b.Run(fmt.Sprintf("transport=%s/parallel=%d", tr.name, parallel), func(b *testing.B) {
				d := New(Options{Transport: tr.make()})
				req := &Request{URL: srv.URL, Event: testEvent(), Namespace: "ns"}
				p := &Policy{Timeout: time.Second}
				b.ReportAllocs()
				b.SetParallelism((parallel + 1) / 2) // GOMAXPROCS is 2 on the project machine
				cpu0 := cpuTime()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if res := d.Deliver(context.Background(), req, p); !res.Delivered() {
							b.Error(res.Err)
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestTypedResults (issue #17): a failed delivery says whether trying again may succeed and keeps
// its cause for errors.Is and errors.As, instead of a string.
func TestTypedResults(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		case "/bad":
			w.WriteHeader(http.StatusBadRequest)
		case "/busy":
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer slow.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer tlsSrv.Close()
	d := New(Options{})
	p := &Policy{Timeout: 100 * time.Millisecond}
	var de *router.DeliveryError
	var unknownCA x509.UnknownAuthorityError

	res := d.Deliver(context.Background(), &Request{URL: slow.URL + "/slow", Event: testEvent()}, p)
	if res.Delivered() || !res.Retryable() || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("timeout: %+v (retryable %v)", res.Err, res.Retryable())
	}
	res = d.Deliver(context.Background(), &Request{URL: slow.URL + "/bad", Event: testEvent()}, p)
	if res.Retryable() || !errors.As(res.Err, &de) || de.Code != 400 || router.HTTPStatus(res.Err) != http.StatusBadGateway {
		t.Errorf("400: %+v (retryable %v)", res.Err, res.Retryable())
	}
	res = d.Deliver(context.Background(), &Request{URL: slow.URL + "/busy", Event: testEvent()}, p)
	if !res.Retryable() || !errors.As(res.Err, &de) || de.Code != 503 {
		t.Errorf("503: %+v", res.Err)
	}
	res = d.Deliver(context.Background(), &Request{URL: tlsSrv.URL, Event: testEvent()}, &Policy{Timeout: 5 * time.Second}) // a handshake under -race takes its time
	if res.Delivered() || !errors.As(res.Err, &unknownCA) {
		t.Errorf("an untrusted certificate: %+v", res.Err)
	}
	if res := d.Deliver(context.Background(), &Request{URL: slow.URL, Event: testEvent()}, p); !res.Delivered() || res.Err != nil {
		t.Errorf("delivered: %+v", res)
	}
}
