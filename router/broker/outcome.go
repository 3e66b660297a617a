package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// triggerMetrics holds a trigger's Prometheus series, resolved once instead of hashing label
// values on every event.
type triggerMetrics struct {
	all                                  *metrics.Metrics
	ns, broker, name                     string
	inFlight                             prometheus.Gauge
	retries, deadLettered, failed, drops prometheus.Counter
	overBudget, overflowed               prometheus.Counter
	byTypeCode                           sync.Map // typeCode -> *outcomeSeries
	// filterType is Knative's filter_type label; attemptsByCode caches Knative's filter series.
	filterType     string
	attemptsByCode sync.Map // int -> *metrics.AttemptSeries
}

type typeCode struct {
	eventType string
	code      int
}

type outcomeSeries struct {
	events  prometheus.Counter
	latency prometheus.Observer
}

func newTriggerMetrics(m *metrics.Metrics, broker router.BrokerRef, t router.TriggerRef, filterType string) *triggerMetrics {
	return &triggerMetrics{
		all: m, ns: t.Namespace, broker: broker.Name, name: t.Name, filterType: filterType,
		inFlight:     m.InFlight.WithLabelValues(t.Namespace, t.Name),
		retries:      m.Retries.WithLabelValues(t.Namespace, t.Name),
		deadLettered: m.DeadLettered.WithLabelValues(t.Namespace, t.Name),
		failed:       m.Failed.WithLabelValues(t.Namespace, t.Name),
		drops:        m.RepliesDropped.WithLabelValues(t.Namespace, t.Name),
		overBudget:   m.RepliesOverBudget.WithLabelValues(t.Namespace, t.Name),
		overflowed:   m.TriggerOverflow.WithLabelValues(t.Namespace, t.Name),
	}
}

func (tm *triggerMetrics) outcome(eventType string, code int) *outcomeSeries {
	eventType = tm.all.EventTypeLabel(tm.ns, tm.broker, eventType) // bounds byTypeCode too
	key := typeCode{eventType, code}
	if s, ok := tm.byTypeCode.Load(key); ok {
		return s.(*outcomeSeries)
	}
	labels := []string{tm.ns, tm.broker, tm.name, eventType, strconv.Itoa(code), metrics.CodeClass(code)}
	s, _ := tm.byTypeCode.LoadOrStore(key, &outcomeSeries{
		events:  tm.all.TriggerEvents.WithLabelValues(labels...),
		latency: tm.all.DispatchLatency.WithLabelValues(labels...),
	})
	return s.(*outcomeSeries)
}

// attempt records one delivery attempt in Knative's filter series: its status code (500 when no
// response came, as Knative reports it), its duration, and how long after the event's arrival it
// started.
func (tm *triggerMetrics) attempt(code int, took, sinceArrival time.Duration) {
	if code == 0 {
		code = 500
	}
	s, ok := tm.attemptsByCode.Load(code)
	if !ok {
		s, _ = tm.attemptsByCode.LoadOrStore(code, tm.all.Attempts(tm.ns, tm.broker, tm.name, tm.filterType, code))
	}
	s.(*metrics.AttemptSeries).Observe(took, sinceArrival)
}

type triggerStats struct {
	base                                         uint64 // broker events dispatched before the trigger existed
	matched, delivered, deadLettered, failed, rs atomic.Uint64
	// redriven counts the failures taken off the trigger's failed list by a redrive's run,
	// whatever that run's own outcome (counted apart): failed + deadLettered - redriven is what
	// waits for redrive now.
	redriven atomic.Uint64
	inFlight atomic.Int64
	// latency is how long the delivered events took, from acceptance to their final outcome.
	latency LatencyHistogram
	// held counts, per partition of a parking log, the trigger's copies in memory (queued,
	// delivering or waiting to retry); parked counts the copies handed to the log's park topic.
	held   heldByPartition
	parked atomic.Uint64
	// breaker is the trigger's circuit breaker, nil without one; a reload keeps it (and its
	// state) while its settings stay the same.
	breaker atomic.Pointer[breaker]
	gate    *pauseGate
}

// heldOn returns the trigger's copies of partition p held in memory.
func (s *triggerStats) heldOn(p int32) *heldCopies { return s.held.get(p) }

