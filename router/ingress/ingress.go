// Package ingress is the Knative-compatible broker ingress: POST /{namespace}/{broker} with a
// CloudEvent in binary, structured or batched mode, answered with the status codes Knative clients
// expect (see docs/knative-differences.md). It decodes and validates; the broker admits and queues.
package ingress

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/senderauth"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// Options configure a Handler.
type Options struct {
	Publisher router.Publisher
	Logger    *zap.Logger
	Metrics   *metrics.Metrics
	// MaxBodyBytes returns the current body limit (it can change on reload).
	MaxBodyBytes func() int64
	// RetryAfterSeconds is sent with 429 (default 1).
	RetryAfterSeconds int
	// Auth returns the current sender authentication (it can change on reload); nil allows all.
	Auth func() *senderauth.Authenticator
	// Bodies bounds the bytes of bodies being read at once (shared with webhook sources); nil:
	// a budget of its own with the default bound.
	Bodies *BodyBudget
	// Internal is the bearer token of the router's own deliveries to its ingress (a trigger's ref
	// to a sink or broker of its configuration): they pass sender authentication, since the
	// event was authenticated where it entered. Empty: none.
	Internal string
}

// Handler serves broker ingress.
type Handler struct {
	o        Options
	logger   *zap.Logger
	draining atomic.Bool
}

// New returns a Handler.
func New(o Options) *Handler {
	if o.RetryAfterSeconds <= 0 {
		o.RetryAfterSeconds = 1
	}
	if o.Bodies == nil {
		o.Bodies = NewBodyBudget(0)
	}
	return &Handler{o: o, logger: o.Logger.Named("ingress")}
}

// Drain makes the handler answer 503 to every new request: the first step of a graceful shutdown.
func (h *Handler) Drain() { h.draining.Store(true) }

// ParseBrokerPath reads /{namespace}/{name} (one trailing slash allowed). found is false for "/"
// alone (404); ok is false for any other shape (400).
func ParseBrokerPath(path string) (ref router.BrokerRef, found, ok bool) {
	p := strings.TrimSuffix(path, "/")
	if p == "" {
		return ref, false, true
	}
	p = strings.TrimPrefix(p, "/")
	ns, name, two := strings.Cut(p, "/")
	if !two || ns == "" || name == "" || strings.Contains(name, "/") {
		return ref, true, false
	}
	return router.BrokerRef{Namespace: ns, Name: name}, true, true
}

// ServeHTTP takes events for a broker; with tracing on, in a server span that continues the
// producer's trace context.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !tracing.Active() {
		h.serve(w, r)
		return
	}
	ctx, span := tracing.Tracer().Start(tracing.FromHeaders(r.Context(), propagation.HeaderCarrier(r.Header)), r.Method+" /{namespace}/{broker}",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path), attribute.String("http.route", "/{namespace}/{broker}")))
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	h.serve(sw, r.WithContext(ctx))
	span.SetAttributes(attribute.Int("http.response.status_code", sw.code))
	if sw.code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(sw.code))
	}
	span.End()
}

