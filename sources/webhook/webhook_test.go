package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/metrics"
)

type capture struct {
	mu   sync.Mutex
	envs []*router.Envelope
	err  error
}

func (c *capture) HasBroker(router.BrokerRef) bool { return true }
func (c *capture) Publish(_ context.Context, _ router.BrokerRef, envs []*router.Envelope) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.envs = append(c.envs, envs...)
	return nil
}

func (c *capture) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.envs)
}

var now = time.Unix(1_800_000_000, 0)

// fixture serves one source whose secrets live in a Kubernetes-style secrets dir.
func fixture(t *testing.T, src *config.WebhookSource, secrets ...string) (*Handler, *capture, string) {
	t.Helper()
	dir := t.TempDir()
	for i, s := range secrets {
		name := fmt.Sprintf("wh%d", i)
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "secret"), []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		src.Secrets = append(src.Secrets, config.SecretRef{Name: name, Key: "secret"})
	}
	if src.Namespace == "" {
		src.Namespace, src.Name = "ns", "hook"
	}
	if src.Tolerance == 0 {
		src.Tolerance = 5 * time.Minute
	}
	if src.Sink.Broker == nil && src.Sink.URI == "" {
		src.Sink.Broker = &router.BrokerRef{Namespace: "ns", Name: "default"}
	}
	pub := &capture{}
	h := New(Options{Publisher: pub, Deliverer: delivery.New(delivery.Options{}), SecretsDir: dir, Logger: zap.NewNop(),
		Metrics: metrics.New(), MaxBodyBytes: func() int64 { return 1 << 16 }, Now: func() time.Time { return now }})
	h.Apply([]*config.WebhookSource{src})
	return h, pub, dir
}

func post(h http.Handler, headers map[string]string, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/webhooks/ns/hook", strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func mac(newHash func() hash.Hash, key, msg string) []byte {
	m := hmac.New(newHash, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func TestGitHub(t *testing.T) {
	body := `{"action":"opened","number":7,"pull_request":{"number":7},"repository":{"full_name":"acme/shop"}}`
	sign := func(secret, b string) string { return "sha256=" + hex.EncodeToString(mac(sha256.New, secret, b)) }
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "github", DedupWindow: time.Minute}, "old-secret-0123456789", "new-secret-0123456789")
	headers := func(sig string) map[string]string {
		return map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"}
	}
	cases := []struct {
		name    string
		headers map[string]string
		body    string
		want    int
		msg     string
	}{
		{"missing signature", map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "x"}, body, 401, "missing X-Hub-Signature-256"},
		{"wrong secret", headers(sign("nope", body)), body, 401, "does not match"},
		{"tampered body", headers(sign("new-secret-0123456789", body)), body + " ", 401, "does not match"},
		{"sha1 style", headers("sha1=abc"), body, 401, "not sha256=<hex>"},
		{"missing event header", map[string]string{"X-Hub-Signature-256": sign("new-secret-0123456789", body)}, body, 400, "X-GitHub-Event"},
		{"not json", headers(sign("new-secret-0123456789", "nope")), "nope", 400, "not a JSON object"},
		{"valid with the second (rotated) secret", headers(sign("new-secret-0123456789", body)), body, 202, "accepted"},
		{"valid with the first secret, redelivered", headers(sign("old-secret-0123456789", body)), body, 200, "already accepted"},
	}
	for _, c := range cases {
		rec := post(h, c.headers, c.body)
		if rec.Code != c.want || !strings.Contains(rec.Body.String(), c.msg) {
			t.Errorf("%s: %d %q, want %d containing %q", c.name, rec.Code, rec.Body.String(), c.want, c.msg)
		}
		if strings.Contains(rec.Body.String(), "old-secret-0123456789") || strings.Contains(rec.Body.String(), "new-secret-0123456789") {
			t.Errorf("%s: answer leaks a secret", c.name)
		}
	}
	if pub.count() != 1 {
		t.Fatalf("routed %d events, want exactly 1", pub.count())
	}
	e := pub.envs[0].Event
	if e.Type() != "dev.knative.source.github.pull_request" || e.Source() != "https://github.com/acme/shop" || e.ID() != "d-1" || e.Subject() != "7" || e.DataContentType() != "application/json" || string(e.Data()) != body {
		t.Errorf("mapped event: %v", e)
	}
	ping := post(h, map[string]string{"X-Hub-Signature-256": sign("old-secret-0123456789", `{"zen":"x"}`), "X-GitHub-Event": "ping", "X-GitHub-Delivery": "p"}, `{"zen":"x"}`)
	if ping.Code != 200 || !strings.Contains(ping.Body.String(), "pong") || pub.count() != 1 {
		t.Errorf("ping: %d %s", ping.Code, ping.Body.String())
	}
}

