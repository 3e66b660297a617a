package delivery

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/propagation"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/tlsfiles"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// Extensions set on an event sent to a dead-letter sink.
const (
	ExtErrorDest = "knativeerrordest"
	ExtErrorCode = "knativeerrorcode"
	ExtErrorData = "knativeerrordata"
)

// maxErrorData bounds the response body carried in knativeerrordata. Knative truncates the base64
// text to 1024 characters (and panics on bodies over 768 bytes); we truncate the body before encoding.
const maxErrorData = 1024

// Deliverer sends events to subscribers. It is safe for concurrent use; all deliveries share one
// tuned connection pool.
type Deliverer struct {
	transport     http.RoundTripper
	maxReplyBytes int64
	maxHead       int64
	// replies bounds the bytes of reply bodies being read at once, over every delivery.
	replies *router.ByteBudget
	// destTLS is what HTTPS destinations trust and present beyond the defaults, by URL;
	// tlsTransports holds a transport per distinct configuration (tlsfiles.Client.Key).
	destTLS       atomic.Pointer[map[string]tlsfiles.Client]
	tlsTransports sync.Map
	urls          subscriberURLs
	// self are the origins (scheme://host:port) of the router's own ingress, and selfAuth the
	// Authorization its deliveries there carry.
	self     map[string]bool
	selfAuth []string
}

// Options configure a Deliverer.
type Options struct {
	// Transport defaults to NewTransport(MaxResponseHeaderBytes).
	Transport http.RoundTripper
	// MaxResponseHeaderBytes bounds a subscriber's response head (default
	// DefaultMaxResponseHeaderBytes); ignored when Transport is set.
	MaxResponseHeaderBytes int64
	// MaxReplyBytes bounds a reply body; a longer one is a failed delivery. Default 4 MiB.
	MaxReplyBytes int64
	// MaxReplyBytesInFlight bounds the bytes of reply bodies being read at once; an attempt
	// whose reply does not fit fails (and is retried). Default DefaultMaxReplyBytesInFlight.
	MaxReplyBytesInFlight int64
	// SelfOrigins are the origins (scheme://host:port) at which this router's own ingress listens;
	// deliveries to them (a trigger's ref to a sink or broker of the configuration) carry
	// SelfAuthorization, so that sender authentication lets the router's own events in. Nothing
	// else is sent it.
	SelfOrigins       []string
	SelfAuthorization string
}

// New returns a Deliverer.
func New(o Options) *Deliverer {
	if o.Transport == nil {
		o.Transport = NewTransport(o.MaxResponseHeaderBytes)
	}
	if o.MaxReplyBytes <= 0 {
		o.MaxReplyBytes = 4 << 20
	}
	// The transport is called directly rather than through an http.Client: a delivery follows no
	// redirect (a 3xx is a final answer), keeps no cookies and has its own timeout, and the
	// client's per-request header and URL copies for those were a tenth of a delivery's allocations.
	if o.MaxReplyBytesInFlight <= 0 {
		o.MaxReplyBytesInFlight = DefaultMaxReplyBytesInFlight
	}
	if o.MaxResponseHeaderBytes <= 0 {
		o.MaxResponseHeaderBytes = DefaultMaxResponseHeaderBytes
	}
	d := &Deliverer{transport: o.Transport, maxReplyBytes: o.MaxReplyBytes, replies: router.NewByteBudget(o.MaxReplyBytesInFlight), maxHead: o.MaxResponseHeaderBytes}
	if o.SelfAuthorization != "" && len(o.SelfOrigins) > 0 {
		d.self = map[string]bool{}
		for _, origin := range o.SelfOrigins {
			d.self[origin] = true
		}
		d.selfAuth = []string{o.SelfAuthorization}
	}
	return d
}

// DefaultMaxReplyBytesInFlight bounds the reply bodies read at once by default.
const DefaultMaxReplyBytesInFlight = 64 << 20

// SetDestinationTLS sets, by destination URL, the CA certificates HTTPS destinations are
// verified with beyond the system's roots and the client certificates presented to them. It may be
// called while delivering (reload); connections already open keep the configuration they had.
func (d *Deliverer) SetDestinationTLS(byURL map[string]tlsfiles.Client) {
	d.destTLS.Store(&byURL)
}

