package delivery

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// NewTransport returns the transport deliveries share. Plain-HTTP subscribers reached without a
// proxy go through a directTransport (see there); HTTPS and proxied ones through a tuned
// http.Transport with many idle connections per subscriber. A response head (status line and
// headers, interim 1xx answers included) larger than maxHeaderBytes fails the attempt: a subscriber
// streaming headers would otherwise grow the router's memory without bound. 0 means
// DefaultMaxResponseHeaderBytes.
func NewTransport(maxHeaderBytes int64) http.RoundTripper {
	if maxHeaderBytes <= 0 {
		maxHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	fallback := &http.Transport{
		Proxy:                  http.ProxyFromEnvironment,
		DialContext:            dialer.DialContext,
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        idleTimeout,
		TLSHandshakeTimeout:    10 * time.Second,
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	return &directTransport{fallback: fallback, proxy: http.ProxyFromEnvironment, idleTimeout: idleTimeout, maxHead: maxHeaderBytes}
}

// DefaultMaxResponseHeaderBytes bounds a subscriber's response head by default. Functions answer
// with a few hundred bytes of headers; every delivery in flight may hold this much.
const DefaultMaxResponseHeaderBytes = 64 << 10

// ErrResponseHeadTooLarge fails an attempt whose response head exceeded the transport's bound.
var ErrResponseHeadTooLarge = errors.New("response headers larger than the configured limit (spec.subscribers.maxResponseHeaderBytes)")

const (
	maxIdlePerHost = 512
	idleTimeout    = 90 * time.Second
	// maxDrain bounds what is read of an unread response body to keep its connection.
	maxDrain = 64 << 10
)

var dialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// directTransport makes an HTTP/1.1 exchange over plain TCP in the calling goroutine: it writes the
// request and reads the response on the same connection, then keeps the connection for the next
// delivery to that host. http.Transport instead hands each request to a connection's write
// goroutine and takes the response from its read goroutine: three goroutine switches per delivery
// and two goroutines per connection. On a saturated broker those switches queue in the scheduler
// and the broker's own 202 answers wait behind them (docs/performance.md). Here a delivery costs
// its lane worker's goroutine only, woken once, when the response arrives.
type directTransport struct {
	fallback http.RoundTripper
	proxy    func(*http.Request) (*url.URL, error)

	// idleTimeout closes connections unused for that long, by a timer per host: a subscriber no
	// longer delivered to must not keep sockets open (and half-closed by it) for ever.
	idleTimeout time.Duration
	// maxHead bounds the bytes read from the socket while a response head is read.
	maxHead int64

	hosts sync.Map // URL host -> *hostConns
}

// hostConns are one subscriber host's idle connections, most recently used last.
type hostConns struct {
	direct  bool // no proxy applies to this host: the directTransport serves it
	timeout time.Duration
	maxHead int64
	// key and hosts let the set leave the transport's map once its last connection has expired,
	// so subscribers that come and go (a changing set of services) leave nothing behind.
	key   string
	hosts *sync.Map

	mu     sync.Mutex
	idle   []*directConn
	expiry *time.Timer // runs expire when the oldest idle connection is due; nil until needed
	armed  bool
}

type directConn struct {
	net.Conn
	head     *headMeter // what br reads from
	br       *bufio.Reader
	bw       *bufio.Writer
	idleFrom time.Time
}

func (t *directTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return t.fallback.RoundTrip(req)
	}
	h := t.host(req)
	if !h.direct {
		return t.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	c, reused := h.take(), true
	for {
		if c == nil {
			var err error
			if c, err = dial(ctx, req.URL); err != nil {
				return nil, contextErr(ctx, err)
			}
			reused = false
		}
		resp, err := h.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		_ = c.Close()
		// A kept connection the subscriber closed while it was idle fails before any byte of a
		// response: send once more on a new connection, as http.Transport does.
		if !reused || !isStale(err) || ctx.Err() != nil {
			return nil, contextErr(ctx, err)
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			again := *req // a RoundTripper must not change its caller's request
			again.Body = body
			req = &again
		}
		c = nil
	}
}

// host returns the idle-connection set of req's host, deciding once whether a proxy applies to it.
// It runs for every delivery: a lock-free read, keyed by the URL's host as written (so
// "svc" and "svc:80" are two sets, which costs nothing but a second pool).
func (t *directTransport) host(req *http.Request) *hostConns {
	if h, ok := t.hosts.Load(req.URL.Host); ok {
		return h.(*hostConns)
	}
	p, err := t.proxy(req)
	h, _ := t.hosts.LoadOrStore(req.URL.Host, &hostConns{direct: err == nil && p == nil, timeout: t.idleTimeout, maxHead: t.maxHead, key: req.URL.Host, hosts: &t.hosts})
	return h.(*hostConns)
}

// take returns the most recently used idle connection that is not yet due to close, or nil.
func (h *hostConns) take() *directConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	for n := len(h.idle); n > 0; n = len(h.idle) {
		c := h.idle[n-1]
		h.idle[n-1] = nil
		h.idle = h.idle[:n-1]
		if time.Since(c.idleFrom) < h.timeout {
			return c
		}
		_ = c.Close()
	}
	return nil
}

// expire closes the connections idle for h.timeout (the oldest, at the front) and sets the timer
// for the next one due.
func (h *hostConns) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	cutoff := time.Now().Add(-h.timeout)
	n := 0
	for n < len(h.idle) && !h.idle[n].idleFrom.After(cutoff) {
		_ = h.idle[n].Close()
		n++
	}
	rest := copy(h.idle, h.idle[n:])
	clear(h.idle[rest:])
	h.idle = h.idle[:rest]
	h.armed = rest > 0
	if h.armed {
		h.expiry.Reset(h.idle[0].idleFrom.Sub(cutoff))
		return
	}
	// Nothing left: forget the host. A delivery that found this set just before keeps using it,
	// and a connection it puts back here is still closed by this set's timer; the next delivery
	// to the host starts a new set.
	h.hosts.CompareAndDelete(h.key, h)
}

