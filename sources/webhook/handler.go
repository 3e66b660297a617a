package webhook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/ingress"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/secret"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// PathPrefix is where webhook sources are served: PathPrefix + "{namespace}/{name}".
const PathPrefix = "/webhooks/"

// Options configure a Handler.
type Options struct {
	// Publisher takes events for Broker sinks.
	Publisher router.Publisher
	// Deliverer posts events to URI sinks.
	Deliverer *delivery.Deliverer
	// SecretsDir is where Kubernetes Secrets are mounted: secretKeyRef {name, key} is the file
	// {SecretsDir}/{name}/{key}.
	SecretsDir   string
	Logger       *zap.Logger
	Metrics      *metrics.Metrics
	MaxBodyBytes func() int64
	// Bodies bounds the bytes of bodies being read at once (shared with broker ingress); nil: a
	// budget of its own with the default bound.
	Bodies *ingress.BodyBudget
	// Dedup, when set, deduplicates deliveries for every replica (the Cassandra result store);
	// nil deduplicates in this process only.
	Dedup router.Deduplicator
	// Now is the clock (tests); time.Now by default.
	Now func() time.Time
}

// Handler serves every webhook source of the current configuration.
type Handler struct {
	o       Options
	logger  *zap.Logger
	sink    *delivery.SinkSender
	sources atomic.Pointer[map[string]*source]
}

type source struct {
	cfg      *config.WebhookSource
	provider provider
	secrets  []*secret.Watched
	dedup    *router.LocalDedup
}

// New returns a Handler with no sources; Apply gives it some.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Bodies == nil {
		o.Bodies = ingress.NewBodyBudget(0)
	}
	h := &Handler{o: o, logger: o.Logger.Named("webhook"), sink: &delivery.SinkSender{Publisher: o.Publisher, Deliverer: o.Deliverer}}
	empty := map[string]*source{}
	h.sources.Store(&empty)
	return h
}

// Apply makes sources the served set. A source that persists keeps its deduplication memory.
func (h *Handler) Apply(sources []*config.WebhookSource) {
	old := *h.sources.Load()
	next := make(map[string]*source, len(sources))
	for _, c := range sources {
		key := c.Namespace + "/" + c.Name
		s := &source{cfg: c, provider: providers[c.Provider]}
		for _, ref := range c.Secrets {
			s.secrets = append(s.secrets, secret.Watch(ref, h.o.SecretsDir))
		}
		if prev := old[key]; prev != nil && prev.dedup != nil && prev.dedup.Window() == c.DedupWindow {
			s.dedup = prev.dedup
		} else if c.DedupWindow > 0 {
			s.dedup = router.NewLocalDedup(c.DedupWindow, 0)
		}
		next[key] = s
	}
	h.sources.Store(&next)
}

// claim is a delivery key reserved for a request, and where: shared (every replica) or here.
type claim struct {
	key    string
	shared bool
}

// reserve claims a delivery key of src: through the shared Deduplicator when there is one (every
// replica, across restarts), else (or while it cannot answer) in this process.
func (h *Handler) reserve(ctx context.Context, src *source, key string, now time.Time) (claim, router.DedupState) {
	if d := h.o.Dedup; d != nil {
		state, err := d.Reserve(ctx, sharedKey(src, key), src.cfg.DedupWindow)
		if err == nil {
			return claim{key, true}, state
		}
		h.logger.Warn("shared webhook deduplication unavailable: deduplicating in this process only", zap.Error(err))
	}
	return claim{key, false}, src.dedup.Reserve(key, now)
}