// TestGitHubPublishedExample checks the signature GitHub's documentation gives for its example.
func TestGitHubPublishedExample(t *testing.T) {
	r := &request{h: http.Header{}, body: []byte("Hello, World!"), secrets: [][]byte{[]byte("It's a Secret to Everybody")}, src: &config.WebhookSource{}}
	r.h.Set("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
	r.h.Set("X-GitHub-Event", "push")
	r.h.Set("X-GitHub-Delivery", "x")
	// The signature verifies; the body is then rejected only for not being JSON.
	if res := gitHub(r); res.reason != "bad_body" {
		t.Errorf("GitHub's published example did not verify: %+v", res)
	}
}

func TestGitHubSourceEventTypes(t *testing.T) {
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "github", GitHubEventTypes: []string{"push"}, Source: "https://github.com/acme/shop"}, "s-0123456789abcdef")
	body := `{"compare":"https://github.com/acme/shop/compare/abc...def","repository":{"full_name":"other/repo"}}`
	sig := "sha256=" + hex.EncodeToString(mac(sha256.New, "s-0123456789abcdef", body))
	if rec := post(h, map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Event": "issues", "X-GitHub-Delivery": "a"}, body); rec.Code != 200 || pub.count() != 0 {
		t.Errorf("an event kind outside eventTypes: %d, routed %d", rec.Code, pub.count())
	}
	if rec := post(h, map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Event": "push", "X-GitHub-Delivery": "b"}, body); rec.Code != 202 {
		t.Fatalf("push: %d %s", rec.Code, rec.Body.String())
	}
	if e := pub.envs[0].Event; e.Source() != "https://github.com/acme/shop" || e.Subject() != "abc...def" {
		t.Errorf("GitHubSource mapping: source %s subject %s", e.Source(), e.Subject())
	}
}

func TestGitLab(t *testing.T) {
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "gitlab", DedupWindow: time.Minute}, "tok-1-0123456789abcdef", "tok-2-0123456789abcdef")
	body := `{"object_kind":"merge_request","project":{"web_url":"https://gitlab.com/acme/shop"},"object_attributes":{"iid":12,"id":999}}`
	hdr := func(tok, uuid string) map[string]string {
		return map[string]string{"X-Gitlab-Token": tok, "X-Gitlab-Event": "Merge Request Hook", "X-Gitlab-Event-UUID": uuid}
	}
	for _, c := range []struct {
		h    map[string]string
		want int
	}{
		{map[string]string{"X-Gitlab-Event": "Push Hook"}, 401},
		{hdr("wrong", "u1"), 401},
		{hdr("tok-2-0123456789abcdef", "u1"), 202},
		{hdr("tok-1-0123456789abcdef", "u1"), 200}, // the same delivery again
		{hdr("tok-1-0123456789abcdef", "u2"), 202},
	} {
		if rec := post(h, c.h, body); rec.Code != c.want {
			t.Errorf("%v: %d %s, want %d", c.h, rec.Code, rec.Body.String(), c.want)
		}
	}
	if pub.count() != 2 {
		t.Fatalf("routed %d, want 2", pub.count())
	}
	if e := pub.envs[0].Event; e.Type() != "dev.knative.sources.gitlab.merge_request" || e.Source() != "https://gitlab.com/acme/shop" || e.Subject() != "12" || e.ID() != "u1" {
		t.Errorf("mapped: %v", e)
	}
}