func (h *hostConns) put(c *directConn) {
	c.idleFrom = time.Now()
	h.mu.Lock()
	if len(h.idle) < maxIdlePerHost {
		h.idle = append(h.idle, c)
		c = nil
		switch {
		case h.expiry == nil:
			h.expiry = time.AfterFunc(h.timeout, h.expire)
			h.armed = true
		case !h.armed:
			h.expiry.Reset(h.timeout)
			h.armed = true
		}
	}
	h.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

func dial(ctx context.Context, u *url.URL) (*directConn, error) {
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	nc, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	head := &headMeter{Conn: nc, left: -1}
	return &directConn{Conn: nc, head: head, br: bufio.NewReaderSize(head, connBufferSize), bw: bufio.NewWriterSize(nc, connBufferSize)}, nil
}

const connBufferSize = 4096

// headMeter is a connection as its bufio.Reader sees it: while a response head is read (left >= 0)
// reads are counted and refused past the bound; otherwise they pass straight through.
type headMeter struct {
	net.Conn
	left int64
}

func (m *headMeter) Read(p []byte) (int, error) {
	if m.left < 0 {
		return m.Conn.Read(p)
	}
	if m.left == 0 {
		return 0, ErrResponseHeadTooLarge
	}
	if int64(len(p)) > m.left {
		p = p[:m.left]
	}
	n, err := m.Conn.Read(p)
	m.left -= int64(n)
	return n, err
}

// isStale reports whether err says the subscriber had closed the connection: what a kept
// connection shows when the subscriber dropped it while it was idle.
func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// exchange writes req on c and reads the response head. The response body reads from c; closing
// it returns c to h when the body was read to its end and the connection may be kept.
func (h *hostConns) exchange(ctx context.Context, c *directConn, req *http.Request) (*http.Response, error) {
	// ctx's end, its deadline included, interrupts a blocked read or write by moving the
	// connection's deadline into the past. (Setting the deadline itself as well would cost two
	// timer updates per delivery, 7 % of a saturated router's CPU, for what ctx's timer does.)
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (*http.Response, error) {
		stop()
		return nil, err
	}
	werr := writeRequest(c.bw, req)
	if werr == nil {
		werr = c.bw.Flush()
	}
	// The head may take maxHead bytes, interim answers included, plus what the reader's buffer
	// may have pulled in beyond it.
	c.head.left = h.maxHead + connBufferSize
	defer func() { c.head.left = -1 }()
	if _, err := c.br.Peek(1); err != nil {
		if werr != nil {
			return fail(fmt.Errorf("writing the request: %w", werr))
		}
		return fail(fmt.Errorf("waiting for the response: %w", err))
	}
	// A subscriber may answer before reading the whole request (413, say) and close: its answer
	// counts even though the write failed, and the connection is not kept.
	for {
		resp, err := http.ReadResponse(c.br, req)
		if err != nil {
			if c.head.left == 0 { // the parser may report the cut-off line rather than the bound
				err = ErrResponseHeadTooLarge
			}
			return fail(err)
		}
		// Interim answers (100 Continue, 103 Early Hints) precede the real one.
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		keep := werr == nil && !resp.Close && !req.Close
		resp.Body = &directBody{ReadCloser: resp.Body, c: c, h: h, stop: stop, keep: keep}
		return resp, nil
	}
}

// writeRequest writes req's head and body to w as HTTP/1.1, like req.Write but without sorting the
// header keys (a delivery carries a dozen headers; sorting them was a tenth of the transport's
// CPU). Values have CR and LF replaced by spaces, as net/http does, so that no header can be
// smuggled in. Anything but a plain POST, PUT or PATCH with a known length goes through req.Write.
func writeRequest(w *bufio.Writer, req *http.Request) error {
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	switch {
	case req.Method != http.MethodPost && req.Method != http.MethodPut && req.Method != http.MethodPatch,
		req.URL.Opaque != "", req.ContentLength < 0, len(req.TransferEncoding) > 0, len(req.Trailer) > 0,
		(req.Body == nil || req.Body == http.NoBody) && req.ContentLength != 0,
		!plainHost(host):
		return req.Write(w)
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	if _, ok := req.Header["User-Agent"]; !ok {
		w.WriteString("\r\nUser-Agent: Go-http-client/1.1")
	}
	w.WriteString("\r\nContent-Length: ")
	w.Write(strconv.AppendInt(w.AvailableBuffer(), req.ContentLength, 10))
	if req.Close {
		w.WriteString("\r\nConnection: close")
	}
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer", "Connection":
			continue
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			if strings.ContainsAny(v, "\r\n") {
				v = strings.TrimSpace(newlinesToSpaces.Replace(v))
			}
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	w.WriteString("\r\n")
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	defer req.Body.Close()
	n, err := io.Copy(w, req.Body)
	if err == nil && n != req.ContentLength {
		err = fmt.Errorf("request body is %d bytes, its Content-Length %d", n, req.ContentLength)
	}
	return err
}

var newlinesToSpaces = strings.NewReplacer("\r", " ", "\n", " ")

// plainHost reports whether host can be written as it is: printable ASCII without spaces (an
// internationalised name needs req.Write's punycode, a zone its removal).
func plainHost(host string) bool {
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c >= 0x7f || c == '%' {
			return false
		}
	}
	return host != ""
}

// directBody is a response body that gives its connection back when closed.
type directBody struct {
	io.ReadCloser
	c      *directConn
	h      *hostConns
	stop   func() bool
	keep   bool
	eof    bool
	closed bool
}

func (b *directBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *directBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if b.keep && !b.eof {
		if n, err := io.Copy(io.Discard, io.LimitReader(b.ReadCloser, maxDrain+1)); err == nil && n <= maxDrain {
			b.eof = true
		}
	}
	if !b.eof {
		// net/http's Close of a body read by ReadResponse reads it to its end: a reply announcing
		// 1 GiB, or an endless chunked one, would be read whole after we stopped at our limit.
		// The connection goes instead.
		_ = b.c.Close()
		return nil
	}
	err := b.ReadCloser.Close()
	// stop reports false when cancellation already poisoned the deadline: the connection goes.
	if b.stop() && b.keep && b.eof && err == nil {
		b.h.put(b.c)
		return nil
	}
	_ = b.c.Close()
	return nil
}

// contextErr reports ctx's error when it ended the exchange, so that callers can tell a timeout.
// The connection's deadline is ctx's, and may pass a moment before ctx's own timer fires.
func contextErr(ctx context.Context, err error) error {
	ctxErr := ctx.Err()
	if ctxErr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		ctxErr = context.DeadlineExceeded
	}
	if ctxErr != nil {
		return fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return err
}
