package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// otlpReceiver collects the spans exported to it, over OTLP/HTTP (protobuf) or OTLP/gRPC: the
// protocol itself, decoded with OpenTelemetry's own message types.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpReceiver) take(req *collectortrace.ExportTraceServiceRequest) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
}

func (o *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	o.take(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req collectortrace.ExportTraceServiceRequest
	if r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	o.take(&req)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

// otlpOverHTTP starts an OTLP/HTTP receiver and points the routers this test starts at it,
// exporting every 100 ms.
func otlpOverHTTP(t *testing.T) *otlpReceiver {
	recv := &otlpReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	return recv
}

func (o *otlpReceiver) inTrace(traceID string) []*tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range o.spans {
		if hex.EncodeToString(s.TraceId) == traceID {
			out = append(out, s)
		}
	}
	return out
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key != key {
			continue
		}
		if v, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
			return strconv.FormatInt(v.IntValue, 10)
		}
		return kv.Value.GetStringValue()
	}
	return ""
}

// TestTracingOTLP (issue #21): with OTEL_EXPORTER_OTLP_ENDPOINT set, an event's way is a trace
// that continues the producer's: the ingress request's server span (a child of the producer's
// span), a producer span per accepted event, a client span per delivery attempt (the second with
// http.request.resend_count 1), the subscriber's traceparent a child of its attempt, and the
// trace id stored with the outcome. Over OTLP/HTTP and OTLP/gRPC, to real receivers, and through
// a Kafka-class broker's topic (the context travels in the event's traceparent extension).
func TestTracingOTLP(t *testing.T) {
	for _, c := range []struct{ name, protocol string }{{"http-protobuf", "http/protobuf"}, {"grpc", "grpc"}, {"kafka-broker", "http/protobuf"}} {
		protocol := c.protocol
		t.Run(c.name, func(t *testing.T) {
			recv := &otlpReceiver{}
			endpoint := ""
			if protocol == "grpc" {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				collectortrace.RegisterTraceServiceServer(srv, recv)
				go func() { _ = srv.Serve(ln) }()
				t.Cleanup(srv.Stop)
				endpoint = "http://" + ln.Addr().String()
			} else {
				srv := httptest.NewServer(recv)
				t.Cleanup(srv.Close)
				endpoint = srv.URL
			}
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
			t.Setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
			t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
			t.Setenv("OTEL_SERVICE_NAME", "switchyard-e2e")

			var mu sync.Mutex
			var traceparents []string
			sub := newSubscriber(t, func(n int, req received, w http.ResponseWriter) {
				mu.Lock()
				traceparents = append(traceparents, req.Header.Get("Traceparent"))
				mu.Unlock()
				if n == 1 {
					w.WriteHeader(http.StatusServiceUnavailable) // once: the second attempt is a resend
				}
			})
			brokerDoc, spec := brokerYAML("default"), ""
			if c.name == "kafka-broker" {
				kafka := testenv.Kafka(t)
				brokerDoc = kafkaBroker("default", fmt.Sprintf("e2e-trace-%d", time.Now().UnixNano()))
				spec = fmt.Sprintf("  kafka:\n    bootstrapServers: [%s]\n    partitions: 1\n", kafka)
			}
			r := startRouterIn(t, t.TempDir(), brokerDoc+triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+sub.URL+
				"\n  delivery:\n    retry: 2\n    backoffDelay: PT0.05S\n"), "", spec)
			const traceID, producerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
			req := binaryEvent("traced", "order.created")
			req.Headers["Traceparent"] = "00-" + traceID + "-" + producerSpan + "-01"
			if code, _, body := r.send(t, "/default/default", req); code != http.StatusAccepted {
				t.Fatalf("send: %d %s", code, body)
			}
			sub.waitFor(t, 2, 10*time.Second)

			var spans []*tracepb.Span
			waitFor(t, 10*time.Second, func() bool {
				spans = recv.inTrace(traceID)
				return len(spans) >= 4
			})
			byKind := map[tracepb.Span_SpanKind][]*tracepb.Span{}
			for _, s := range spans {
				byKind[s.Kind] = append(byKind[s.Kind], s)
			}
			server, producer, clients := byKind[tracepb.Span_SPAN_KIND_SERVER], byKind[tracepb.Span_SPAN_KIND_PRODUCER], byKind[tracepb.Span_SPAN_KIND_CLIENT]
			if len(server) != 1 || len(producer) != 1 || len(clients) != 2 {
				t.Fatalf("spans of the trace: %d server, %d producer, %d client; want 1, 1, 2", len(server), len(producer), len(clients))
			}
			if hex.EncodeToString(server[0].ParentSpanId) != producerSpan {
				t.Errorf("the server span's parent is %x, want the producer's %s", server[0].ParentSpanId, producerSpan)
			}
			if string(producer[0].ParentSpanId) != string(server[0].SpanId) || attr(producer[0], "cloudevents.event_id") != "traced" ||
				attr(producer[0], "cloudevents.event_type") != "order.created" || attr(producer[0], "messaging.destination.name") != "default/default" {
				t.Errorf("producer span: %v", producer[0])
			}
			resent := 0
			var last *tracepb.Span
			for _, c := range clients {
				if string(c.ParentSpanId) != string(producer[0].SpanId) || attr(c, "cloudevents.event_id") != "traced" {
					t.Errorf("a delivery span is not the producer span's child: %v", c)
				}
				if attr(c, "http.request.resend_count") == "1" {
					resent++
					last = c
				}
			}
			if resent != 1 {
				t.Fatalf("delivery spans with http.request.resend_count 1: %d, want 1", resent)
			}
			mu.Lock()
			got := traceparents[1]
			mu.Unlock()
			if want := "00-" + traceID + "-" + hex.EncodeToString(last.SpanId) + "-01"; got != want {
				t.Errorf("the subscriber's traceparent %q, want %q (a child of the second attempt)", got, want)
			}
			waitFor(t, 5*time.Second, func() bool {
				_, body := r.get(t, "/v1/events/traced")
				return strings.Contains(body, `"traceId": "`+traceID+`"`)
			})
		})
	}
}

