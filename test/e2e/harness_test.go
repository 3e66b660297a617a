// Package e2e tests the built switchyard binary from the outside: it starts `switchyard serve` on
// 127.0.0.1 with a Knative-manifest configuration and talks to it over HTTP only, with real HTTP
// subscribers. SWITCHYARD_BIN names the binary (make test sets it); otherwise TestMain builds one.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router/cehttp"

	"github.com/cloudevents/sdk-go/v2/event"
)

var binary string

func TestMain(m *testing.M) {
	binary = os.Getenv("SWITCHYARD_BIN")
	if binary == "" {
		dir, err := os.MkdirTemp("", "switchyard-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		binary = filepath.Join(dir, "switchyard")
		build := exec.Command("go", "build", "-o", binary, "github.com/switchyard-events/switchyard/cmd/switchyard")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building switchyard:", err)
			os.Exit(1)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// router is one running switchyard process.
type router struct {
	t         *testing.T
	cmd       *exec.Cmd
	dir       string
	Ingress   string // http://127.0.0.1:port
	Admin     string
	log       *syncBuffer
	exited    chan struct{}
	exitError error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a 127.0.0.1 address nothing listens on. It is taken below Linux's ephemeral
// range (32768-60999), because a port the kernel handed out and we closed again can be taken
// back at once as the local port of any outgoing connection (the suite opens thousands to Kafka
// and Cassandra), and the router then fails to bind it: CI saw "address already in use" so.
func freePort(t *testing.T) string {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	t.Fatal("no free port between 20000 and 32000 after 200 tries")
	return ""
}

// settings is a SwitchyardConfig document prepended to every test configuration; %s are the
// listen addresses. extra is inserted under spec.
const settingsDoc = `apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata:
  name: test
spec:
  ingress:
    addr: %s
%s  admin:
    addr: %s
%s  reloadInterval: 100ms
  log:
    level: debug
---
`

// startRouter writes the configuration (manifests, plus ingress settings lines indented by four
// spaces) and runs switchyard serve on it until the test ends.
func startRouter(t *testing.T, manifests string, ingressSettings string, args ...string) *router {
	t.Helper()
	return startRouterIn(t, t.TempDir(), manifests, ingressSettings, "", args...)
}

// startRouterIn is startRouter with the configuration in dir and more settings lines under spec
// (indented by two spaces).
func startRouterIn(t *testing.T, dir, manifests, ingressSettings, specSettings string, args ...string) *router {
	t.Helper()
	ingressAddr, adminAddr := freePort(t), freePort(t)
	cfg := fmt.Sprintf(settingsDoc, ingressAddr, ingressSettings, adminAddr, specSettings) + manifests
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &router{t: t, dir: dir, Ingress: "http://" + ingressAddr, Admin: "http://" + adminAddr, log: &syncBuffer{}, exited: make(chan struct{})}
	r.cmd = exec.Command(binary, append([]string{"serve", "--config", dir}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.exitError = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			t.Logf("switchyard log:\n%s", r.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(r.Admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		select {
		case <-r.exited:
			t.Fatalf("switchyard exited during start-up: %v\n%s", r.exitError, r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("switchyard not ready after 15s:\n%s", r.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeConfig replaces the configuration's manifests (for reload tests) by an atomic rename.
func (r *router) writeConfig(content string) {
	r.t.Helper()
	tmp := filepath.Join(r.dir, ".config.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(r.dir, "config.yaml")); err != nil {
		r.t.Fatal(err)
	}
}

func (r *router) signal(sig syscall.Signal) {
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatal(err)
	}
}

func (r *router) wait(timeout time.Duration) error {
	select {
	case <-r.exited:
		return r.exitError
	case <-time.After(timeout):
		r.t.Fatalf("switchyard still running after %s", timeout)
		return nil
	}
}

// received is one request a subscriber got.
type received struct {
	Path   string
	Header http.Header
	Body   []byte
	Event  *event.Event // nil when the body was not a CloudEvent
	At     time.Time
}

// subscriber is an httptest server that records requests and answers with respond (200 and no body
// when nil).
type subscriber struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	notify  chan struct{}
	respond func(n int, req received, w http.ResponseWriter) // n counts from 1
}

func newSubscriber(t *testing.T, respond func(n int, req received, w http.ResponseWriter)) *subscriber {
	s := &subscriber{notify: make(chan struct{}, 1), respond: respond}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{Header: r.Header.Clone(), Body: body, At: time.Now(), Path: r.URL.Path}
		if events, err := cehttp.Decode(r.Header.Clone(), body); err == nil && len(events) == 1 {
			rec.Event = events[0]
		}
		s.mu.Lock()
		s.got = append(s.got, rec)
		n := len(s.got)
		s.mu.Unlock()
		// One pending wake-up is enough (waitFor counts the requests itself); a send that waited for
		// a reader would stall every delivery once no one is waiting.
		select {
		case s.notify <- struct{}{}:
		default:
		}
		if s.respond != nil {
			s.respond(n, rec, w)
		} else {
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *subscriber) requests() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.got...)
}

// count is how many requests the subscriber has seen, without copying them.
func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.got)
}

// waitFor waits until the subscriber has seen at least n requests.
func (s *subscriber) waitFor(t *testing.T, n int, timeout time.Duration) []received {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if s.count() >= n {
			return s.requests()
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("subscriber %s got %d requests, want %d", s.URL, len(s.requests()), n)
		}
	}
}

// quiet asserts that the subscriber gets no more than n requests within d.
func (s *subscriber) quiet(t *testing.T, n int, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	if got := len(s.requests()); got != n {
		t.Fatalf("subscriber %s got %d requests, want exactly %d", s.URL, got, n)
	}
}

// ce builds a binary-mode request to the broker; mutate adjusts headers or body.
type ceRequest struct {
	Method  string
	Headers map[string]string
	Body    string
}

func binaryEvent(id, typ string) ceRequest {
	return ceRequest{Method: http.MethodPost, Headers: map[string]string{
		"Ce-Specversion": "1.0", "Ce-Id": id, "Ce-Source": "/e2e", "Ce-Type": typ, "Content-Type": "application/json",
	}, Body: `{"hello":"world"}`}
}

func (r *router) send(t *testing.T, path string, req ceRequest) (int, http.Header, string) {
	t.Helper()
	code, h, body, err := r.trySend(path, req)
	if err != nil {
		t.Fatalf("sending to %s: %v", path, err)
	}
	return code, h, body
}

// trySend is send for goroutines other than the test's, which must not call t.Fatal.
func (r *router) trySend(path string, req ceRequest) (int, http.Header, string, error) {
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	hreq, err := http.NewRequestWithContext(context.Background(), method, r.Ingress+path, strings.NewReader(req.Body))
	if err != nil {
		return 0, nil, "", err
	}
	for k, v := range req.Headers {
		hreq.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), nil
}

func (r *router) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(r.Admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// broker returns a Broker manifest and trigger returns a Trigger manifest with the given spec body.
func brokerYAML(name string) string {
	return fmt.Sprintf("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: %s\n  namespace: default\n---\n", name)
}

func triggerYAML(name, spec string) string {
	return fmt.Sprintf("apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: %s\n  namespace: default\nspec:\n%s---\n", name, spec)
}

// shopWebhookYAML is the generic WebhookSource default/shop, unverified, feeding the default
// broker: the event's type from the JSON body's "kind", its id from X-Delivery-Id.
const shopWebhookYAML = `apiVersion: switchyard.dev/v1alpha1
kind: WebhookSource
metadata: {name: shop, namespace: default}
spec:
  provider: generic
  generic:
    verification: none
    type: {json: kind}
    id: {header: X-Delivery-Id}
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
---
`

// webhookSourceYAML is a WebhookSource of the given provider, verified with the secret in
// secretFile, feeding the default broker.
func webhookSourceYAML(name, provider, secretFile string) string {
	return fmt.Sprintf("apiVersion: switchyard.dev/v1alpha1\nkind: WebhookSource\nmetadata: {name: %s, namespace: default}\nspec:\n  provider: %s\n  secrets: [{file: %s}]\n  sink:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}\n---\n", name, provider, secretFile)
}

func (r *router) post(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Post(r.Admin+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// soakScale multiplies the size and time limits of the load tests that `make soak` runs for
// longer (SWITCHYARD_SOAK_SCALE, 1 in `make test`): a leak or a lost event that needs many
// events, or many minutes, to show has them there.
func soakScale(t *testing.T) int {
	t.Helper()
	v := os.Getenv("SWITCHYARD_SOAK_SCALE")
	if v == "" {
		return 1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("SWITCHYARD_SOAK_SCALE=%q: want a whole number from 1", v)
	}
	return n
}
