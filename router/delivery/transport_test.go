package delivery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is a subscriber that counts the connections opened to it; idle > 0 sets its
// keep-alive timeout.
func countingServer(t *testing.T, h http.HandlerFunc, idle ...time.Duration) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(h)
	if len(idle) > 0 {
		srv.Config.IdleTimeout = idle[0]
	}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func deliverOnce(t *testing.T, d *Deliverer, u string, p *Policy) Result {
	t.Helper()
	return d.Deliver(context.Background(), &Request{URL: u, Event: testEvent()}, p)
}

func TestDirectTransportReusesConnections(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	})
	d := New(Options{})
	p := &Policy{Timeout: time.Second}
	for i := 0; i < 20; i++ {
		if res := deliverOnce(t, d, srv.URL, p); !res.Delivered() {
			t.Fatalf("delivery %d: %s", i, res.Err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("20 deliveries one after another opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if res := deliverOnce(t, d, srv.URL, p); !res.Delivered() {
					t.Errorf("concurrent delivery: %s", res.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := conns.Load(); n > 8 {
		t.Errorf("8 concurrent senders opened %d connections in all, want at most 8", n)
	}
}

// A subscriber that drops idle connections (its keep-alive timeout) must not fail the next
// delivery: the kept connection is found closed and the request goes out on a new one.
func TestDirectTransportReplacesConnectionClosedWhileIdle(t *testing.T) {
	var got atomic.Int32
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}, 20*time.Millisecond)
	d := New(Options{})
	p := &Policy{Timeout: time.Second} // no retries: a stale connection must not cost the event
	for i := 0; i < 3; i++ {
		if res := deliverOnce(t, d, srv.URL, p); !res.Delivered() || res.Attempts != 1 {
			t.Fatalf("delivery %d after an idle close: delivered=%v attempts=%d %s", i, res.Delivered(), res.Attempts, res.Err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, c := got.Load(), conns.Load(); n != 3 || c != 3 {
		t.Errorf("subscriber got %d events on %d connections, want 3 on 3", n, c)
	}
}

func TestDirectTransportHonoursConnectionClose(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
	})
	d := New(Options{})
	for i := 0; i < 3; i++ {
		if res := deliverOnce(t, d, srv.URL, &Policy{Timeout: time.Second}); !res.Delivered() {
			t.Fatalf("delivery %d: %s", i, res.Err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 answers with Connection: close, want 3", n)
	}
}

// A reply sent in chunks is read whole, and the connection stays usable afterwards.
func TestDirectTransportChunkedReply(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/cloudevents+json")
		_, _ = w.Write([]byte(`{"specversion":"1.0","id":"r1",`))
		w.(http.Flusher).Flush()
		_, _ = w.Write([]byte(`"source":"/fn","type":"reply","data":"` + strings.Repeat("x", 10000) + `"}`))
	})
	d := New(Options{})
	for i := 0; i < 2; i++ {
		res := deliverOnce(t, d, srv.URL, &Policy{Timeout: time.Second})
		if !res.Delivered() || res.Reply == nil || res.Reply.ID() != "r1" || len(res.Reply.Data()) < 10000 {
			t.Fatalf("chunked reply %d: delivered=%v reply=%v err=%s", i, res.Delivered(), res.Reply, res.Err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for two chunked replies, want 1", n)
	}
}

// An error answer with a long body is drained up to a bound; past it the connection is dropped
// rather than read for ever.
func TestDirectTransportLongErrorBody(t *testing.T) {
	srv, conns := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(strings.Repeat("e", 1<<20)))
	})
	d := New(Options{})
	for i := 0; i < 2; i++ {
		res := deliverOnce(t, d, srv.URL, &Policy{Timeout: time.Second})
		if res.Delivered() || res.Code != http.StatusBadRequest || len(res.Body) != maxErrorData {
			t.Fatalf("got delivered=%v code=%d body=%d bytes, want a 400 with %d bytes kept", res.Delivered(), res.Code, len(res.Body), maxErrorData)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2: a 1 MiB body is not drained to keep its connection", n)
	}
}

// A subscriber that refuses a large event without reading it is heard: its 413 is the result,
// not the broken write.
func TestDirectTransportAnswerBeforeBodyRead(t *testing.T) {
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})
	e := testEvent()
	_ = e.SetData("application/octet-stream", []byte(strings.Repeat("b", 8<<20)))
	for i := 0; i < 2; i++ {
		res := New(Options{}).Deliver(context.Background(), &Request{URL: srv.URL, Event: e}, &Policy{Timeout: 5 * time.Second})
		if res.Delivered() || res.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("attempt %d: delivered=%v code=%d err=%q, want the subscriber's 413", i, res.Delivered(), res.Code, res.Err)
		}
	}
}

func TestDirectTransportCancel(t *testing.T) {
	release := make(chan struct{})
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	defer close(release)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	res := New(Options{}).Deliver(ctx, &Request{URL: srv.URL, Event: testEvent()}, &Policy{Timeout: 10 * time.Second})
	if res.Delivered() || !strings.Contains(fmt.Sprint(res.Err), context.Canceled.Error()) {
		t.Errorf("cancelled delivery: delivered=%v err=%q, want it to name %v", res.Delivered(), res.Err, context.Canceled)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancelled delivery returned after %s", took)
	}
}