// transportFor is the transport of a delivery to u: the shared one, or for an HTTPS destination
// with TLS settings of its own, one per distinct setting.
func (d *Deliverer) transportFor(raw string, u *url.URL) (http.RoundTripper, error) {
	if u.Scheme != "https" {
		return d.transport, nil
	}
	byURL := d.destTLS.Load()
	if byURL == nil {
		return d.transport, nil
	}
	c, ok := (*byURL)[raw]
	if !ok {
		return d.transport, nil
	}
	key := c.Key()
	if tr, ok := d.tlsTransports.Load(key); ok {
		return tr.(http.RoundTripper), nil
	}
	cfg, err := tlsfiles.ClientConfig(c)
	if err != nil {
		return nil, err
	}
	tr, _ := d.tlsTransports.LoadOrStore(key, &http.Transport{
		Proxy: http.ProxyFromEnvironment, DialContext: dialer.DialContext, TLSClientConfig: cfg, ForceAttemptHTTP2: true,
		MaxIdleConnsPerHost: maxIdlePerHost, IdleConnTimeout: idleTimeout, TLSHandshakeTimeout: 10 * time.Second,
		MaxResponseHeaderBytes: d.maxHead,
	})
	return tr.(http.RoundTripper), nil
}

// ReplyBytesInFlight is the bytes of reply bodies being read now.
func (d *Deliverer) ReplyBytesInFlight() int64 { return d.replies.Used() }

// Request is one event to deliver.
type Request struct {
	URL   string
	Event *event.Event
	// Headers are forwarded as they are (x-request-id, traceparent, knative-*, ...).
	Headers http.Header
	// Namespace is sent as Kn-Namespace: the namespace of the trigger.
	Namespace string
}

// Result is the outcome of a delivery after its retries: delivered (Err nil), or not, and then
// Err, a *router.DeliveryError, says whether it is worth trying again later and keeps the cause.
type Result struct {
	Attempts int
	// Code is the last HTTP status code; 0 when no response arrived.
	Code int
	// Err is why the last attempt failed; nil when delivered.
	Err error
	// Body is the start of the last failed response's body (at most 1024 bytes).
	Body []byte
	// Reply is the CloudEvent the subscriber answered with, if any.
	Reply *event.Event
}

// Delivered reports whether the subscriber took the event (2xx).
func (r *Result) Delivered() bool { return r.Attempts > 0 && r.Err == nil }

// Retryable reports whether a failed delivery could succeed if tried again later (retries spent
// on a timeout or a 503), as opposed to one refused for good (a 400, an invalid reply address).
func (r *Result) Retryable() bool { return router.IsRetryable(r.Err) }

// ErrorCode is the status code reported to a dead-letter sink: the last code, or 500 when no
// response arrived (a connection error or timeout).
func (r *Result) ErrorCode() int {
	if r.Code == 0 {
		return http.StatusInternalServerError
	}
	return r.Code
}

// Deliver sends req under policy p: attempts until one succeeds, one fails for good, the retries
// are spent, or ctx ends, waiting out each backoff here. It does not dead-letter: see DeadLetter.
func (d *Deliverer) Deliver(ctx context.Context, req *Request, p *Policy) Result {
	var res Result
	for n := 1; ; n++ {
		wait, again := d.Try(ctx, req, p, n, &res)
		if !again {
			return res
		}
		if !router.Sleep(ctx, wait) {
			res.GiveUp(ctx.Err())
			return res
		}
	}
}

// Try makes attempt n (counting from 1) of req under p and records it in res. It returns how long
// to wait before attempt n+1 (backoff, or the subscriber's Retry-After), or again=false when res is
// final: delivered, failed for good, retries spent, or ctx ended. Callers that must not hold a
// worker during the backoff wait elsewhere and call Try again.
func (d *Deliverer) Try(ctx context.Context, req *Request, p *Policy, n int, res *Result) (wait time.Duration, again bool) {
	a := d.attempt(ctx, req, p)
	res.Attempts, res.Code, res.Body, res.Reply, res.Err = n, a.code, a.body, a.reply, nil
	if a.err == "" {
		res.Body = nil
		return 0, false
	}
	res.Err = &router.DeliveryError{Code: a.code, Retryable: a.retryable, Msg: a.err, Cause: a.cause}
	if !a.retryable || n > p.Retry || ctx.Err() != nil {
		return 0, false
	}
	wait = p.Wait(n)
	if a.code == http.StatusTooManyRequests || a.code == http.StatusServiceUnavailable {
		wait = p.RetryAfterWait(wait, a.retryAfter)
	}
	return wait + jitter(wait), true
}

// GiveUp marks a result whose next attempt will not be made because err (the context's) ended the
// wait for it.
func (r *Result) GiveUp(err error) {
	prev := &router.DeliveryError{Code: r.Code}
	if r.Err != nil {
		errors.As(r.Err, &prev)
	}
	r.Err = &router.DeliveryError{Code: prev.Code, Retryable: true, Msg: fmt.Sprintf("%v; then gave up waiting to retry: %v", r.Err, err),
		Cause: errors.Join(prev.Cause, err)}
}

