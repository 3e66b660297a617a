// Package tracing is how Switchyard's spans are made (OpenTelemetry, docs/tracing.md): the
// tracer, the CloudEvents attributes of a span, and the event's own trace context, carried in the
// CloudEvents distributed-tracing extensions (traceparent, tracestate) so that it crosses the
// broker's log, a Kafka topic included. With no tracer provider set (tracing off, the default)
// every call here is a no-op that allocates nothing worth measuring.
package tracing

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/switchyard-events/switchyard/router"
)

// active is set once a tracer provider is installed: until then no span is even started, so
// tracing off costs nothing on the hot path (not even a context value).
var active atomic.Bool

// SetActive says whether a tracer provider is installed (cmd/switchyard, when OTEL_* asks for
// tracing; the tracing benchmark turns it on and off).
func SetActive(on bool) { active.Store(on) }

// Active reports whether spans are made.
func Active() bool { return active.Load() }

// Tracer is Switchyard's tracer, from the global provider (cmd/switchyard sets it up).
func Tracer() trace.Tracer { return otel.Tracer("github.com/switchyard-events/switchyard") }

// Enabled reports whether spans are recorded at all: callers skip building attributes otherwise.
func Enabled(ctx context.Context) bool { return trace.SpanFromContext(ctx).IsRecording() }

// EventAttributes are the CloudEvents semantic-convention attributes of e.
func EventAttributes(e *event.Event) []attribute.KeyValue {
	attrs := []attribute.KeyValue{
		attribute.String("cloudevents.event_id", e.ID()),
		attribute.String("cloudevents.event_source", e.Source()),
		attribute.String("cloudevents.event_type", e.Type()),
		attribute.String("cloudevents.event_spec_version", e.SpecVersion()),
	}
	if s := e.Subject(); s != "" {
		attrs = append(attrs, attribute.String("cloudevents.event_subject", s))
	}
	return attrs
}

// eventCarrier reads and writes a trace context in an event's extensions.
type eventCarrier struct{ e *event.Event }

func (c eventCarrier) Get(key string) string {
	v, _ := router.Extension(c.e, key)
	s, _ := v.(string)
	return s
}

func (c eventCarrier) Set(key, value string) { c.e.SetExtension(key, value) }

func (c eventCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// FromEvent is ctx with the trace context e carries, the parent of the spans made for it.
func FromEvent(ctx context.Context, e *event.Event) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, eventCarrier{e})
}

// IntoEvent writes ctx's span context into e (traceparent, tracestate), replacing the producer's:
// what reads the event later continues this span, a child of the producer's, not a copy of it.
func IntoEvent(ctx context.Context, e *event.Event) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		otel.GetTextMapPropagator().Inject(ctx, eventCarrier{e})
	}
}

// IntoHeaders writes ctx's span context into outgoing HTTP headers (traceparent, tracestate).
func IntoHeaders(ctx context.Context, h propagation.HeaderCarrier) {
	otel.GetTextMapPropagator().Inject(ctx, h)
}

// FromHeaders is ctx with the trace context of incoming HTTP headers.
func FromHeaders(ctx context.Context, h propagation.HeaderCarrier) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, h)
}

// TraceID is the trace an event belongs to, from its traceparent extension, or "" when it has
// none or an invalid one. It is a copy: a substring would keep the whole producer-chosen value
// alive in every outcome that records it.
func TraceID(e *event.Event) string {
	v := eventCarrier{e}.Get("traceparent")
	if !ValidTraceparent(v) {
		return ""
	}
	return strings.Clone(v[3:35])
}

// ValidTraceparent reports whether v is a W3C traceparent (Trace Context, level 1): version,
// trace id, parent id and flags in lower-case hex, "00-" + 32 + "-" + 16 + "-" + 2 characters,
// neither id all zeros, version ff never. A later version may append fields after a dash;
// version 00 may not.
func ValidTraceparent(v string) bool {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' {
		return false
	}
	if v[:2] == "ff" || (v[:2] == "00" && len(v) != 55) || (len(v) > 55 && v[55] != '-') {
		return false
	}
	for _, field := range [...]string{v[:2], v[3:35], v[36:52], v[53:55]} {
		for i := 0; i < len(field); i++ {
			if c := field[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return strings.Trim(v[3:35], "0") != "" && strings.Trim(v[36:52], "0") != ""
}

// DropInvalidTraceContext removes e's traceparent, and its tracestate with it, when the
// traceparent is not valid: W3C Trace Context says to ignore both then, and an invalid one was
// only ever a producer's bytes carried along.
func DropInvalidTraceContext(e *event.Event) {
	v, ok := router.Extension(e, "traceparent")
	if !ok {
		return
	}
	if s, isString := v.(string); isString && ValidTraceparent(s) {
		return
	}
	e.SetExtension("traceparent", nil)
	e.SetExtension("tracestate", nil)
}

// SourceSpan starts the span in which a source (a webhook, a KafkaSource) hands event e to its
// sink, a child of parent's trace context or else of the one e carries, and writes the span's
// context into e so that the deliveries that follow are its children. end closes it with the
// sink's answer. Inactive tracing: ctx unchanged, end a no-op.
func SourceSpan(parent context.Context, name string, kind trace.SpanKind, e *event.Event, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	if !Active() {
		return parent, func(error) {}
	}
	if !trace.SpanContextFromContext(parent).IsValid() {
		parent = FromEvent(parent, e)
	}
	ctx, span := Tracer().Start(parent, name, trace.WithSpanKind(kind), trace.WithAttributes(append(EventAttributes(e), attrs...)...))
	IntoEvent(ctx, e)
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}