// The request head written without net/http's writer carries what it would: method, target,
// Host, User-Agent, Content-Length, every header value, and no line a header value could add.
func TestDirectTransportRequestHead(t *testing.T) {
	type seen struct {
		method, uri, host string
		header            http.Header
		body              string
		length            int64
	}
	got := make(chan seen, 1)
	srv, _ := countingServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, r.Header, string(b), r.ContentLength}
	})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/fn/path?a=1&b=%20x", strings.NewReader("hello"))
	req.Header["Ce-Id"] = []string{"e1"}
	req.Header["Traceparent"] = []string{"00-abc-def-01"}
	req.Header["X-Multi"] = []string{"one", "two"}
	req.Header["X-Injected"] = []string{"v\r\nX-Smuggled: yes"}
	resp, err := NewTransport(0).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	s := <-got
	u, _ := url.Parse(srv.URL)
	if s.method != http.MethodPost || s.uri != "/fn/path?a=1&b=%20x" || s.host != u.Host || s.body != "hello" || s.length != 5 {
		t.Errorf("got %s %s host %s body %q length %d", s.method, s.uri, s.host, s.body, s.length)
	}
	for k, want := range map[string]string{"Ce-Id": "e1", "Traceparent": "00-abc-def-01", "User-Agent": "Go-http-client/1.1", "X-Injected": "v  X-Smuggled: yes"} {
		if v := s.header.Get(k); v != want {
			t.Errorf("%s: %q, want %q", k, v, want)
		}
	}
	if v := s.header.Values("X-Multi"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
		t.Errorf("X-Multi: %q, want both values in order", v)
	}
	if v := s.header.Get("X-Smuggled"); v != "" {
		t.Errorf("a header value added the header X-Smuggled: %q", v)
	}
}