// settle ends a claim where reserve made it.
func (h *Handler) settle(src *source, c claim, accepted bool) {
	if !c.shared {
		src.dedup.Settle(c.key, accepted, h.o.Now())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.o.Dedup.Settle(ctx, sharedKey(src, c.key), accepted, src.cfg.DedupWindow); err != nil {
		h.logger.Warn("settling a shared webhook deduplication claim", zap.Error(err))
	}
}

func sharedKey(src *source, key string) string {
	return src.cfg.Namespace + "/" + src.cfg.Name + "/" + key
}

// Owns reports whether path is a webhook source's path: /webhooks/{namespace}/{name}.
func Owns(path string) bool {
	rest, ok := strings.CutPrefix(strings.TrimSuffix(path, "/"), PathPrefix)
	return ok && strings.Count(rest, "/") == 1
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(strings.TrimSuffix(r.URL.Path, "/"), PathPrefix)
	src := (*h.sources.Load())[key]
	if src == nil {
		http.Error(w, fmt.Sprintf("webhook source %s not found", key), http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "webhooks are POSTed", http.StatusMethodNotAllowed)
		return
	}
	ns, name := src.cfg.Namespace, src.cfg.Name
	m := h.o.Metrics
	m.WebhookReceived.WithLabelValues(ns, name).Inc()
	rejectWith := func(status int, reason, msg string) {
		m.WebhookRejected.WithLabelValues(ns, name, reason).Inc()
		http.Error(w, msg, status)
	}

	read, berr := h.o.Bodies.Read(r, h.o.MaxBodyBytes())
	if berr != nil {
		reason := map[int]string{http.StatusRequestEntityTooLarge: "too_large", http.StatusServiceUnavailable: "busy", http.StatusRequestTimeout: "timeout"}[berr.Status]
		if reason == "" {
			reason = "bad_body"
		}
		if berr.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		rejectWith(berr.Status, reason, berr.Msg)
		return
	}
	defer read.Release()
	body := read.Data
	now := h.o.Now()
	secrets := values(src.secrets, now)
	if len(secrets) == 0 && len(src.secrets) > 0 {
		h.logger.Error("no secret of the webhook source is readable and long enough", zap.String("source", key), zap.Int("min_bytes", config.MinWebhookSecretBytes))
		rejectWith(http.StatusServiceUnavailable, "no_secret", fmt.Sprintf("the webhook source has no readable secret of at least %d bytes configured", config.MinWebhookSecretBytes))
		return
	}
	res := src.provider(&request{h: r.Header, body: body, now: now, secrets: secrets, src: src.cfg})
	if res.event == nil {
		if res.reason != "" {
			rejectWith(res.status, res.reason, res.message)
			return
		}
		m.WebhookVerified.WithLabelValues(ns, name).Inc()
		w.Header().Set("Content-Type", res.contentType)
		w.WriteHeader(res.status)
		_, _ = io.WriteString(w, res.message)
		return
	}
	m.WebhookVerified.WithLabelValues(ns, name).Inc()

	var claims []claim // what deduplication reserved for this request
	if src.dedup != nil && res.deliveryID != "" {
		keys := []string{res.deliveryID}
		if res.bodyKey != "" {
			keys = append(keys, res.bodyKey)
		}
		for _, k := range keys {
			c, state := h.reserve(r.Context(), src, k, now)
			if state == router.DedupFresh {
				claims = append(claims, c)
				continue
			}
			for _, reserved := range claims {
				h.settle(src, reserved, false)
			}
			m.WebhookDeduplicated.WithLabelValues(ns, name).Inc()
			what := "delivery " + res.deliveryID
			if k == res.bodyKey {
				what = "a delivery with the same signed body" // a replay under a new delivery id
			}
			if state == router.DedupAccepted {
				http.Error(w, what+" was already accepted: not routed again", http.StatusOK)
			} else {
				http.Error(w, what+" is being routed right now: retry later", http.StatusConflict)
			}
			return
		}
	}
	for k, v := range src.cfg.Extensions {
		res.event.SetExtension(k, v)
	}
	status, msg := h.route(r.Context(), src, res, ingress.ForwardedHeaders(r.Header))
	for _, c := range claims {
		h.settle(src, c, status < 300)
	}
	if status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	if status >= 300 {
		m.WebhookRejected.WithLabelValues(ns, name, "sink_"+strconv.Itoa(status)).Inc()
	}
	http.Error(w, msg, status)
}

// route hands the event to the source's sink and says what to answer the provider.
func (h *Handler) route(ctx context.Context, src *source, res result, fwd http.Header) (int, string) {
	e := res.event
	if err := router.ValidateEvent(e); err != nil {
		return http.StatusBadRequest, "the webhook maps to an invalid CloudEvent: " + err.Error()
	}
	ctx, end := tracing.SourceSpan(tracing.FromHeaders(ctx, propagation.HeaderCarrier(fwd)), "webhook "+src.cfg.Namespace+"/"+src.cfg.Name,
		trace.SpanKindProducer, e, attribute.String("switchyard.webhook.provider", src.cfg.Provider))
	err := h.sink.Send(ctx, src.cfg.Sink, &router.Envelope{Event: e, Headers: fwd}, src.cfg.Namespace)
	end(err)
	code := router.HTTPStatus(err)
	var de *router.DeliveryError
	switch {
	case err == nil:
		return code, "accepted as event " + e.ID()
	case errors.As(err, &de):
		h.logger.Warn("webhook sink refused the event", zap.String("sink", router.RedactURL(src.cfg.Sink.URI)), zap.Error(err))
		return code, "the sink did not accept the event: " + err.Error()
	case code == http.StatusTooManyRequests:
		return code, fmt.Sprintf("broker %s is at capacity (%v): retry later", src.cfg.Sink.Broker, err)
	case code == http.StatusServiceUnavailable:
		return code, fmt.Sprintf("broker %s cannot accept events now", src.cfg.Sink.Broker)
	default:
		return code, fmt.Sprintf("broker %s refused the event: %v", src.cfg.Sink.Broker, err)
	}
}