// finishTask turns a final delivery result into the outcome: reply published, dead-lettered or
// failed; records it and releases the event for this trigger.
// finished is set when the event has been released (see runTask).
func (r *Router) finishTask(ctx context.Context, tk task, req *delivery.Request, finished *bool) {
	t, env, res := tk.t, tk.env, &tk.res
	policy := &t.cfg.Delivery
	o := &router.Outcome{Attempts: res.Attempts, LastCode: res.Code}
	if res.Err != nil {
		o.LastError = res.Err.Error()
	}

	switch {
	case res.Delivered() && res.Reply == nil:
		o.Status = router.StatusDelivered
	case res.Delivered():
		o.ReplyID = res.Reply.ID()
		err := r.sendReply(ctx, tk, req, res.Reply)
		switch {
		case err == nil:
			o.Status = router.StatusDelivered
		case errors.Is(err, errReplyDiscarded):
			o.Status = router.StatusDelivered
			o.LastError = "reply dropped: " + err.Error()
		case errors.Is(err, errReplyBudgetSpent):
			o.Status = router.StatusDelivered
			o.LastError = "reply dropped: " + err.Error()
			t.m.overBudget.Inc()
		case errors.Is(err, router.ErrTTLExpired):
			// The hop limit doing its job: Knative drops such replies too.
			o.Status = router.StatusDelivered
			o.LastError = "reply dropped: " + err.Error()
			t.m.drops.Inc()
		default:
			failure := delivery.Result{Attempts: res.Attempts, Err: &router.DeliveryError{Retryable: router.IsRetryable(err), Msg: "publishing the reply: " + err.Error(), Cause: err}}
			o.LastError = failure.Err.Error()
			o.Status = r.deadLetter(ctx, req, policy, &failure, r.replyDestination(tk), o, router.StatusReplyFailed)
		}
	default:
		o.Status = r.deadLetter(ctx, req, policy, res, t.cfg.Subscriber, o, router.StatusFailed)
	}
	*finished = true // from here the event is released by the store, once the outcome is safe
	r.record(tk.b, t, env, o, tk.finisher())
}

// replyDestination is where tk's reply was to go, as knativeerrordest names it: the trigger's
// broker, or a flow's next broker or reply URI.
func (r *Router) replyDestination(tk task) string {
	switch to := tk.t.cfg.Reply; {
	case to == nil:
		return tk.b.url
	case to.Broker != nil:
		if next := (*r.brokers.Load())[*to.Broker]; next != nil && next.url != "" {
			return next.url
		}
		return to.Broker.String()
	default:
		return router.RedactURL(to.URI)
	}
}

// errReplyDiscarded: the trigger's replies go nowhere (a Sequence's last step without spec.reply).
var errReplyDiscarded = errors.New("the flow has no reply destination after this step")

// sendReply sends a subscriber's reply where the trigger says: back into its broker (a Trigger),
// or on to the next step of a Sequence or Parallel: another broker, a URI, or nowhere.
func (r *Router) sendReply(ctx context.Context, tk task, req *delivery.Request, reply *event.Event) error {
	if tracing.Active() {
		// The reply's own deliveries are children of this span: its context goes into the reply.
		var span trace.Span
		ctx, span = tracing.Tracer().Start(tracing.FromEvent(ctx, req.Event), "reply "+tk.t.cfg.Ref.String(),
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(tracing.EventAttributes(reply)...))
		defer span.End()
		tracing.IntoEvent(ctx, reply)
	}
	if tk.env.Observe != nil {
		// A reply to a replayed event is a new event (a replayed function's result): published as
		// any reply, marked with the run so that triggers and subscribers can tell it from live
		// traffic (docs/archive.md).
		if run, ok := router.Extension(req.Event, router.ExtReplay); ok {
			reply.SetExtension(router.ExtReplay, run)
		}
	}
	to := tk.t.cfg.Reply
	switch {
	case to == nil:
		return r.publishReply(ctx, tk.b, tk.env, tk.f.matched, reply)
	case to.Discard:
		return errReplyDiscarded
	case to.Broker != nil:
		next := (*r.brokers.Load())[*to.Broker]
		if next == nil {
			return fmt.Errorf("%w: %s", router.ErrBrokerNotFound, to.Broker)
		}
		return r.publishReply(ctx, next, tk.env, tk.f.matched, reply)
	default:
		res := r.o.Deliverer.Deliver(ctx, &delivery.Request{URL: to.URI, Event: reply, Namespace: req.Namespace}, &tk.t.cfg.Delivery)
		return res.Err
	}
}

