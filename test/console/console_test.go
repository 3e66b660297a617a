package console

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

const (
	readerToken   = "reader-3f9c2a"
	operatorToken = "operator-81be07"
)

// chromium finds the browser: SWITCHYARD_CHROMIUM, else Debian's. `make test` installs it and
// sets SWITCHYARD_REQUIRE_BROWSER=1, so there a missing browser fails instead of skipping.
func chromium(t *testing.T) string {
	for _, p := range []string{os.Getenv("SWITCHYARD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if os.Getenv("SWITCHYARD_REQUIRE_BROWSER") == "1" {
		t.Fatal("no Chromium: `make browser` installs Debian's (apt-get install chromium), or set SWITCHYARD_CHROMIUM")
	}
	t.Skip("no Chromium here: `make browser` installs Debian's, or set SWITCHYARD_CHROMIUM")
	return ""
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// subscriber answers 500 on /orders while failing is set, 200 otherwise.
type subscriber struct {
	failing  atomic.Bool
	mu       sync.Mutex
	received map[string]int
}

func (s *subscriber) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.received[r.URL.Path+" "+r.Header.Get("Ce-Id")]++
	s.mu.Unlock()
	if r.URL.Path == "/orders" && s.failing.Load() {
		http.Error(w, "database down", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startSwitchyard runs the built binary on embedded defaults with admin auth, a broker and two
// triggers: orders (order.created, no retries) and audit (everything).
func startSwitchyard(t *testing.T, subscriberURL string) (ingress, admin string) {
	bin := os.Getenv("SWITCHYARD_BIN")
	if bin == "" {
		t.Skip("SWITCHYARD_BIN is not set: `make test` builds the binary and sets it")
	}
	dir := t.TempDir()
	for name, token := range map[string]string{"reader": readerToken, "operator": operatorToken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(token), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ingressAddr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: console-test}
spec:
  ingress: {addr: "%s"}
  admin:
    addr: "%s"
    traceURL: "http://traces.example/trace/{traceId}"
    auth:
      readers: {tokens: [{file: %s}]}
      operators: {tokens: [{file: %s}]}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: shop}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: orders, namespace: shop}
spec:
  broker: default
  filter: {attributes: {type: order.created}}
  subscriber: {uri: "%s/orders"}
  delivery: {retry: 0}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: audit, namespace: shop}
spec:
  broker: default
  subscriber: {uri: "%s/audit"}
`, ingressAddr, adminAddr, filepath.Join(dir, "reader"), filepath.Join(dir, "operator"), subscriberURL, subscriberURL)
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "--config", filepath.Join(dir, "config.yaml"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("switchyard log:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(15 * time.Second); ; {
		if resp, err := http.Get("http://" + adminAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return "http://" + ingressAddr, "http://" + adminAddr
			}
		}
		select {
		case <-exited:
			t.Fatalf("switchyard exited during start-up:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("switchyard not ready after 15s:\n%s", log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func send(t *testing.T, ingress, id, typ string, header ...string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, ingress+"/shop/default", strings.NewReader(`{"order":{"id":"`+id+`","total":42}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Ce-Specversion", "1.0")
	req.Header.Set("Ce-Id", id)
	req.Header.Set("Ce-Source", "/shop/web")
	req.Header.Set("Ce-Type", typ)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("sending %s: %d", id, resp.StatusCode)
	}
}

// TestConsoleInBrowser walks the console as an operator and a reader would: log in, watch the
// counters move, filter the event log, open an event, redrive it, redrive by filter with the
// confirmation, explain an event, follow the live tail, and read without JavaScript.
// SWITCHYARD_SCREENSHOTS=DIR keeps a screenshot of each page there (docs/console.md's).
func TestConsoleInBrowser(t *testing.T) {
	browser := chromium(t)
	sub := &subscriber{received: map[string]int{}}
	sub.failing.Store(true)
	subSrv := httptest.NewServer(sub)
	defer subSrv.Close()
	ingress, admin := startSwitchyard(t, subSrv.URL)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 900),
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true))
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	shots := os.Getenv("SWITCHYARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	fail := func(ctx context.Context, step string, err error) {
		t.Helper()
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage:\n%s", step, err, html)
	}
	do := func(ctx context.Context, step string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			fail(ctx, step, err)
		}
	}
	text := func(ctx context.Context, sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			fail(ctx, "text of "+sel, err)
		}
		return strings.TrimSpace(s)
	}
	count := func(ctx context.Context, sel string) int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
		if err != nil {
			fail(ctx, "count of "+sel, err)
		}
		return n
	}
	screenshot := func(ctx context.Context, name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if _, err := png.Decode(bytes.NewReader(buf)); err != nil {
			t.Fatalf("screenshot %s is not a PNG: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// until waits for expr to hold on the page, across a navigation under way (a form just
	// submitted): the poll is started again on the new page.
	until := func(expr string) chromedp.Action[chromedp.Void] {
		return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			deadline := time.Now().Add(20 * time.Second)
			for {
				_, err := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(time.Until(deadline)))(ctx, tg)
				if err == nil || time.Now().After(deadline) || ctx.Err() != nil ||
					!strings.Contains(err.Error(), "navigated or closed") && !strings.Contains(err.Error(), "context was destroyed") && !strings.Contains(err.Error(), "Cannot find context") {
					return chromedp.Void{}, err
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	// submit clicks sel, which leaves the page, and waits for the next page to hold expr.
	submit := func(sel, expr string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(chromedp.Evaluate[chromedp.Void]("window.switchyardOldPage = true"), chromedp.Click(chromedp.CSS(sel)),
			until(`!window.switchyardOldPage && document.readyState === "complete" && (`+expr+`)`))
	}
	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	cell := func(trigger, field string) string {
		return fmt.Sprintf(`(document.querySelector('tr[data-trigger="%s"] td[data-field="%s"]')||{}).textContent`, trigger, field)
	}

	// Logging in: the console sends a visitor without credentials to the login page and back.
	do(ctx, "open the console", chromedp.Navigate(admin+"/ui/"), chromedp.WaitVisible(css("#token")))
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || !strings.Contains(loc, "/ui/login?next=") {
		t.Fatalf("without credentials the console went to %s (%v), want the login page", loc, err)
	}
	screenshot(ctx, "login")
	do(ctx, "log in as operator", chromedp.SendKeys(css("#token"), operatorToken), submit("#login", `document.getElementById("triggers")`))

	// Live counters: three orders fail at shop/orders and reach shop/audit with a payment, and
	// the open page shows it without being reloaded.
	send(t, ingress, "order-1", "order.created", "Ce-Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	send(t, ingress, "order-2", "order.created")
	send(t, ingress, "order-3", "order.created")
	send(t, ingress, "payment-1", "payment.captured")
	do(ctx, "counters move", until(cell("shop/orders", "failed")+` === "3" && `+cell("shop/audit", "delivered")+` === "4"`))
	if h := text(ctx, `tr[data-trigger="shop/orders"] td[data-field="health"]`); h != "3 waiting for redrive" {
		t.Errorf("shop/orders health %q, want 3 waiting for redrive", h)
	}
	// The charts take a point every 4 s: the broker's row draws its line once it has two.
	send(t, ingress, "payment-2", "payment.captured")
	do(ctx, "broker chart", until(`!!document.querySelector('tr[data-broker="shop/default"] svg.chart polyline')`))
	if q := text(ctx, `tr[data-broker="shop/default"] td[data-field="unfinished"]`); q != "0" {
		t.Errorf("shop/default unfinished %q, want 0", q)
	}
	screenshot(ctx, "triggers")

	// A trigger's page: its filter and delivery as configured, and its charts.
	do(ctx, "open a trigger", submit(`tr[data-trigger="shop/orders"] a.trigger-link`, `!!document.getElementById("trigger-settings")`))
	if f := text(ctx, "#trigger-filter"); f != `attributes: {type: "order.created"}` {
		t.Errorf("trigger filter %q", f)
	}
	if st := text(ctx, "#trigger-settings"); !strings.Contains(st, "exponential") || !strings.Contains(st, "unordered") || !strings.Contains(st, subSrv.URL) {
		t.Errorf("trigger settings:\n%s", st)
	}
	do(ctx, "trigger charts", until(`document.querySelectorAll("#chart-rate svg polyline").length === 2 && document.querySelectorAll("#chart-latency svg polyline").length === 2`))
	// A few intervals of payments for shop/audit's charts (shop/orders' counters stay as they are).
	for i := 0; i < 40; i++ {
		send(t, ingress, fmt.Sprintf("payment-burst-%d", i), "payment.captured")
		time.Sleep(time.Duration(100+i*7) * time.Millisecond)
	}
	time.Sleep(5 * time.Second) // the last interval is sampled
	do(ctx, "open a busy trigger", chromedp.Navigate(admin+"/ui/triggers/shop/audit"), chromedp.WaitVisible(css("#chart-rate")))
	if p := text(ctx, "#trigger-now"); !strings.Contains(p, "p99 ") || strings.Contains(p, "no delivery measured yet") {
		t.Errorf("shop/audit now: no latency measured for its deliveries:\n%s", p)
	}
	screenshot(ctx, "trigger")

	// The header's search goes to an event by its id.
	do(ctx, "search by id", chromedp.SendKeys(css("#search-id"), "order-2"), submit("form.search button", `document.querySelectorAll("#outcomes tbody tr").length === 2`))
	if loc, err := chromedp.Run(ctx, chromedp.Location()); err != nil || !strings.HasSuffix(loc, "/ui/events/order-2") {
		t.Errorf("search went to %s (%v)", loc, err)
	}

	// The event log, filtered in its form.
	do(ctx, "filter the event log", chromedp.Navigate(admin+"/ui/events"), chromedp.WaitVisible(css("#apply-filter")),
		chromedp.SendKeys(css(`input[name="trigger"]`), "shop/orders"),
		chromedp.SetValue(css(`select[name="status"]`), "failed"),
		submit("#apply-filter", `location.search.includes("status=failed") && document.querySelectorAll("#events tbody tr").length === 3`))
	if n := count(ctx, "#events tbody span.status.failed"); n != 3 {
		t.Errorf("filtered event log: %d failed rows, want 3", n)
	}
	if e := text(ctx, "#events tbody td.error"); !strings.Contains(e, "500") {
		t.Errorf("the event log's last error %q, want the subscriber's 500", e)
	}
	screenshot(ctx, "events")

	// An event's page: every trigger's outcome, the code, the trace link, the data.
	do(ctx, "open an event", submit(`#events a[href="/ui/events/order-1"]`, `document.querySelectorAll("#outcomes tbody tr").length === 2`))
	if o := text(ctx, "#outcomes"); !strings.Contains(o, "failed") || !strings.Contains(o, "500") || !strings.Contains(o, "delivered") {
		t.Errorf("event page outcomes:\n%s", o)
	}
	if p := text(ctx, "#path"); !strings.Contains(p, "order-1 order.created") || !strings.Contains(p, "shop/orders failed") || !strings.Contains(p, "shop/audit delivered") {
		t.Errorf("event page path:\n%s", p)
	}
	if p := text(ctx, "#payload"); !strings.Contains(p, `"total":42`) {
		t.Errorf("payload %q", p)
	}
	if href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("td.trace a").href`)); err != nil || href != "http://traces.example/trace/4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace link %q (%v)", href, err)
	}
	screenshot(ctx, "event")

	// Redrive one event once the subscriber is fixed: its new outcome appears on the page.
	sub.failing.Store(false)
	do(ctx, "redrive one", submit(`tr[data-trigger="shop/orders"] .redrive-one`, `document.getElementById("flash")`))
	delivered := `Array.from(document.querySelectorAll('#outcomes tr[data-trigger="shop/orders"] .status')).some(function (s) { return s.textContent === "delivered"; })`
	for i := 0; ; i++ {
		do(ctx, "reload the event", chromedp.Reload(), chromedp.WaitVisible(css("#outcomes")))
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](delivered))
		if err != nil {
			fail(ctx, "read the redriven outcome", err)
		}
		if ok {
			break
		}
		if i == 100 {
			fail(ctx, "the redriven outcome", fmt.Errorf("no delivered outcome at shop/orders after 20s"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := count(ctx, ".redrive-one"); n != 0 {
		t.Errorf("%d redrive buttons once order-1 is delivered everywhere: the old failure is history", n)
	}
	// The trigger's health settles: the redriven failure no longer counts (issue #33, item 4).
	do(ctx, "health after the redrive", chromedp.Navigate(admin+"/ui/"), chromedp.WaitVisible(css("#triggers")),
		until(cell("shop/orders", "health")+` === "2 waiting for redrive"`))
	sub.mu.Lock()
	got := sub.received["/orders order-1"]
	sub.mu.Unlock()
	if got != 2 {
		t.Errorf("order-1 reached /orders %d times, want 2 (the failed attempt and the redrive)", got)
	}

	// Redrive by filter: counted, confirmed, sent; the counters follow.
	do(ctx, "redrive by filter", chromedp.Navigate(admin+"/ui/events?trigger=shop%2Forders&status=failed"),
		until(`document.querySelectorAll("#events tbody span.status.failed").length >= 2`),
		submit("#redrive-matching", `document.getElementById("confirm-redrive")`))
	if c := text(ctx, "#confirm-redrive"); c != "Redrive 2 events" {
		t.Errorf("confirmation button %q, want Redrive 2 events (order-1 was redriven already)", c)
	}
	screenshot(ctx, "redrive-confirm")
	do(ctx, "confirm", submit("#confirm-redrive", `document.getElementById("redrive-done")`))
	if d := text(ctx, "#redrive-done"); !strings.HasPrefix(d, "2 events sent again") {
		t.Errorf("redrive result %q", d)
	}
	do(ctx, "counters after the redrive", chromedp.Navigate(admin+"/ui/"), until(cell("shop/orders", "delivered")+` === "3"`))

	// The explain playground: which clause refuses a payment at shop/orders.
	do(ctx, "explain", chromedp.Navigate(admin+"/ui/explain"), chromedp.WaitVisible(css("#explain-event")),
		chromedp.SetValue(css("#explain-event"), `{"specversion":"1.0","id":"p-9","source":"/shop/web","type":"payment.captured"}`),
		submit("#explain-submit", `document.getElementById("verdicts")`))
	if s, v := text(ctx, "#explain-summary"), text(ctx, "#verdicts"); s != "1 of 2 triggers match" || !strings.Contains(v, `type is "payment.captured", not "order.created"`) {
		t.Errorf("explain: %q\n%s", s, v)
	}
	screenshot(ctx, "explain")

	// The live tail: an event sent while the page is open appears in it, at both triggers.
	do(ctx, "tail", chromedp.Navigate(admin+"/ui/tail"), until(`document.getElementById("tail-status").textContent.startsWith("Following")`))
	send(t, ingress, "order-4", "order.created")
	do(ctx, "tail rows", until(`document.querySelectorAll('#tail tbody a[href="/ui/events/order-4"]').length === 2`))
	screenshot(ctx, "tail")

	// Without JavaScript every page still reads: the event log in a tab with scripts off.
	noJS, cancelNoJS := chromedp.NewContext(ctx)
	defer cancelNoJS()
	do(noJS, "open a tab", chromedp.Navigate("about:blank"))
	if _, err := chromedp.Call(noJS, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	do(noJS, "read without JavaScript", chromedp.Navigate(admin+"/ui/events?trigger=shop%2Forders"), chromedp.WaitVisible(css("#events")))
	html, err := chromedp.Run(noJS, chromedp.OuterHTML(css("#events")))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(html, `<span class="status `); n < 4 {
		t.Errorf("event log without JavaScript: %d outcomes, want every outcome of shop/orders (at least 4)", n)
	}
	cancelNoJS()

	// A reader reads but cannot act: no redrive button, and a forged form is refused.
	do(ctx, "log in as reader", chromedp.Navigate(admin+"/ui/"), submit(".logout button", `document.getElementById("token")`),
		chromedp.SendKeys(css("#token"), readerToken), submit("#login", `document.getElementById("triggers")`))
	do(ctx, "reader's event page", chromedp.Navigate(admin+"/ui/events/order-1"), chromedp.WaitVisible(css("#outcomes")))
	if n := count(ctx, ".redrive-one"); n != 0 {
		t.Errorf("a reader sees %d redrive buttons", n)
	}
	do(ctx, "reader's redrive", chromedp.Evaluate[chromedp.Void](`window.switchyardOldPage = true; (function () { var f = document.createElement("form"); f.method = "post"; f.action = "/ui/redrive";
		var i = document.createElement("input"); i.name = "confirm"; i.value = "1"; f.appendChild(i); document.body.appendChild(f); f.submit(); })()`),
		until(`!window.switchyardOldPage && document.getElementById("error")`))
	if r := text(ctx, "#error"); !strings.Contains(r, "an operator's are needed") {
		t.Errorf("reader's redrive: %q", r)
	}
}