func TestStripe(t *testing.T) {
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "stripe", Tolerance: 300 * time.Second, DedupWindow: time.Minute}, "whsec_stripe_0123456789")
	body := `{"id":"evt_1","type":"payment_intent.succeeded","created":1799999990,"data":{"object":{"id":"pi_9"}}}`
	sigAt := func(ts int64, secret string, b string) string {
		return fmt.Sprintf("t=%d,v1=%s,v1=%s", ts, "00ff", hex.EncodeToString(mac(sha256.New, secret, fmt.Sprintf("%d.%s", ts, b))))
	}
	for _, c := range []struct {
		name, sig, body string
		want            int
		msg             string
	}{
		{"missing", "", body, 401, "missing Stripe-Signature"},
		{"no v1", "t=1", body, 401, "needs t= and at least one v1="},
		{"stale", sigAt(now.Unix()-301, "whsec_stripe_0123456789", body), body, 401, "outside the 5m0s tolerance"},
		{"future", sigAt(now.Unix()+301, "whsec_stripe_0123456789", body), body, 401, "tolerance"},
		{"wrong secret", sigAt(now.Unix(), "other", body), body, 401, "no v1 signature"},
		{"tampered", sigAt(now.Unix(), "whsec_stripe_0123456789", body), body + "x", 401, "no v1 signature"},
		{"valid, second v1", sigAt(now.Unix()-100, "whsec_stripe_0123456789", body), body, 202, "accepted"},
		{"duplicate", sigAt(now.Unix(), "whsec_stripe_0123456789", body), body, 200, "already accepted"},
	} {
		rec := post(h, map[string]string{"Stripe-Signature": c.sig}, c.body)
		if rec.Code != c.want || !strings.Contains(rec.Body.String(), c.msg) {
			t.Errorf("%s: %d %q, want %d with %q", c.name, rec.Code, rec.Body.String(), c.want, c.msg)
		}
	}
	if pub.count() != 1 {
		t.Fatalf("routed %d", pub.count())
	}
	e := pub.envs[0].Event
	if e.Type() != "com.stripe.payment_intent.succeeded" || e.ID() != "evt_1" || e.Subject() != "pi_9" || e.Time().Unix() != 1799999990 {
		t.Errorf("mapped: %v", e)
	}
}

func TestSlack(t *testing.T) {
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "slack", DedupWindow: time.Minute}, "slack-signing-0123456789")
	ts := fmt.Sprint(now.Unix())
	sign := func(ts, body string) string {
		return "v0=" + hex.EncodeToString(mac(sha256.New, "slack-signing-0123456789", "v0:"+ts+":"+body))
	}
	challenge := `{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}`
	rec := post(h, map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(ts, challenge)}, challenge)
	if rec.Code != 200 || rec.Body.String() != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Errorf("url_verification: %d %q", rec.Code, rec.Body.String())
	}
	ev := `{"type":"event_callback","team_id":"T1","event_id":"Ev1","event_time":1799999999,"event":{"type":"message","channel":"C9"}}`
	old := fmt.Sprint(now.Unix() - 400)
	for _, c := range []struct {
		h    map[string]string
		want int
	}{
		{map[string]string{"X-Slack-Signature": sign(ts, ev)}, 401},
		{map[string]string{"X-Slack-Request-Timestamp": old, "X-Slack-Signature": sign(old, ev)}, 401},
		{map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(ts, ev+" ")}, 401},
		{map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(ts, ev)}, 202},
		{map[string]string{"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sign(ts, ev)}, 200},
	} {
		if rec := post(h, c.h, ev); rec.Code != c.want {
			t.Errorf("%v: %d %s, want %d", c.h, rec.Code, rec.Body.String(), c.want)
		}
	}
	if pub.count() != 1 {
		t.Fatalf("routed %d", pub.count())
	}
	if e := pub.envs[0].Event; e.Type() != "com.slack.events.message" || e.Source() != "https://slack.com/T1" || e.Subject() != "C9" || e.ID() != "Ev1" {
		t.Errorf("mapped: %v", e)
	}
}

