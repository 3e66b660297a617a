package ingress

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// sinkAddresses stands for a component's sinks: it answers 405 to anything but POST, 404 for a
// sink it does not have, 202 otherwise, and counts what reached it.
type sinkAddresses struct {
	have    map[string]bool
	reached int
}

func (s *sinkAddresses) Has(ns, name string) bool { return s.have[ns+"/"+name] }

func (s *sinkAddresses) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.reached++
	switch {
	case r.Method != http.MethodPost:
		http.Error(w, "POST", http.StatusMethodNotAllowed)
	case !s.have[strings.TrimPrefix(r.URL.Path, "/sinks/kafka/")]:
		http.Error(w, "no such sink", http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusAccepted)
	}
}

// onePublisher has one broker, shop/default, and accepts whatever is sent to it.
type onePublisher struct{ published int }

func (p *onePublisher) HasBroker(ref router.BrokerRef) bool { return ref.String() == "shop/default" }
func (p *onePublisher) Publish(context.Context, router.BrokerRef, []*router.Envelope) error {
	p.published++
	return nil
}

// TestSinksAreBehindSenderAuth: a sink's address is protected by the policy that names its
// namespace/name (or namespace/*) as a broker's is, with the same answers: 401 and
// WWW-Authenticate without valid credentials, 403 for a subject not allowed, an unknown sink in a
// protected namespace 401 to outsiders and 404 to producers with credentials; a sink no policy
// covers stays open. The router's own deliveries (the internal token) pass, to sinks and brokers.
func TestSinksAreBehindSenderAuth(t *testing.T) {
	auth := senderauth.New([]senderauth.Policy{{Brokers: []string{"shop/*"}, Tokens: [][]byte{[]byte("shop-token")}}})
	pub := &onePublisher{}
	h := New(Options{Publisher: pub, Logger: zap.NewNop(), Metrics: metrics.New(), MaxBodyBytes: func() int64 { return 1 << 20 },
		Auth: func() *senderauth.Authenticator { return auth }, Internal: "router-itself"})
	sinks := &sinkAddresses{have: map[string]bool{"shop/archive": true, "open/archive": true}}
	guarded := h.Guard("/sinks/kafka/", "KafkaSink", sinks)

	for _, c := range []struct {
		name, method, path, auth string
		want                     int
		reason                   string
	}{
		{"no token", "POST", "/sinks/kafka/shop/archive", "", 401, "KafkaSink shop/archive requires an Authorization: Bearer token"},
		{"wrong token", "POST", "/sinks/kafka/shop/archive", "Bearer nope", 401, "the bearer token is not one KafkaSink shop/archive accepts"},
		{"not bearer", "POST", "/sinks/kafka/shop/archive", "Basic c2hvcDp0b2tlbg==", 401, "requires an Authorization: Bearer token"},
		{"token", "POST", "/sinks/kafka/shop/archive", "Bearer shop-token", 202, ""},
		{"the router's own delivery", "POST", "/sinks/kafka/shop/archive", "Bearer router-itself", 202, ""},
		{"unknown sink, no token", "POST", "/sinks/kafka/shop/nosuch", "", 401, "namespace shop requires an Authorization: Bearer token"},
		{"unknown sink, token", "POST", "/sinks/kafka/shop/nosuch", "Bearer shop-token", 404, ""},
		{"unprotected namespace", "POST", "/sinks/kafka/open/archive", "", 202, ""},
		{"unknown sink, unprotected namespace", "POST", "/sinks/kafka/open/nosuch", "", 404, ""},
		{"not a POST", "GET", "/sinks/kafka/shop/archive", "", 405, ""},
	} {
		before := sinks.reached
		req := httptest.NewRequest(c.method, c.path, strings.NewReader("{}"))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		guarded.ServeHTTP(rec, req)
		if rec.Code != c.want || !strings.Contains(rec.Body.String(), c.reason) {
			t.Errorf("%s: %d %q, want %d %q", c.name, rec.Code, rec.Body, c.want, c.reason)
		}
		if rec.Code == 401 && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
		if reached := sinks.reached > before; reached != (rec.Code != 401) {
			t.Errorf("%s: answered %d, and the sink was reached: %v", c.name, rec.Code, reached)
		}
	}

	// The broker of the same namespace answers alike, and takes the router's own deliveries too.
	for auth, want := range map[string]int{"": 401, "Bearer shop-token": 202, "Bearer router-itself": 202} {
		req := httptest.NewRequest("POST", "/shop/default", strings.NewReader(`{"x":1}`))
		for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/t", "Ce-Type": "t", "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("broker shop/default with %q: %d %q, want %d", auth, rec.Code, rec.Body, want)
		}
	}
	if pub.published != 2 {
		t.Errorf("the broker published %d requests, want 2", pub.published)
	}

	// Without sender authentication anyone reaches every sink.
	open := New(Options{Publisher: pub, Logger: zap.NewNop(), Metrics: metrics.New(), MaxBodyBytes: func() int64 { return 1 << 20 }})
	rec := httptest.NewRecorder()
	open.Guard("/sinks/kafka/", "KafkaSink", sinks).ServeHTTP(rec, httptest.NewRequest("POST", "/sinks/kafka/shop/archive", nil))
	if rec.Code != 202 {
		t.Errorf("without sender authentication: %d %q", rec.Code, rec.Body)
	}
}