// TestTracingOffByDefault: without OTEL_* the producer's traceparent reaches the subscriber as it
// was sent, and nothing is exported.
func TestTracingOffByDefault(t *testing.T) {
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("t", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n"), "")
	req := binaryEvent("untraced", "x")
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	req.Headers["Traceparent"] = tp
	r.send(t, "/default/default", req)
	if got := sub.waitFor(t, 1, 5*time.Second)[0].Header.Get("Traceparent"); got != tp {
		t.Errorf("traceparent %q, want the producer's %q", got, tp)
	}
	if strings.Contains(r.log.String(), "tracing to OpenTelemetry") {
		t.Error("tracing turned on without OTEL_* variables")
	}
}

// TestTracingDeadLetterAndReply: dead-lettering is a span of the event's trace (and the sink gets
// its context), and a reply is published in a span whose context the reply carries, so the
// reply's deliveries are its children.
func TestTracingDeadLetterAndReply(t *testing.T) {
	recv := otlpOverHTTP(t)
	dls := newSubscriber(t, nil)
	answers := newSubscriber(t, nil)
	fn := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		if req.Event.Type() == "fail" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Ce-Specversion", "1.0")
		h.Set("Ce-Id", "answer-to-"+req.Event.ID())
		h.Set("Ce-Type", "answer")
		h.Set("Ce-Source", "/fn")
		w.WriteHeader(http.StatusOK)
	})
	r := startRouter(t, brokerYAML("default")+
		triggerYAML("fn", "  broker: default\n  filter:\n    attributes: {type: fail}\n  subscriber:\n    uri: "+fn.URL+"\n  delivery:\n    retry: 0\n    deadLetterSink: {uri: \""+dls.URL+"\"}\n")+
		triggerYAML("ask", "  broker: default\n  filter:\n    attributes: {type: ask}\n  subscriber:\n    uri: "+fn.URL+"\n")+
		triggerYAML("answers", "  broker: default\n  filter:\n    attributes: {type: answer}\n  subscriber:\n    uri: "+answers.URL+"\n"), "")
	const failTrace, askTrace = "11111111111111111111111111111111", "22222222222222222222222222222222"
	send := func(id, typ, trace string) {
		req := binaryEvent(id, typ)
		req.Headers["Traceparent"] = "00-" + trace + "-00f067aa0ba902b7-01"
		req.Headers["Content-Type"] = "application/json"
		req.Body = `{"message":"q"}`
		if code, _, body := r.send(t, "/default/default", req); code != http.StatusAccepted {
			t.Fatalf("send: %d %s", code, body)
		}
	}
	send("f-1", "fail", failTrace)
	send("a-1", "ask", askTrace)
	dl := dls.waitFor(t, 1, 10*time.Second)[0]
	answers.waitFor(t, 1, 10*time.Second)

	var dlSpan *tracepb.Span
	waitFor(t, 10*time.Second, func() bool {
		for _, s := range recv.inTrace(failTrace) {
			if s.Name == "dead-letter" {
				dlSpan = s
			}
		}
		return dlSpan != nil
	})
	if got, want := dl.Header.Get("Traceparent"), "00-"+failTrace+"-"+hex.EncodeToString(dlSpan.SpanId)+"-01"; got != want {
		t.Errorf("the dead-letter sink's traceparent %q, want %q", got, want)
	}
	var replySpan, answerDelivery *tracepb.Span
	waitFor(t, 10*time.Second, func() bool {
		for _, s := range recv.inTrace(askTrace) {
			switch s.Name {
			case "reply default/ask":
				replySpan = s
			case "deliver default/answers":
				answerDelivery = s
			}
		}
		return replySpan != nil && answerDelivery != nil
	})
	if string(answerDelivery.ParentSpanId) != string(replySpan.SpanId) {
		t.Errorf("the reply's delivery is not a child of the reply span")
	}
}

// TestTracingWebhookSource: a webhook's event is handed to its broker in a span that continues
// the provider's traceparent, and its delivery is that span's child.
func TestTracingWebhookSource(t *testing.T) {
	recv := otlpOverHTTP(t)
	sub := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n")+
		"apiVersion: switchyard.dev/v1alpha1\nkind: WebhookSource\nmetadata: {name: crm, namespace: default}\nspec:\n  provider: generic\n  generic: {verification: none}\n  sink:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n---\n", "")
	const traceID = "33333333333333333333333333333333"
	req, _ := http.NewRequest(http.MethodPost, r.Ingress+"/webhooks/default/crm", strings.NewReader(`{"x":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	sub.waitFor(t, 1, 5*time.Second)
	var hook, deliver *tracepb.Span
	waitFor(t, 10*time.Second, func() bool {
		for _, s := range recv.inTrace(traceID) {
			switch s.Name {
			case "webhook default/crm":
				hook = s
			case "deliver default/all":
				deliver = s
			}
		}
		return hook != nil && deliver != nil
	})
	if hex.EncodeToString(hook.ParentSpanId) != "00f067aa0ba902b7" || string(deliver.ParentSpanId) != string(hook.SpanId) {
		t.Errorf("webhook span's parent %x (want the provider's), delivery's parent %x (want the webhook span %x)", hook.ParentSpanId, deliver.ParentSpanId, hook.SpanId)
	}
}