// statusWriter remembers the status code written, for the server span.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (h *Handler) serve(w http.ResponseWriter, r *http.Request) {
	ref, found, ok := ParseBrokerPath(r.URL.Path)
	switch {
	case !found:
		http.Error(w, "not found: send events to /{namespace}/{broker}", http.StatusNotFound)
		return
	case !ok:
		http.Error(w, fmt.Sprintf("bad path %q: send events to /{namespace}/{broker}", r.URL.Path), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions:
		// The CloudEvents webhook validation handshake.
		w.Header().Set("Allow", "POST, OPTIONS")
		w.Header().Set("WebHook-Allowed-Origin", "*")
		w.Header().Set("WebHook-Allowed-Rate", "*")
		w.WriteHeader(http.StatusOK)
		return
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, fmt.Sprintf("method %s not allowed: POST CloudEvents here", r.Method), http.StatusMethodNotAllowed)
		return
	}
	if h.draining.Load() {
		h.fail(w, ref, "", http.StatusServiceUnavailable, "shutting down: send to another replica or retry")
		return
	}
	if !h.o.Publisher.HasBroker(ref) {
		if d := h.checkUnknown(ref.Namespace, r.Header); d.Status != 0 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
			http.Error(w, d.Reason, d.Status)
			return
		}
		http.Error(w, fmt.Sprintf("broker %s not found", ref), http.StatusNotFound)
		return
	}
	if d := h.check(ref, "broker "+ref.String(), r.Header); d.Status != 0 {
		if d.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
		}
		h.fail(w, ref, "", d.Status, d.Reason)
		return
	}
	body, berr := h.o.Bodies.Read(r, h.o.MaxBodyBytes())
	if berr != nil {
		if berr.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(h.o.RetryAfterSeconds))
		}
		h.fail(w, ref, "", berr.Status, berr.Msg)
		return
	}
	defer body.Release()
	events, err := cehttp.DecodeBounded(r.Header, body.Data, func(n int) error { return h.admitBatch(ref, &body, n) })
	if err != nil {
		var be *BodyError
		if !errors.As(err, &be) {
			be = &BodyError{http.StatusBadRequest, err.Error()}
		}
		if be.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(h.o.RetryAfterSeconds))
		}
		h.fail(w, ref, "", be.Status, be.Msg)
		return
	}
	fwd := ForwardedHeaders(r.Header)
	envs := make([]*router.Envelope, len(events))
	for i, e := range events {
		envs[i] = &router.Envelope{Event: e, Headers: fwd}
	}
	eventType := events[0].Type()
	started := time.Now()
	var spans []trace.Span
	if tracing.Active() {
		spans = producerSpans(r.Context(), ref, envs)
	}
	err = h.o.Publisher.Publish(r.Context(), ref, envs)
	code := router.HTTPStatus(err)
	for _, sp := range spans {
		if err != nil {
			sp.SetStatus(codes.Error, err.Error())
		}
		sp.End()
	}
	if code != http.StatusNotFound { // a broker that does not exist gets no series
		h.o.Metrics.CountAdmission(ref.Namespace, ref.Name, eventType, code, time.Since(started))
	}
	switch code {
	case http.StatusAccepted:
		w.WriteHeader(code)
	case http.StatusNotFound:
		http.Error(w, fmt.Sprintf("broker %s not found", ref), code)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(h.o.RetryAfterSeconds))
		http.Error(w, fmt.Sprintf("broker %s is at capacity (%v): retry later", ref, err), code)
	case http.StatusServiceUnavailable:
		h.logger.Warn("broker cannot accept events", zap.String("broker", ref.String()), zap.Error(err))
		http.Error(w, fmt.Sprintf("broker %s cannot accept events now: %v", ref, err), code)
	default:
		http.Error(w, err.Error(), code)
	}
}

// internal reports whether hd carries the token of the router's own deliveries.
func (h *Handler) internal(hd http.Header) bool {
	if h.o.Internal == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(hd.Get("Authorization")), []byte("Bearer "+h.o.Internal)) == 1
}

// check is the sender authentication of a request to the address ref, named what in reasons.
func (h *Handler) check(ref router.BrokerRef, what string, hd http.Header) senderauth.Decision {
	if h.o.Auth == nil || h.internal(hd) {
		return senderauth.Decision{}
	}
	return h.o.Auth().CheckAddress(ref, what, hd)
}

// checkUnknown is the sender authentication of a request to an address of namespace ns that does
// not exist: as for a protected one, so that 404 and 401 do not tell outsiders what exists.
func (h *Handler) checkUnknown(ns string, hd http.Header) senderauth.Decision {
	if h.o.Auth == nil || h.internal(hd) {
		return senderauth.Decision{}
	}
	return h.o.Auth().CheckUnknown(ns, hd)
}

// Addresses is what a component serves on the ingress at {prefix}{namespace}/{name} (CassandraSinks,
// KafkaSinks).
type Addresses interface {
	http.Handler
	// Has reports whether the address namespace/name is configured.
	Has(namespace, name string) bool
}