// TestSinkBodiesWithinTheBudget (issue #32): a sink's request body is read as a broker's: over
// maxBodyBytes it is 413, while the in-flight body budget is spent it is 503 with Retry-After, and
// nothing of either reaches the sink; a body that fits reaches it whole.
func TestSinkBodiesWithinTheBudget(t *testing.T) {
	budget := NewBodyBudget(64 << 10)
	h := New(Options{Publisher: &onePublisher{}, Logger: zap.NewNop(), Metrics: metrics.New(), MaxBodyBytes: func() int64 { return 32 << 10 },
		Bodies: budget, RetryAfterSeconds: 2})
	var got []byte
	sink := &bodySink{have: map[string]bool{"shop/archive": true}, got: &got}
	guarded := h.Guard("/sinks/kafka/", "KafkaSink", sink)
	post := func(body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		guarded.ServeHTTP(rec, httptest.NewRequest("POST", "/sinks/kafka/shop/archive", strings.NewReader(body)))
		return rec
	}
	if rec := post(`{"ok":true}`); rec.Code != 202 || string(got) != `{"ok":true}` {
		t.Errorf("a small body: %d, the sink read %q", rec.Code, got)
	}
	got = nil
	if rec := post(strings.Repeat("x", 33<<10)); rec.Code != http.StatusRequestEntityTooLarge || got != nil {
		t.Errorf("over maxBodyBytes: %d %q, the sink read %d bytes", rec.Code, rec.Body, len(got))
	}
	if !budget.Take(60 << 10) { // the other requests in flight
		t.Fatal("taking the budget")
	}
	rec := post(strings.Repeat("x", 20<<10))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "2" || got != nil {
		t.Errorf("budget spent: %d Retry-After %q, the sink read %d bytes", rec.Code, rec.Header().Get("Retry-After"), len(got))
	}
	budget.Release(60 << 10)
	if rec := post(strings.Repeat("y", 20<<10)); rec.Code != 202 || len(got) != 20<<10 {
		t.Errorf("budget back: %d, the sink read %d bytes", rec.Code, len(got))
	}
}

// bodySink is a sink that reads the whole body, as the real ones do.
type bodySink struct {
	have map[string]bool
	got  *[]byte
}

func (s *bodySink) Has(ns, name string) bool { return s.have[ns+"/"+name] }

func (s *bodySink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	*s.got = b
	w.WriteHeader(http.StatusAccepted)
}