func TestStandardWebhooks(t *testing.T) {
	// The test vector published with the Standard Webhooks specification.
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "standardwebhooks", Tolerance: 5 * time.Minute, DedupWindow: time.Minute}, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	h.o.Now = func() time.Time { return time.Unix(1614265330, 0) }
	body := `{"test": 2432232314}`
	hdr := map[string]string{"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
		"webhook-signature": "v1,bm9ldHUjKzFob2VudXRob2VodWUzMjRvdWVvdW9ldQo= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
	if rec := post(h, hdr, body); rec.Code != 202 {
		t.Fatalf("published test vector: %d %s", rec.Code, rec.Body.String())
	}
	if e := pub.envs[0].Event; e.ID() != "msg_p5jXN8AQM9LWM0D4loKWxJek" || e.Source() != "/webhooks/ns/hook" || e.Type() != "dev.switchyard.webhook" {
		t.Errorf("mapped: %v", e)
	}
	if rec := post(h, hdr, body); rec.Code != 200 {
		t.Errorf("redelivery: %d", rec.Code)
	}
	hdr["webhook-signature"] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	hdr["webhook-id"] = "msg_other"
	if rec := post(h, hdr, body); rec.Code != 401 {
		t.Errorf("signature over another id: %d", rec.Code)
	}
	h.o.Now = func() time.Time { return time.Unix(1614265330+301, 0) }
	hdr["webhook-id"] = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	if rec := post(h, hdr, body); rec.Code != 401 || !strings.Contains(rec.Body.String(), "tolerance") {
		t.Errorf("stale: %d %s", rec.Code, rec.Body.String())
	}
	// A typed payload maps its type and timestamp.
	h.o.Now = func() time.Time { return now }
	typed := `{"type":"invoice.paid","timestamp":"2027-01-15T08:00:00Z","data":{}}`
	key, _ := base64.StdEncoding.DecodeString("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "msg_2.%d.%s", now.Unix(), typed)
	rec := post(h, map[string]string{"webhook-id": "msg_2", "webhook-timestamp": fmt.Sprint(now.Unix()), "webhook-signature": "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))}, typed)
	if rec.Code != 202 || pub.envs[1].Event.Type() != "invoice.paid" || pub.envs[1].Event.Time().Year() != 2027 {
		t.Errorf("typed payload: %d %v", rec.Code, pub.envs)
	}
}

func TestGeneric(t *testing.T) {
	rule := config.FieldRule{}
	hmacSrc := &config.WebhookSource{Provider: "generic", Generic: &config.GenericWebhook{Verification: "hmac", HMACHeader: "X-Sig", HMACAlgorithm: "sha1", HMACEncoding: "base64", HMACPrefix: "sha1=",
		Type: config.FieldRule{JSON: "kind"}, Source: config.FieldRule{Value: "https://crm.example"}, Subject: config.FieldRule{Header: "X-Customer"}, ID: config.FieldRule{JSON: "event.id"}}, DedupWindow: time.Minute}
	h, pub, _ := fixture(t, hmacSrc, "generic-secret-0123456789")
	body := `{"kind":"customer.updated","event":{"id":"ev-5"}}`
	sig := "sha1=" + base64.StdEncoding.EncodeToString(mac(sha1.New, "generic-secret-0123456789", body))
	if rec := post(h, map[string]string{"X-Sig": sig, "X-Customer": "c-1"}, body); rec.Code != 202 {
		t.Fatalf("hmac: %d %s", rec.Code, rec.Body.String())
	}
	if e := pub.envs[0].Event; e.Type() != "customer.updated" || e.Source() != "https://crm.example" || e.Subject() != "c-1" || e.ID() != "ev-5" {
		t.Errorf("mapped: %v", e)
	}
	if rec := post(h, map[string]string{"X-Sig": "sha1=AAAA"}, body); rec.Code != 401 {
		t.Errorf("bad hmac: %d", rec.Code)
	}
	if rec := post(h, map[string]string{"X-Sig": sig}, body); rec.Code != 200 {
		t.Errorf("duplicate by mapped id: %d", rec.Code)
	}

	bearer, pub2, _ := fixture(t, &config.WebhookSource{Provider: "generic", Generic: &config.GenericWebhook{Verification: "bearer", BearerHeader: "Authorization", Type: rule}}, "tkn-0123456789abcdef")
	if rec := post(bearer, map[string]string{"Authorization": "Bearer nope"}, "plain text"); rec.Code != 401 {
		t.Errorf("bad bearer: %d", rec.Code)
	}
	if rec := post(bearer, map[string]string{"Authorization": "Bearer tkn-0123456789abcdef", "Content-Type": "text/plain"}, "plain text"); rec.Code != 202 {
		t.Fatalf("bearer: %d %s", rec.Code, rec.Body.String())
	}
	if e := pub2.envs[0].Event; e.Type() != "dev.switchyard.webhook" || e.DataContentType() != "text/plain" || string(e.Data()) != "plain text" {
		t.Errorf("defaults: %v", e)
	}

	open, pub3, _ := fixture(t, &config.WebhookSource{Provider: "generic", Generic: &config.GenericWebhook{Verification: "none"}})
	if rec := post(open, nil, `{}`); rec.Code != 202 || pub3.count() != 1 {
		t.Errorf("none: %d", rec.Code)
	}
}

func TestSecretRotationOnDisk(t *testing.T) {
	h, pub, dir := fixture(t, &config.WebhookSource{Provider: "gitlab"}, "first-0123456789abcdef")
	send := func(tok string) int {
		return post(h, map[string]string{"X-Gitlab-Token": tok, "X-Gitlab-Event": "Push Hook"}, `{"object_kind":"push"}`).Code
	}
	if send("first-0123456789abcdef") != 202 {
		t.Fatal("first secret refused")
	}
	if err := os.WriteFile(filepath.Join(dir, "wh0", "secret"), []byte("second-0123456789abcdef"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Unix(now.Unix()+2, 0) // the file is checked again after a second
	_ = os.Chtimes(filepath.Join(dir, "wh0", "secret"), future, future)
	h.o.Now = func() time.Time { return future }
	if send("second-0123456789abcdef") != 202 || send("first-0123456789abcdef") != 401 {
		t.Error("a rewritten secret file did not take effect")
	}
	if pub.count() != 2 {
		t.Errorf("routed %d", pub.count())
	}
}

func TestAnswersFromTheSink(t *testing.T) {
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "gitlab"}, "t-0123456789abcdef")
	hdr := map[string]string{"X-Gitlab-Token": "t-0123456789abcdef", "X-Gitlab-Event": "Push Hook"}
	pub.err = router.ErrQueueFull
	if rec := post(h, hdr, `{}`); rec.Code != 429 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("full broker: %d", rec.Code)
	}
	pub.err = router.ErrUnavailable
	if rec := post(h, hdr, `{}`); rec.Code != 503 {
		t.Errorf("unavailable broker: %d", rec.Code)
	}
	pub.err = nil
	big := `{"x":"` + strings.Repeat("a", 1<<16) + `"}`
	if rec := post(h, hdr, big); rec.Code != 413 {
		t.Errorf("too large: %d", rec.Code)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks/ns/unknown", strings.NewReader("{}"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 404 {
		t.Errorf("unknown source: %d", rec.Code)
	}
	// A URI sink: its answer decides ours.
	var got int
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got++
		if r.Header.Get("Ce-Type") == "" {
			w.WriteHeader(400)
		}
	}))
	defer sink.Close()
	uh, _, _ := fixture(t, &config.WebhookSource{Provider: "gitlab", Sink: config.Sink{URI: sink.URL}}, "t-0123456789abcdef")
	if rec := post(uh, hdr, `{"object_kind":"push"}`); rec.Code != 202 || got != 1 {
		t.Errorf("uri sink: %d, sink got %d", rec.Code, got)
	}
}