// deadLetter hands the event to the policy's dead-letter sink and returns the resulting status:
// dead-lettered, or otherwise (no sink, or the sink failed too).
func (r *Router) deadLetter(ctx context.Context, req *delivery.Request, p *delivery.Policy, failure *delivery.Result, dest string, o *router.Outcome, otherwise router.Status) router.Status {
	if p.DeadLetterSink != "" && tracing.Active() {
		var span trace.Span
		ctx, span = tracing.Tracer().Start(tracing.FromEvent(ctx, req.Event), "dead-letter",
			trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(append(tracing.EventAttributes(req.Event),
				attribute.String("url.full", router.RedactURL(p.DeadLetterSink)), attribute.String("switchyard.failed_destination", router.RedactURL(dest)))...))
		defer span.End()
	}
	dl, ok := r.o.Deliverer.DeadLetter(ctx, req, p, failure, dest)
	if !ok {
		return otherwise
	}
	if dl.Delivered() {
		return router.StatusDeadLettered
	}
	o.LastError += "; the dead-letter sink failed too: " + dl.Err.Error()
	return otherwise
}

// record completes o with what every outcome carries and stores it, then calls then (the event's
// release at this trigger) once the outcome is safe.
func (r *Router) record(b *brokerState, t *triggerState, env *router.Envelope, o *router.Outcome, then func()) {
	e := env.Event
	o.EventID, o.Source, o.Type = e.ID(), e.Source(), e.Type()
	o.Broker, o.Trigger, o.Subscriber = b.ref, t.cfg.Ref, t.shownSubscriber
	o.Received, o.Finished = env.Received, time.Now()
	o.TraceID = tracing.TraceID(e)
	if o.Status != router.StatusDelivered {
		o.Event = e
	} else if r.keepAttributes {
		o.Attributes = &event.Event{Context: e.Context.Clone()}
	}
	switch o.Status {
	case router.StatusDelivered:
		t.stats.delivered.Add(1)
		t.stats.latency.observe(o.Finished.Sub(o.Received))
		if ce := r.logger.Check(zap.DebugLevel, "event delivered"); ce != nil {
			ce.Write(zap.String("trigger", t.cfg.Ref.String()), zap.String("event_id", o.EventID), zap.Int("attempts", o.Attempts),
				zap.Int("code", o.LastCode), zap.String("reply_id", o.ReplyID))
		}
	case router.StatusDeadLettered:
		t.stats.deadLettered.Add(1)
		t.m.deadLettered.Inc()
		r.logger.Warn("event dead-lettered", zap.String("trigger", t.cfg.Ref.String()), zap.String("event_id", o.EventID),
			zap.Int("attempts", o.Attempts), zap.Int("code", o.LastCode), zap.String("error", o.LastError))
	default:
		t.stats.failed.Add(1)
		t.m.failed.Inc()
		r.logger.Warn("event not delivered", zap.String("trigger", t.cfg.Ref.String()), zap.String("event_id", o.EventID),
			zap.String("status", string(o.Status)), zap.Int("attempts", o.Attempts), zap.Int("code", o.LastCode), zap.String("error", o.LastError))
	}
	if o.Attempts > 1 {
		t.stats.rs.Add(uint64(o.Attempts - 1))
		t.m.retries.Add(float64(o.Attempts - 1))
	}
	if env.Observe != nil {
		env.Observe(o.Status)
	}
	series := t.m.outcome(o.Type, o.LastCode)
	series.events.Inc()
	series.latency.Observe(float64(o.Latency()) / float64(time.Millisecond))
	// A durable log lets go of the event (a Kafka log commits its offset) only once its outcome
	// is safe too: a crash in between must not lose the only record of a failed event.
	if ds, ok := r.o.Results.(router.DurableStore); ok && b.admit == nil {
		ds.RecordThen(o, then)
		return
	}
	r.o.Results.Record(o)
	then()
}
