package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWebhooksThroughTheBinary: a Knative GitHubSource manifest and a WebhookSource for Stripe,
// with secrets from a Kubernetes-style secrets dir, route verified webhooks through a broker to a
// trigger's subscriber; bad signatures are refused and redeliveries routed once.
func TestWebhooksThroughTheBinary(t *testing.T) {
	secrets := t.TempDir()
	for name, value := range map[string]string{"github-secret/secretToken": "gh-s3cret-0123456789", "github-secret/accessToken": "unused", "stripe/whsec": "whsec_e2e_0123456789"} {
		p := filepath.Join(secrets, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sub := newSubscriber(t, nil)
	manifests := brokerYAML("default") + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n") + `apiVersion: sources.knative.dev/v1alpha1
kind: GitHubSource
metadata:
  name: github
  namespace: default
spec:
  eventTypes: [push, pull_request]
  ownerAndRepository: acme/shop
  accessToken:
    secretKeyRef: {name: github-secret, key: accessToken}
  secretToken:
    secretKeyRef: {name: github-secret, key: secretToken}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
---
apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata:
  name: payments
  namespace: default
spec:
  provider: stripe
  secrets:
    - secretKeyRef: {name: stripe, key: whsec}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`
	r := startRouterIn(t, t.TempDir(), manifests, "", "", "--secrets-dir", secrets)
	hook := func(path string, headers map[string]string, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, r.Ingress+path, strings.NewReader(body))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := make([]byte, 512)
		n, _ := resp.Body.Read(b)
		return resp.StatusCode, string(b[:n])
	}
	sign := func(key, msg string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(msg))
		return hex.EncodeToString(m.Sum(nil))
	}
	push := `{"ref":"refs/heads/main","compare":"https://github.com/acme/shop/compare/a1...b2","repository":{"full_name":"acme/shop"}}`
	gh := map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": "gh-1", "Content-Type": "application/json", "X-Hub-Signature-256": "sha256=" + sign("gh-s3cret-0123456789", push)}
	if code, body := hook("/webhooks/default/github", gh, push); code != 202 {
		t.Fatalf("github push: %d %s", code, body)
	}
	if code, _ := hook("/webhooks/default/github", gh, push); code != 200 {
		t.Errorf("github redelivery: %d, want 200 without routing", code)
	}
	gh["X-Hub-Signature-256"] = "sha256=" + sign("wrong", push)
	gh["X-GitHub-Delivery"] = "gh-2"
	if code, body := hook("/webhooks/default/github", gh, push); code != 401 || strings.Contains(body, "gh-s3cret-0123456789") {
		t.Errorf("bad signature: %d %s", code, body)
	}
	charge := `{"id":"evt_e2e","type":"charge.succeeded","created":1,"data":{"object":{"id":"ch_1"}}}`
	ts := time.Now().Unix()
	st := map[string]string{"Stripe-Signature": fmt.Sprintf("t=%d,v1=%s", ts, sign("whsec_e2e_0123456789", fmt.Sprintf("%d.%s", ts, charge)))}
	if code, body := hook("/webhooks/default/payments", st, charge); code != 202 {
		t.Fatalf("stripe: %d %s", code, body)
	}
	if code, _ := hook("/webhooks/default/nope", st, charge); code != 404 {
		t.Errorf("unknown source: %d", code)
	}
	got := sub.waitFor(t, 2, 10*time.Second)
	sub.quiet(t, 2, 300*time.Millisecond)
	types := map[string]string{}
	for _, g := range got {
		types[g.Event.Type()] = g.Event.Source() + " " + g.Event.Subject() + " " + g.Event.ID()
	}
	if types["dev.knative.source.github.push"] != "https://github.com/acme/shop a1...b2 gh-1" {
		t.Errorf("github event: %v", types)
	}
	if types["com.stripe.charge.succeeded"] != "https://api.stripe.com ch_1 evt_e2e" {
		t.Errorf("stripe event: %v", types)
	}
	_, metrics := r.get(t, "/metrics")
	for _, want := range []string{
		`switchyard_webhook_deduplicated_total{namespace_name="default",source_name="github"} 1`,
		`switchyard_webhook_rejected_total{namespace_name="default",reason="bad_signature",source_name="github"} 1`,
		`switchyard_webhook_received_total{namespace_name="default",source_name="github"} 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
