package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/replay"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// redriveLog is a Routes whose redrives are recorded: the console's buttons are checked by what
// reaches the router.
type redriveLog struct {
	fixedTriggers
	mu    sync.Mutex
	calls []string
}

func (l *redriveLog) Redrive(_ context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, ref.String()+" event="+q.EventID+" status="+string(q.Status))
	return 1, nil
}

func failedOutcome(id, trigger string, finished time.Time) *router.Outcome {
	e := event.New()
	e.SetID(id)
	e.SetSource("/shop")
	e.SetType("order.created")
	_ = e.SetData("application/json", map[string]int{"total": 7})
	return &router.Outcome{EventID: id, Source: "/shop", Type: "order.created", Trigger: router.TriggerRef{Namespace: "ns", Name: trigger},
		Broker: router.BrokerRef{Namespace: "ns", Name: "default"}, Status: router.StatusFailed, Attempts: 3, LastCode: 503,
		Received: finished.Add(-time.Millisecond), Finished: finished, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Event: &e}
}

type consoleClient struct {
	t      *testing.T
	url    string
	cookie *http.Cookie
}

func (c *consoleClient) do(method, path string, form url.Values, header map[string]string) (*http.Response, string) {
	c.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, c.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestConsolePages(t *testing.T) {
	store := memstore.New(100)
	now := time.Now()
	store.Record(failedOutcome("order-1", "orders", now.Add(-2*time.Second)))
	store.Record(failedOutcome("order-2", "orders", now.Add(-time.Second)))
	routes := &redriveLog{fixedTriggers: fixedTriggers{{Namespace: "ns", Name: "orders", Broker: "default", Delivered: 5, Failed: 2, NotDelivered: 2, Circuit: "open", CircuitOpened: 3},
		{Namespace: "ns", Name: "audit", Broker: "default", Paused: true, PausedBy: "operator", LagRecords: 1234, LagSeconds: 42.4}}}
	s := New(store, routes, metrics.New())
	s.SetTraceURL("http://jaeger.example/trace/{traceId}")
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL}

	resp, body := c.do("GET", "/ui/", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `data-field="delivered">5<`) || !strings.Contains(body, "2 waiting for redrive") {
		t.Errorf("triggers page: %d\n%s", resp.StatusCode, body)
	}
	if !strings.Contains(body, `title="circuit breaker (switchyard.dev/circuit-breaker); opened 3 times">circuit open</span>`) || strings.Count(body, "circuit breaker (") != 1 {
		t.Errorf("triggers page: the open circuit breaker is not shown (only for the trigger that has one)")
	}
	if !strings.Contains(body, `<td class="n" data-field="lag">1234 (42 s)</td>`) {
		t.Errorf("triggers page: no lag of the paused trigger")
	}
	if !strings.Contains(body, `<span class="paused">paused (by operator)</span>`) || !strings.Contains(body, `action="/ui/triggers/ns/audit/resume"`) || !strings.Contains(body, `action="/ui/triggers/ns/orders/pause"`) {
		t.Errorf("triggers page: the paused state or the Pause and Resume buttons are missing:\n%s", body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
	resp, body = c.do("GET", "/ui/events?status=failed&trigger=ns%2Forders&type=", nil, nil)
	if resp.StatusCode != 200 || strings.Count(body, `<span class="status failed">`) != 2 || !strings.Contains(body, `href="/ui/events/order-2"`) {
		t.Errorf("events page: %d\n%s", resp.StatusCode, body)
	}
	if resp, body = c.do("GET", "/ui/events?since=yesterday", nil, nil); resp.StatusCode != 400 || !strings.Contains(body, "since &#34;yesterday&#34;: want an RFC 3339 time") {
		t.Errorf("bad filter: %d\n%s", resp.StatusCode, body)
	}
	_, body = c.do("GET", "/ui/events/order-1", nil, nil)
	for _, want := range []string{`<span class="status failed">failed</span>`, `<td class="n">503</td>`, `href="http://jaeger.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"`,
		`{&#34;total&#34;:7}`, `class="redrive-one"`, `<th>type</th><td>order.created</td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("event page lacks %s:\n%s", want, body)
		}
	}
	if resp, _ = c.do("GET", "/ui/events/nope", nil, nil); resp.StatusCode != 404 {
		t.Errorf("unknown event: %d", resp.StatusCode)
	}

	// One event's redrive goes to the router and comes back to the event page.
	resp, _ = c.do("POST", "/ui/events/order-1/redrive", url.Values{"trigger": {"ns/orders"}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/events/order-1?redriven=1") {
		t.Errorf("redrive one: %d %s", resp.StatusCode, loc)
	}
	// Redrive by filter: the first post counts and asks, and sends nothing.
	routes.calls = nil
	resp, body = c.do("POST", "/ui/redrive", url.Values{"trigger": {"ns/orders"}, "status": {"failed"}, "type": {""}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="confirm-redrive">Redrive 2 events<`) || len(routes.calls) != 0 {
		t.Errorf("redrive confirmation: %d, calls %v\n%s", resp.StatusCode, routes.calls, body)
	}
	resp, body = c.do("POST", "/ui/redrive", url.Values{"trigger": {"ns/orders"}, "status": {"failed"}, "confirm": {"2"}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `id="redrive-done">1 event sent again`) || len(routes.calls) != 1 || routes.calls[0] != "ns/orders event= status=failed" {
		t.Errorf("redrive confirmed: %d, calls %v\n%s", resp.StatusCode, routes.calls, body)
	}
	if resp, body = c.do("POST", "/ui/redrive", url.Values{"status": {"delivered"}}, nil); resp.StatusCode != 400 || !strings.Contains(body, "only failed") {
		t.Errorf("redrive of delivered events: %d\n%s", resp.StatusCode, body)
	}

	// The explain playground judges a pasted event, and starts from a stored one.
	_, body = c.do("GET", "/ui/explain?event=order-1&broker=ns%2Fdefault", nil, nil)
	if !strings.Contains(body, `&#34;id&#34;:&#34;order-1&#34;`) {
		t.Errorf("explain of a stored event does not start from it:\n%s", body)
	}
	resp, body = c.do("POST", "/ui/explain", url.Values{"broker": {"ns/default"}, "event": {`{"specversion":"1.0","id":"x","source":"/s","type":"b"}`}}, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "0 of 1 triggers match") || !strings.Contains(body, "exact: type is &#34;b&#34;, not &#34;a&#34;") {
		t.Errorf("explain: %d\n%s", resp.StatusCode, body)
	}
	if resp, body = c.do("POST", "/ui/explain", url.Values{"broker": {"ns/default"}, "event": {`{"id":`}}, nil); resp.StatusCode != 400 || !strings.Contains(body, "one CloudEvent in JSON") {
		t.Errorf("explain of a broken event: %d\n%s", resp.StatusCode, body)
	}

	// Another site's form cannot make an operator's browser act.
	if resp, _ = c.do("POST", "/ui/redrive", url.Values{"confirm": {"1"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site redrive: %d", resp.StatusCode)
	}
}

func TestConsoleLoginAndRoles(t *testing.T) {
	store := memstore.New(100)
	store.Record(failedOutcome("order-1", "orders", time.Now()))
	routes := &redriveLog{fixedTriggers: fixedTriggers{{Namespace: "ns", Name: "orders", Broker: "default"}}}
	s := New(store, routes, metrics.New())
	s.SetAuth(&Auth{
		Readers:   &senderauth.Policy{Tokens: [][]byte{[]byte("reader-token")}},
		Operators: &senderauth.Policy{Tokens: [][]byte{[]byte("operator-token")}},
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL}

	resp, _ := c.do("GET", "/ui/events?status=failed", nil, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/ui/login?next=%2Fui%2Fevents%3Fstatus%3Dfailed" {
		t.Errorf("without credentials: %d %q, want the login page", resp.StatusCode, loc)
	}
	if resp, _ = c.do("GET", "/ui/static/console.css", nil, nil); resp.StatusCode != 200 {
		t.Errorf("style sheet before login: %d", resp.StatusCode)
	}
	if resp, body := c.do("POST", "/ui/login", url.Values{"token": {"guess"}, "next": {"/ui/"}}, nil); resp.StatusCode != 401 || !strings.Contains(body, "neither a reader") {
		t.Errorf("wrong token: %d", resp.StatusCode)
	}
	resp, _ = c.do("POST", "/ui/login", url.Values{"token": {"reader-token"}, "next": {"//evil.example/"}}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/ui/" {
		t.Errorf("login with an outside next: %d %q, want /ui/", resp.StatusCode, loc)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == sessionCookie {
			c.cookie = ck
			if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Errorf("session cookie %+v: want HttpOnly and SameSite=Strict", ck)
			}
		}
	}
	if c.cookie == nil {
		t.Fatal("no session cookie after login")
	}
	// A reader reads, the API too, but sees no redrive button and may not redrive.
	resp, body := c.do("GET", "/ui/events/order-1", nil, nil)
	if resp.StatusCode != 200 || strings.Contains(body, "redrive-one") || !strings.Contains(body, ">reader<") {
		t.Errorf("reader's event page: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ = c.do("GET", "/v1/events/order-1", nil, nil); resp.StatusCode != 200 {
		t.Errorf("reader's cookie on the API: %d", resp.StatusCode)
	}
	if resp, body = c.do("POST", "/ui/events/order-1/redrive", url.Values{"trigger": {"ns/orders"}}, nil); resp.StatusCode != 403 || !strings.Contains(body, "an operator&#39;s are needed") || len(routes.calls) != 0 {
		t.Errorf("reader's redrive: %d %v\n%s", resp.StatusCode, routes.calls, body)
	}
	if resp, _ = c.do("POST", "/ui/explain", url.Values{"broker": {"ns/default"}, "event": {`{"specversion":"1.0","id":"x","source":"/s","type":"a"}`}}, nil); resp.StatusCode != 200 {
		t.Errorf("reader's explain: %d", resp.StatusCode)
	}
	// An operator acts.
	c.cookie.Value = "operator-token"
	if resp, _ = c.do("POST", "/ui/events/order-1/redrive", url.Values{"trigger": {"ns/orders"}}, nil); resp.StatusCode != http.StatusSeeOther || len(routes.calls) != 1 {
		t.Errorf("operator's redrive: %d %v", resp.StatusCode, routes.calls)
	}
	resp, _ = c.do("POST", "/ui/logout", url.Values{}, nil)
	if cks := resp.Cookies(); resp.StatusCode != http.StatusSeeOther || len(cks) != 1 || cks[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v", resp.StatusCode, cks)
	}
}

// TestTailStreamsOutcomes: /v1/tail sends what is recorded after it opens, once each, filtered.
func TestTailStreamsOutcomes(t *testing.T) {
	store := memstore.New(100)
	store.Record(failedOutcome("before", "orders", time.Now().Add(-time.Minute)))
	s := New(store, fixedTriggers{}, metrics.New())
	srv := httptest.NewServer(s)
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/tail?status=failed")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	delivered := failedOutcome("ok-1", "orders", time.Now())
	delivered.Status = router.StatusDelivered
	store.Record(delivered)
	store.Record(failedOutcome("new-1", "orders", time.Now()))
	store.Record(failedOutcome("new-2", "orders", time.Now().Add(time.Millisecond)))
	lines := bufio.NewScanner(resp.Body)
	var got []string
	deadline := time.AfterFunc(10*time.Second, func() { resp.Body.Close() })
	defer deadline.Stop()
	for len(got) < 2 && lines.Scan() {
		if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
			var o OutcomeJSON
			if err := json.Unmarshal([]byte(data), &o); err != nil {
				t.Fatalf("%v: %s", err, data)
			}
			got = append(got, o.EventID)
		}
	}
	if strings.Join(got, ",") != "new-1,new-2" {
		t.Errorf("tail sent %v, want new-1,new-2 (oldest first, filtered, nothing from before it opened)", got)
	}
}

func TestRedriveByFilterAPI(t *testing.T) {
	store := memstore.New(100)
	now := time.Now()
	store.Record(failedOutcome("a", "orders", now))
	other := failedOutcome("b", "orders", now)
	other.Type = "order.cancelled"
	store.Record(other)
	routes := &redriveLog{fixedTriggers: fixedTriggers{{Namespace: "ns", Name: "orders", Broker: "default"}, {Namespace: "ns", Name: "audit", Broker: "default"}}}
	srv := httptest.NewServer(New(store, routes, metrics.New()))
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL}
	resp, body := c.do("POST", "/v1/redrive?type=order.created&dryRun=true", nil, nil)
	var rep RedriveReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil || resp.StatusCode != 200 || rep.Total != 1 || len(rep.Triggers) != 1 || rep.Triggers[0].Trigger != "ns/orders" || len(routes.calls) != 0 {
		t.Errorf("dry run: %d %s calls %v", resp.StatusCode, body, routes.calls)
	}
	if resp, body = c.do("POST", "/v1/redrive?broker=ns%2Fdefault", nil, nil); resp.StatusCode != 200 || len(routes.calls) != 2 {
		t.Errorf("redrive every trigger of a broker: %d %s calls %v", resp.StatusCode, body, routes.calls)
	}
	if resp, _ = c.do("POST", "/v1/triggers/ns/nope/redrive?dryRun=true", nil, nil); resp.StatusCode != 404 {
		t.Errorf("dry run of an unknown trigger: %d", resp.StatusCode)
	}
	if resp, body = c.do("POST", "/v1/triggers/ns/orders/redrive?dryRun=true&until="+url.QueryEscape(now.Add(-time.Hour).Format(time.RFC3339)), nil, nil); resp.StatusCode != 200 || !strings.Contains(body, `"redriven": 0`) || strings.Contains(body, "matching") {
		t.Errorf("dry run before anything failed: %d %s", resp.StatusCode, body)
	}
}

func TestConsoleNextStaysInTheConsole(t *testing.T) {
	for next, want := range map[string]string{
		"/ui/events?status=failed": "/ui/events?status=failed",
		"/ui/events/a%2Fb":         "/ui/events/a%2Fb",
		"//evil.example/":          "/ui/",
		"https://evil.example/ui/": "/ui/",
		"/ui/../%5Cevil.example":   "/ui/",
		"/ui/..\\evil.example":     "/ui/",
		"/ui/../../v1/redrive":     "/ui/",
		"/uiX":                     "/ui/",
		"":                         "/ui/",
		"/ui/#/../../v1/triggers":  "/ui/",
		"/ui/events#x":             "/ui/",
		"/ui/%2e%2e/v1/triggers":   "/ui/",
		"/ui/%2E%2E/v1/triggers":   "/ui/",
		"/ui/..%2fv1/triggers":     "/ui/",
		"/ui/./events":             "/ui/",
		"/ui//evil.example":        "/ui/",
		"/ui/events\x00":           "/ui/",
		"/ui":                      "/ui",
		"/ui/?x=/../..":            "/ui/?x=/../..",
	} {
		if got := consoleNext(next); got != want {
			t.Errorf("next %q: %q, want %q", next, got, want)
		}
	}
}

// TestLimits: the 33rd live tail is refused with 503, and replay errors map to their codes.
func TestLimits(t *testing.T) {
	s := New(memstore.New(10), fixedTriggers{}, metrics.New())
	s.tails.Store(maxTails)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/tail", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "32 live tails") {
		t.Errorf("tail past the bound: %d %s", rec.Code, rec.Body.String())
	}
	for err, want := range map[error]int{
		fmt.Errorf("x: %w", replay.ErrBadSpec): 400, fmt.Errorf("x: %w", router.ErrNoArchive): 400,
		fmt.Errorf("x: %w", router.ErrBrokerNotFound): 404, fmt.Errorf("x: %w", broker.ErrTriggerNotFound): 404,
		fmt.Errorf("x: %w", replay.ErrBusy): 429, errors.New("cassandra down"): 503,
	} {
		if got := replayErrorCode(err); got != want {
			t.Errorf("%v: %d, want %d", err, got, want)
		}
	}
}

// TestStalledTailFreesItsSlot: a client that opens a tail and stops reading loses it once a round
// of writes cannot finish within tailWriteTimeout; it used to hold one of the maxTails slots for
// as long as its connection lived.
func TestStalledTailFreesItsSlot(t *testing.T) {
	defer func(d time.Duration) { tailWriteTimeout = d }(tailWriteTimeout)
	tailWriteTimeout = 300 * time.Millisecond
	store := memstore.New(tailBackfill)
	long := strings.Repeat("x", 50000)
	start := time.Now().Add(-time.Minute)
	for i := range tailBackfill { // about 50 MB of outcomes, all in the backfill: more than any socket buffers hold
		o := failedOutcome(fmt.Sprintf("e%05d", i), "orders", start.Add(time.Duration(i)*time.Microsecond))
		o.LastError = long
		store.Record(o)
	}
	s := New(store, fixedTriggers{}, metrics.New())
	srv := httptest.NewServer(s)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	since := start.Add(-time.Second).UTC().Format(time.RFC3339Nano)
	fmt.Fprintf(conn, "GET /v1/tail?trigger=ns/orders&since=%s HTTP/1.1\r\nHost: x\r\n\r\n", since)
	// The client reads nothing from now on.
	deadline := time.Now().Add(20 * time.Second)
	for s.tails.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the tail never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for s.tails.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a tail whose client stopped reading still holds its slot after 20 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