// DeadLetter sends the original event of a failed delivery to policy's dead-letter sink, with the
// knativeerror* extensions describing failure and dest (the subscriber, or the broker for a reply
// that could not be published). The sink gets the same retry policy. It reports false when there is
// no sink.
func (d *Deliverer) DeadLetter(ctx context.Context, req *Request, p *Policy, failure *Result, dest string) (Result, bool) {
	if p.DeadLetterSink == "" {
		return Result{}, false
	}
	e := req.Event.Clone()
	e.SetExtension(ExtErrorDest, router.RedactURL(dest))
	e.SetExtension(ExtErrorCode, strconv.Itoa(failure.ErrorCode()))
	data := failure.Body
	if len(data) == 0 && failure.Code == 0 {
		data = []byte(failure.Err.Error())
	}
	if len(data) > maxErrorData {
		data = data[:maxErrorData]
	}
	if len(data) > 0 {
		e.SetExtension(ExtErrorData, base64.StdEncoding.EncodeToString(data))
	}
	dl := &Request{URL: p.DeadLetterSink, Event: &e, Headers: req.Headers, Namespace: req.Namespace}
	return d.Deliver(ctx, dl, p), true
}

type attemptResult struct {
	code       int
	err        string // "" on success
	cause      error  // what the failure came from, where there is more than a status code
	retryable  bool
	retryAfter time.Duration
	body       []byte
	reply      *event.Event
}

func (d *Deliverer) attempt(ctx context.Context, req *Request, p *Policy) attemptResult {
	if p.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.Timeout)
		defer cancel()
	}
	u, err := d.urls.parse(req.URL)
	if err != nil {
		return attemptResult{err: fmt.Sprintf("building request: %v", err), cause: err}
	}
	hreq := (&http.Request{
		Method: http.MethodPost, URL: u, Host: u.Host, Header: make(http.Header, len(req.Headers)+12),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}).WithContext(ctx)
	for k, vs := range req.Headers {
		hreq.Header[k] = vs
	}
	var body []byte
	if p.Format == Structured {
		if body, err = cehttp.EncodeStructured(req.Event); err != nil {
			return attemptResult{err: fmt.Sprintf("encoding event: %v", err), cause: err}
		}
		hreq.Header["Content-Type"] = []string{cehttp.ContentTypeStructured}
	} else {
		body = cehttp.WriteBinary(hreq.Header, req.Event)
	}
	hreq.Header["Prefer"] = []string{"reply"}
	if d.self != nil && d.self[u.Scheme+"://"+u.Host] {
		hreq.Header["Authorization"] = d.selfAuth
	}
	if tracing.Active() {
		// The delivery span's context, replacing the producer's forwarded traceparent: the
		// subscriber's span is a child of this attempt.
		tracing.IntoHeaders(ctx, propagation.HeaderCarrier(hreq.Header))
	}
	if req.Namespace != "" {
		hreq.Header["Kn-Namespace"] = []string{req.Namespace}
	}
	hreq.ContentLength = int64(len(body))
	if len(body) > 0 {
		hreq.Body = io.NopCloser(bytes.NewReader(body))
		hreq.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	} else {
		hreq.Body = http.NoBody
	}

	transport, err := d.transportFor(req.URL, u)
	if err != nil {
		return attemptResult{err: fmt.Sprintf("TLS settings of %s: %v", router.RedactURL(req.URL), err), retryable: true, cause: err}
	}
	resp, err := transport.RoundTrip(hreq)
	if err != nil {
		err = &url.Error{Op: "Post", URL: router.RedactURL(req.URL), Err: err}
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) && p.Timeout > 0 {
			msg = fmt.Sprintf("no response within %s: %v", p.Timeout, err)
		}
		return attemptResult{err: msg, retryable: true, cause: err}
	}
	defer resp.Body.Close()

	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return d.readReply(resp)
	}
	out := attemptResult{code: resp.StatusCode, retryable: retryableCode(resp.StatusCode), retryAfter: -1}
	out.body, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorData))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	out.err = fmt.Sprintf("subscriber answered %d", resp.StatusCode)
	if said := bodyExcerpt(out.body); said != "" {
		out.err += ": " + said
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		out.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return out
}