// Guard puts the component addresses under prefix behind the brokers' intake: sender
// authentication, where a policy covering namespace/name covers the address of that namespace and
// name (its reasons name it as kind namespace/name) and an address that does not exist answers as
// for a broker that does not exist; then the body's size limit and the in-flight body budget, as a
// broker's (413, and 503 with Retry-After when the budget is spent), so that a flood of large
// requests to a sink cannot hold more memory than one to a broker. The body read is handed on to a
// in r.Body, held against the budget until a returns. Only POSTs are checked: what else the
// component answers (405) says nothing of what exists.
func (h *Handler) Guard(prefix, kind string, a Addresses) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			a.ServeHTTP(w, r)
			return
		}
		if h.o.Auth != nil {
			ns, name, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, prefix), "/")
			ref := router.BrokerRef{Namespace: ns, Name: name}
			var d senderauth.Decision
			if a.Has(ns, name) {
				d = h.check(ref, kind+" "+ref.String(), r.Header)
			} else {
				d = h.checkUnknown(ns, r.Header)
			}
			if d.Status != 0 {
				if d.Status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
				}
				http.Error(w, d.Reason, d.Status)
				return
			}
		}
		body, berr := h.o.Bodies.Read(r, h.o.MaxBodyBytes())
		if berr != nil {
			if berr.Status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", strconv.Itoa(h.o.RetryAfterSeconds))
			}
			http.Error(w, berr.Msg, berr.Status)
			return
		}
		defer body.Release()
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body.Data)), int64(len(body.Data))
		a.ServeHTTP(w, r)
	})
}

// batchEventCost is what decoding one event of a batch holds beyond the body's bytes: its
// structures and strings (about 250 bytes live for a tiny event, and five times that allocated on
// the way). It is taken from the body budget before a batch is built, so that a 4 MiB batch of
// 68,000 tiny events counts what it will hold, not 4 MiB.
const batchEventCost = 1024

// admitBatch decides, before any of its events is built, whether a batch of n events to ref is
// decoded: 413 for more than the broker can ever queue, or more than the body budget could ever
// hold; 503 when the budget cannot hold it now. What it takes is given back with the body.
func (h *Handler) admitBatch(ref router.BrokerRef, body *Body, n int) error {
	if bb, ok := h.o.Publisher.(router.BatchBound); ok {
		if max := bb.MaxBatch(ref); max > 0 && n > max {
			return &BodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("a batch of %d events can never fit broker %s's queue of %d (spec.ingress.queueSize): send smaller batches", n, ref, max)}
		}
	}
	cost := int64(n) * batchEventCost
	if cost+int64(len(body.Data)) > h.o.Bodies.Max() {
		return &BodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("a batch of %d events takes %d bytes to decode, more than the %d the router decodes at once (spec.ingress.maxBodyBytesInFlight): send smaller batches", n, cost, h.o.Bodies.Max())}
	}
	if !body.take(cost) {
		return &BodyError{http.StatusServiceUnavailable, "too many request bodies are being received at once (spec.ingress.maxBodyBytesInFlight): retry later"}
	}
	return nil
}

// producerSpans starts a producer span per event, a child of the request's span, and writes its
// context into the event: the dispatch's delivery spans are its children, whichever process
// reads the event from the broker's log.
func producerSpans(ctx context.Context, ref router.BrokerRef, envs []*router.Envelope) []trace.Span {
	spans := make([]trace.Span, len(envs))
	for i, env := range envs {
		attrs := append(tracing.EventAttributes(env.Event), attribute.String("messaging.system", "switchyard"),
			attribute.String("messaging.operation.type", "send"), attribute.String("messaging.destination.name", ref.String()))
		pctx, sp := tracing.Tracer().Start(ctx, "send "+ref.String(), trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
		tracing.IntoEvent(pctx, env.Event)
		spans[i] = sp
	}
	return spans
}

func (h *Handler) fail(w http.ResponseWriter, ref router.BrokerRef, eventType string, code int, msg string) {
	h.count(ref, eventType, code)
	http.Error(w, msg, code)
}

func (h *Handler) count(ref router.BrokerRef, eventType string, code int) {
	h.o.Metrics.CountIngress(ref.Namespace, ref.Name, eventType, code)
}

// ForwardedHeaders picks the producer's headers that travel with an event to its subscribers:
// x-request-id, retry-after, knative-*, x-b3-*, and the W3C trace context when its traceparent is
// valid (W3C: an invalid one is ignored, tracestate with it). nil when there are none.
func ForwardedHeaders(h http.Header) http.Header {
	var out http.Header
	for k, vs := range h {
		if !forwarded(k) {
			continue
		}
		if (k == "Traceparent" || k == "Tracestate") && !tracing.ValidTraceparent(h.Get("Traceparent")) {
			continue
		}
		if out == nil {
			out = make(http.Header, 4)
		}
		out[k] = vs
	}
	return out
}

func forwarded(canonical string) bool {
	switch canonical {
	case "X-Request-Id", "Retry-After", "Traceparent", "Tracestate":
		return true
	}
	return hasPrefixFold(canonical, "knative-") || hasPrefixFold(canonical, "x-b3-")
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