// A connection left idle is closed after the idle timeout even if nothing is delivered to its
// subscriber again.
func TestDirectTransportClosesIdleConnections(t *testing.T) {
	var closed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tr := NewTransport(0).(*directTransport)
	tr.idleTimeout = 60 * time.Millisecond
	if res := New(Options{Transport: tr}).Deliver(context.Background(), &Request{URL: srv.URL, Event: testEvent()}, &Policy{Timeout: time.Second}); !res.Delivered() {
		t.Fatal(res.Err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the idle connection was still open 2 s after its 60 ms idle timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The host's set goes with its last connection, and the next delivery starts a new one.
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, ok := tr.hosts.Load(host); ok; _, ok = tr.hosts.Load(host) {
		if time.Now().After(deadline) {
			t.Fatal("the host's connection set outlived its last connection")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if res := New(Options{Transport: tr}).Deliver(context.Background(), &Request{URL: srv.URL, Event: testEvent()}, &Policy{Timeout: time.Second}); !res.Delivered() {
		t.Fatalf("after the host was forgotten: %v", res.Err)
	}
}

type recordingTransport struct{ urls []string }

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r.urls = append(r.urls, req.URL.String())
	return nil, errors.New("recorded")
}

// HTTPS subscribers, and hosts a proxy applies to, go through http.Transport.
func TestDirectTransportFallback(t *testing.T) {
	fallback := &recordingTransport{}
	proxy := func(req *http.Request) (*url.URL, error) {
		if req.URL.Hostname() == "proxied.example" {
			return url.Parse("http://proxy.example:3128")
		}
		return nil, nil
	}
	tr := &directTransport{fallback: fallback, proxy: proxy}
	for _, u := range []string{"https://secure.example/x", "http://proxied.example/y"} {
		req, _ := http.NewRequest(http.MethodPost, u, nil)
		if _, err := tr.RoundTrip(req); err == nil || err.Error() != "recorded" {
			t.Errorf("%s: err %v, want the fallback's", u, err)
		}
	}
	if len(fallback.urls) != 2 {
		t.Errorf("fallback saw %v, want both URLs", fallback.urls)
	}
}

// rawSubscriber accepts connections and runs answer on each after reading the request head; it
// counts the bytes answer wrote.
func rawSubscriber(t *testing.T, answer func(c net.Conn) int64) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				_, _ = c.Read(buf) // the request (small enough for one read)
				written.Add(answer(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String(), &written
}

// TestResponseHeadIsBounded (issue #16, item 3): a subscriber that streams headers for ever, or
// interim 1xx answers for ever, used to grow the router's memory without bound (6 GB in 12 s). The
// attempt now fails once the head passes the limit, and the failure is retryable like a broken
// connection. Each case stops writing after 64 MiB: with the bound in place the router reads a
// small part of that.
func TestResponseHeadIsBounded(t *testing.T) {
	const budget = 64 << 20
	stream := func(prefix, repeat string) func(c net.Conn) int64 {
		return func(c net.Conn) int64 {
			n, _ := io.WriteString(c, prefix)
			total := int64(n)
			chunk := []byte(strings.Repeat(repeat, 4096/len(repeat)))
			for total < budget {
				n, err := c.Write(chunk)
				total += int64(n)
				if err != nil {
					break
				}
			}
			return total
		}
	}
	cases := map[string]func(net.Conn) int64{
		"endless headers":      stream("HTTP/1.1 200 OK\r\n", "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
		"one endless header":   stream("HTTP/1.1 200 OK\r\nX-Long: ", "a"),
		"endless 100 Continue": stream("", "HTTP/1.1 100 Continue\r\n\r\n"),
	}
	for name, answer := range cases {
		t.Run(name, func(t *testing.T) {
			u, written := rawSubscriber(t, answer)
			d := New(Options{MaxResponseHeaderBytes: 16 << 10})
			res := deliverOnce(t, d, u, &Policy{Timeout: 10 * time.Second})
			if res.Delivered() || !strings.Contains(fmt.Sprint(res.Err), "response headers larger than") {
				t.Fatalf("result %+v, want a failure naming the header limit", res)
			}
			if w := written.Load(); w >= budget {
				t.Errorf("the subscriber wrote all %d bytes: the router kept reading", w)
			}
		})
	}
}

// TestReplyBytesInFlightAreBounded (issue #16, item 5): reply bodies are read under a shared byte
// budget; a reply that does not fit fails the attempt (retryable) instead of adding to memory, and
// the budget is whole again afterwards.
func TestReplyBytesInFlightAreBounded(t *testing.T) {
	reply := strings.Repeat("r", 200<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Ce-Specversion", "1.0")
		w.Header().Set("Ce-Id", "reply")
		w.Header().Set("Ce-Source", "/fn")
		w.Header().Set("Ce-Type", "reply")
		if r.URL.Query().Has("chunked") {
			w.(http.Flusher).Flush() // no Content-Length: the budget is taken as bytes arrive
		}
		_, _ = io.WriteString(w, reply)
	}))
	defer srv.Close()
	for _, u := range []string{srv.URL, srv.URL + "/?chunked"} {
		small := New(Options{MaxReplyBytesInFlight: 100 << 10})
		res := deliverOnce(t, small, u, &Policy{Timeout: 5 * time.Second})
		if res.Delivered() || !strings.Contains(fmt.Sprint(res.Err), "maxReplyBytesInFlight") {
			t.Errorf("%s: a 200 KiB reply under a 100 KiB budget: %+v", u, res)
		}
		if n := small.ReplyBytesInFlight(); n != 0 {
			t.Errorf("%s: %d bytes still counted", u, n)
		}
		roomy := New(Options{MaxReplyBytesInFlight: 1 << 20})
		if res := deliverOnce(t, roomy, u, &Policy{Timeout: 5 * time.Second}); !res.Delivered() || res.Reply == nil || len(res.Reply.Data()) != len(reply) {
			t.Errorf("%s: a 200 KiB reply under a 1 MiB budget: %+v", u, res)
		}
		if n := roomy.ReplyBytesInFlight(); n != 0 {
			t.Errorf("%s: %d bytes still counted", u, n)
		}
	}
}

// A reply past the size limit is not read on to its end (issue #36, case 6): net/http's Close of a
// response body drains it, so a reply announcing 1 GiB, or an endless chunked one, was read whole
// on every attempt. Now the connection is dropped at the limit; the subscriber's writes fail after
// what the limit, the drain bound and the sockets' buffers take.
func TestOversizedReplyIsNotReadToTheEnd(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"announced 1 GiB", "Content-Length: 1073741824\r\n"},
		{"endless chunked", "Transfer-Encoding: chunked\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var written atomic.Int64
			served := make(chan struct{})
			go func() {
				defer close(served)
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				// Read the request head; the body is small and arrives with it.
				buf := make([]byte, 64<<10)
				if _, err := c.Read(buf); err != nil {
					return
				}
				chunked := strings.Contains(tc.head, "chunked")
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nCe-Specversion: 1.0\r\nCe-Id: r\r\nCe-Source: /r\r\nCe-Type: r\r\nContent-Type: text/plain\r\n%s\r\n", tc.head)
				chunk := []byte(strings.Repeat("x", 32<<10))
				if chunked {
					chunk = []byte(fmt.Sprintf("%x\r\n%s\r\n", len(chunk), chunk))
				}
				for written.Load() < 1<<30 {
					n, err := c.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
			d := New(Options{MaxReplyBytes: 4 << 20})
			res := deliverOnce(t, d, "http://"+ln.Addr().String(), &Policy{Timeout: 10 * time.Second})
			if res.Delivered() || res.Code != http.StatusBadGateway {
				t.Fatalf("delivered=%v code=%d, want the attempt failed with 502", res.Delivered(), res.Code)
			}
			<-served
			if n := written.Load(); n > 32<<20 {
				t.Errorf("the subscriber wrote %d MiB of its reply before the router stopped reading, want at most 32 (limit 4 MiB + buffers)", n>>20)
			}
			t.Logf("the subscriber could write %d KiB of a reply over the 4 MiB limit", written.Load()>>10)
		})
	}
}