// readReply interprets a 2xx response: no body is a plain success, a CloudEvent is a reply, and any
// other body is a failure (Knative answers such responses with 502 Bad Gateway, and so does our
// accounting).
func (d *Deliverer) readReply(resp *http.Response) attemptResult {
	body, held, err := d.readReplyBody(resp.Body, resp.ContentLength)
	defer d.replies.Release(held) // a reply event's bytes are counted by the broker from here on
	if err != nil {
		return attemptResult{code: http.StatusBadGateway, retryable: true, err: err.Error(), cause: err}
	}
	mode := cehttp.DetectMode(resp.Header)
	if mode == cehttp.NotCloudEvent {
		if len(body) == 0 {
			return attemptResult{code: resp.StatusCode}
		}
		return attemptResult{code: http.StatusBadGateway, retryable: true, body: truncate(body),
			err: fmt.Sprintf("subscriber answered %d with a body that is not a CloudEvent", resp.StatusCode)}
	}
	if mode == cehttp.BatchMode {
		return attemptResult{code: http.StatusBadGateway, retryable: true, body: truncate(body),
			err: "subscriber replied with a batch; a reply must be one CloudEvent"}
	}
	events, err := cehttp.Decode(resp.Header, body)
	if err != nil {
		return attemptResult{code: http.StatusBadGateway, retryable: true, body: truncate(body), err: "invalid reply: " + err.Error(), cause: err}
	}
	return attemptResult{code: resp.StatusCode, reply: events[0]}
}

// readReplyBody reads a reply body of at most maxReplyBytes into a buffer grown as bytes arrive,
// each growth taken from the replies budget; it returns the bytes held, to be released.
func (d *Deliverer) readReplyBody(r io.Reader, length int64) (body []byte, held int64, err error) {
	if length == 0 {
		return nil, 0, nil // most answers: no reply
	}
	if length > d.maxReplyBytes {
		return nil, 0, fmt.Errorf("reply larger than %d bytes", d.maxReplyBytes)
	}
	first := int64(4 << 10)
	want := d.maxReplyBytes + 1 // a byte past the limit tells it was exceeded
	if length > 0 {
		// A known length (the transport reads no further): exactly that, taken as it arrives.
		want, first = length, min(length, first)
	}
	for {
		if len(body) == cap(body) {
			to := min(want, max(first, 4*int64(cap(body))))
			if cap(body) == 0 {
				to = first
			}
			if int64(cap(body)) == want {
				break
			}
			if !d.replies.Take(to - int64(cap(body))) {
				return nil, held, fmt.Errorf("reply bodies being read are at the bound of %d bytes (spec.subscribers.maxReplyBytesInFlight): will retry", d.replies.Max())
			}
			held += to - int64(cap(body))
			body = append(make([]byte, 0, to), body...)
		}
		n, rerr := r.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, held, fmt.Errorf("reading reply: %v", rerr)
		}
	}
	if int64(len(body)) > d.maxReplyBytes {
		return nil, held, fmt.Errorf("reply larger than %d bytes", d.maxReplyBytes)
	}
	return body, held, nil
}

// maxExcerpt bounds what of a failing answer's body the failure reason quotes.
const maxExcerpt = 256

// bodyExcerpt is the start of a failing answer's body as the failure reason quotes it: at most
// maxExcerpt bytes of text, control characters and invalid UTF-8 as spaces, trimmed; "" for a body
// that says nothing readable. The whole (first 1024 bytes) goes to the dead-letter sink as
// knativeerrordata.
func bodyExcerpt(b []byte) string {
	if len(b) > maxExcerpt {
		b = b[:maxExcerpt]
	}
	s := strings.Map(func(r rune) rune {
		if r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return ' '
		}
		return r
	}, string(b))
	s = strings.Join(strings.Fields(s), " ")
	if len(b) == maxExcerpt && s != "" {
		s += "..."
	}
	return s
}

func truncate(b []byte) []byte {
	if len(b) > maxErrorData {
		return b[:maxErrorData]
	}
	return b
}

// retryableCode reports whether a non-2xx status is worth retrying: 404 (a subscriber still
// starting), 408, 409, 429 and every 5xx. Other 4xx, 1xx and 3xx are final.
func retryableCode(code int) bool {
	switch code {
	case http.StatusNotFound, http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests:
		return true
	}
	return code >= 500 && code < 600
}

// parseRetryAfter reads a Retry-After value, in seconds or as an HTTP date; -1 when absent or bad.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return -1
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return -1
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
		return 0
	}
	return -1
}

// subscriberURLs caches parsed subscriber URLs: a trigger's subscriber is parsed once, not at
// every delivery. A parsed URL is shared and must not be changed.
type subscriberURLs struct {
	m sync.Map // string -> *url.URL
	n atomic.Int32
}

// maxCachedURLs bounds the cache for configurations whose subscribers keep changing.
const maxCachedURLs = 1 << 16

func (c *subscriberURLs) parse(raw string) (*url.URL, error) {
	if u, ok := c.m.Load(raw); ok {
		return u.(*url.URL), nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("unsupported protocol scheme %q in %q", u.Scheme, raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host in %q", raw)
	}
	if c.n.Add(1) > maxCachedURLs {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(raw, u)
	return u, nil
}
