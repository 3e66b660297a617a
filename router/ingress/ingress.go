// Package ingress is the Knative-compatible broker ingress: POST /{namespace}/{broker} with a
// CloudEvent in binary, structured or batched mode, answered with the status codes Knative clients
// expect (see docs/knative-differences.md). It decodes and validates; the broker admits and queues.
package ingress

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/senderauth"
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

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
		http.Error(w, fmt.Sprintf("broker %s not found", ref), http.StatusNotFound)
		return
	}
	if h.o.Auth != nil {
		if d := h.o.Auth().Check(ref, r.Header); d.Status != 0 {
			if d.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
			}
			h.fail(w, ref, "", d.Status, d.Reason)
			return
		}
	}
	body, status, msg := readBody(r, h.o.MaxBodyBytes())
	if status != 0 {
		h.fail(w, ref, "", status, msg)
		return
	}
	events, err := cehttp.Decode(r.Header, body)
	if err != nil {
		h.fail(w, ref, "", http.StatusBadRequest, err.Error())
		return
	}
	fwd := ForwardedHeaders(r.Header)
	envs := make([]*router.Envelope, len(events))
	for i, e := range events {
		envs[i] = &router.Envelope{Event: e, Headers: fwd}
	}
	eventType := events[0].Type()
	err = h.o.Publisher.Publish(r.Context(), ref, envs)
	switch code := router.PublishStatus(err); code {
	case http.StatusAccepted:
		h.count(ref, eventType, code)
		w.WriteHeader(code)
	case http.StatusNotFound:
		http.Error(w, fmt.Sprintf("broker %s not found", ref), code)
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(h.o.RetryAfterSeconds))
		h.fail(w, ref, eventType, code, fmt.Sprintf("broker %s is at capacity (%v): retry later", ref, err))
	case http.StatusServiceUnavailable:
		h.logger.Warn("broker cannot accept events", zap.String("broker", ref.String()), zap.Error(err))
		h.fail(w, ref, eventType, code, fmt.Sprintf("broker %s cannot accept events now: %v", ref, err))
	default:
		h.fail(w, ref, eventType, code, err.Error())
	}
}

func (h *Handler) fail(w http.ResponseWriter, ref router.BrokerRef, eventType string, code int, msg string) {
	h.count(ref, eventType, code)
	http.Error(w, msg, code)
}

func (h *Handler) count(ref router.BrokerRef, eventType string, code int) {
	h.o.Metrics.CountIngress(ref.Namespace, ref.Name, eventType, code)
}

// readBody reads the request body up to limit bytes; a status is returned for a body too large
// (413) or unreadable (400).
func readBody(r *http.Request, limit int64) ([]byte, int, string) {
	// Formatted only when needed: this runs for every event.
	tooLarge := func() string { return fmt.Sprintf("body larger than the %d-byte limit", limit) }
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, tooLarge()
	}
	if r.ContentLength >= 0 {
		// Exactly the announced length (the server reads no further): the buffer becomes the
		// event's data and is held while the event is queued, so it should not round up to the
		// next size class, as a byte more to detect an overlong body would make it.
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, http.StatusBadRequest, "reading body: " + err.Error()
		}
		return buf, 0, ""
	}
	buf := make([]byte, 0, 513)
	lr := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, http.StatusBadRequest, "reading body: " + err.Error()
		}
	}
	if int64(len(buf)) > limit {
		return nil, http.StatusRequestEntityTooLarge, tooLarge()
	}
	return buf, 0, ""
}

// ForwardedHeaders picks the producer's headers that travel with an event to its subscribers:
// x-request-id, retry-after, knative-*, x-b3-*, and the W3C trace context. nil when there are none.
func ForwardedHeaders(h http.Header) http.Header {
	var out http.Header
	for k, vs := range h {
		if !forwarded(k) {
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
