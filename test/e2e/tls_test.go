package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// tlsSubscriber is an HTTPS subscriber with a certificate of ca; clientCA, when set, is required
// of its clients.
func tlsSubscriber(t *testing.T, ca, clientCA *testenv.Authority) (*httptest.Server, chan string) {
	t.Helper()
	got := make(chan string, 16)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "anonymous"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			who = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		got <- r.Header.Get("Ce-Id") + " from " + who
	}))
	certFile, keyFile := ca.Issue(t, t.TempDir(), "subscriber", 7)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(clientCA.PEM)
		srv.TLS.ClientCAs, srv.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, got
}

// TestTLS (issue #16, item 13): the ingress and admin listeners serve TLS from files (a renewed
// certificate is served without a restart) and can require client certificates; HTTPS
// subscribers are verified with Knative's CACerts and receive a trigger's client certificate.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	serverCA, producerCA, subscriberCA, routerClientCA := testenv.NewAuthority(t, "server-ca"), testenv.NewAuthority(t, "producer-ca"),
		testenv.NewAuthority(t, "subscriber-ca"), testenv.NewAuthority(t, "router-client-ca")
	certFile, keyFile := serverCA.Issue(t, dir, "router", 100)
	producerCAFile := producerCA.WriteCA(t, dir, "producers.pem")
	// The trigger's client certificate, as a kubernetes.io/tls Secret in the secrets directory.
	secrets := filepath.Join(dir, "secrets")
	if err := os.MkdirAll(filepath.Join(secrets, "fn-client"), 0o755); err != nil {
		t.Fatal(err)
	}
	cf, kf := routerClientCA.Issue(t, filepath.Join(secrets, "fn-client"), "switchyard-router", 5)
	if err := os.Rename(cf, filepath.Join(secrets, "fn-client", "tls.crt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(kf, filepath.Join(secrets, "fn-client", "tls.key")); err != nil {
		t.Fatal(err)
	}

	plain, plainGot := tlsSubscriber(t, subscriberCA, nil)
	mutual, mutualGot := tlsSubscriber(t, subscriberCA, routerClientCA)
	untrusted, _ := tlsSubscriber(t, subscriberCA, nil)
	ca := strconv.Quote(string(subscriberCA.PEM))
	manifests := brokerYAML("default") +
		triggerYAML("plain", fmt.Sprintf("  broker: default\n  filter: {attributes: {type: plain}}\n  subscriber:\n    uri: %s\n    CACerts: %s\n", plain.URL, ca)) +
		fmt.Sprintf("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: mutual\n  namespace: default\n  annotations: {switchyard.dev/tls-client-secret: fn-client}\nspec:\n  broker: default\n  filter: {attributes: {type: mutual}}\n  subscriber:\n    uri: %s\n    CACerts: %s\n---\n", mutual.URL, ca) +
		triggerYAML("untrusted", fmt.Sprintf("  broker: default\n  filter: {attributes: {type: untrusted}}\n  subscriber:\n    uri: %s\n  delivery: {retry: 0}\n", untrusted.URL))

	ingressAddr, adminAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: tls}
spec:
  ingress:
    addr: %s
    tls: {certFile: %s, keyFile: %s, clientCAFile: %s}
  admin:
    addr: %s
    tls: {certFile: %s, keyFile: %s}
---
`, ingressAddr, certFile, keyFile, producerCAFile, adminAddr, certFile, keyFile) + manifests
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "serve", "--config", filepath.Join(dir, "config.yaml"), "--secrets-dir", secrets)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("switchyard log:\n%s", log.String())
		}
	})

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(serverCA.PEM)
	pf, pk := producerCA.Issue(t, dir, "producer", 9)
	producerCert, _ := tls.LoadX509KeyPair(pf, pk)
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	producer, anonymous := client(producerCert), client()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := anonymous.Get("https://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin over TLS not ready: %v\n%s", err, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	send := func(c *http.Client, id, typ string) (int, *http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+ingressAddr+"/default/default", strings.NewReader("{}"))
		for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": id, "Ce-Source": "/tls", "Ce-Type": typ, "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp, nil
	}
	if _, _, err := send(anonymous, "no-cert", "plain"); err == nil {
		t.Error("a producer without a client certificate got through a listener that requires one")
	}
	code, resp, err := send(producer, "p-1", "plain")
	if err != nil || code != 202 {
		t.Fatalf("producer with a certificate: %d %v", code, err)
	}
	if serial := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); serial != 100 {
		t.Errorf("served certificate serial %d, want 100", serial)
	}
	wait := func(ch chan string, want string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Errorf("subscriber got %q, want %q", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber never got %q", want)
		}
	}
	wait(plainGot, "p-1 from anonymous")
	if code, _, err := send(producer, "m-1", "mutual"); err != nil || code != 202 {
		t.Fatalf("mutual: %d %v", code, err)
	}
	wait(mutualGot, "m-1 from switchyard-router")

	// Without CACerts the subscriber's certificate does not verify: a failed delivery.
	if code, _, err := send(producer, "u-1", "untrusted"); err != nil || code != 202 {
		t.Fatalf("untrusted: %d %v", code, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, err := anonymous.Get("https://" + adminAddr + "/v1/events/u-1")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), `"failed"`) {
				if !strings.Contains(string(b), "certificate") {
					t.Errorf("the failure does not say why: %s", b)
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no failed outcome for the untrusted subscriber")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The certificate is renewed on disk: new connections get it, no restart.
	serverCA.Issue(t, dir, "router", 200)
	time.Sleep(1100 * time.Millisecond)
	fresh := client(producerCert)
	code, resp, err = send(fresh, "p-2", "plain")
	if err != nil || code != 202 || resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 200 {
		t.Fatalf("after renewal: %d %v (serial %v)", code, err, resp)
	}
	wait(plainGot, "p-2 from anonymous")
}