func TestOwns(t *testing.T) {
	for path, want := range map[string]bool{"/webhooks/ns/name": true, "/webhooks/ns/name/": true, "/webhooks/ns": false, "/webhooks/a/b/c": false, "/ns/b": false} {
		if Owns(path) != want {
			t.Errorf("Owns(%q) = %v", path, !want)
		}
	}
}

func FuzzProviders(f *testing.F) {
	f.Add("github", "sha256=00", "t=1,v1=00", "v1,AAAA", `{"a":1}`)
	f.Add("stripe", "", "t=1800000000,v1=zz", "", `{"id":"x","type":"y"}`)
	f.Add("standardwebhooks", "", "", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v2,x", `{"test": 2432232314}`)
	f.Add("slack", "v0=00", "", "", `{"type":"url_verification","challenge":"c"}`)
	f.Fuzz(func(t *testing.T, provider, sig, stripeSig, swSig, body string) {
		p, ok := providers[provider]
		if !ok {
			return
		}
		h := http.Header{}
		h.Set("X-Hub-Signature-256", sig)
		h.Set("X-GitHub-Event", "push")
		h.Set("X-GitHub-Delivery", "d")
		h.Set("Stripe-Signature", stripeSig)
		h.Set("webhook-id", "i")
		h.Set("webhook-timestamp", "1800000000")
		h.Set("webhook-signature", swSig)
		h.Set("X-Slack-Signature", sig)
		h.Set("X-Slack-Request-Timestamp", "1800000000")
		res := p(&request{h: h, body: []byte(body), now: now, secrets: [][]byte{[]byte("whsec_c2VjcmV0")},
			src: &config.WebhookSource{Namespace: "n", Name: "x", Tolerance: time.Minute, Generic: &config.GenericWebhook{Verification: "none"}}})
		if res.event == nil && res.status == 0 {
			t.Fatal("no event and no answer")
		}
		if res.event != nil && res.event.Validate() != nil && res.event.ID() != "" {
			t.Fatalf("invalid event %v", res.event)
		}
	})
}

// TestHostileWebhooks (issue #16, item 11): a captured GitHub delivery replayed under a new
// X-GitHub-Delivery, re-typed through the unsigned X-GitHub-Event, used to be routed again; and a
// whsec_ secret with an empty key accepted signatures anyone can compute.
func TestHostileWebhooks(t *testing.T) {
	secret := "gh-secret-0123456789"
	h, pub, _ := fixture(t, &config.WebhookSource{Provider: "github", DedupWindow: time.Minute}, secret)
	body := `{"ref":"refs/heads/main","after":"0f1e2d","repository":{"full_name":"acme/shop"}}`
	sig := "sha256=" + hex.EncodeToString(mac(sha256.New, secret, body))
	if rec := post(h, map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"}, body); rec.Code != 202 {
		t.Fatalf("original: %d %s", rec.Code, rec.Body.String())
	}
	rec := post(h, map[string]string{"X-Hub-Signature-256": sig, "X-GitHub-Event": "release", "X-GitHub-Delivery": "d-2-replayed"}, body)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "same signed body") || pub.count() != 1 {
		t.Errorf("replay under a new delivery id, re-typed: %d %q, routed %d (want 200, not routed)", rec.Code, rec.Body.String(), pub.count())
	}

	// Standard Webhooks with "whsec_" (an empty key): anyone can sign with the empty key.
	empty, pub2, _ := fixture(t, &config.WebhookSource{Provider: "standardwebhooks", Tolerance: 5 * time.Minute}, "whsec_")
	now := time.Now()
	empty.o.Now = func() time.Time { return now }
	ts := strconv.FormatInt(now.Unix(), 10)
	forged := base64.StdEncoding.EncodeToString(mac(sha256.New, "", "msg_1."+ts+"."+`{}`))
	rec = post(empty, map[string]string{"webhook-id": "msg_1", "webhook-timestamp": ts, "webhook-signature": "v1," + forged}, `{}`)
	if rec.Code < 400 || pub2.count() != 0 {
		t.Errorf("a signature made with the empty key: %d, routed %d", rec.Code, pub2.count())
	}
	short, pub3, _ := fixture(t, &config.WebhookSource{Provider: "gitlab"}, "short")
	if rec := post(short, map[string]string{"X-Gitlab-Token": "short", "X-Gitlab-Event": "Push Hook"}, `{}`); rec.Code != 503 || pub3.count() != 0 {
		t.Errorf("a 5-byte token: %d, routed %d (want 503: no usable secret)", rec.Code, pub3.count())
	}
}
