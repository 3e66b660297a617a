package e2e

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExplainWhyNotDelivered (issue #21): `switchyard events explain` judges an event like the one
// described by every trigger of a broker, without delivering it, and says which filter clause
// refuses it; a reader of a protected admin API may ask (it changes nothing).
func TestExplainWhyNotDelivered(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reader"), []byte("r3ader-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, nil)
	auth := "    auth:\n      readers: {tokens: [{file: " + filepath.Join(dir, "reader") + "}]}\n"
	manifests := brokerYAML("default") +
		triggerYAML("paid", "  broker: default\n  filter:\n    attributes: {type: order.paid}\n  subscriber:\n    uri: "+sub.URL+"\n") +
		triggerYAML("eu-orders", "  broker: default\n  filters:\n    - prefix: {type: order.}\n    - exact: {region: eu}\n  subscriber:\n    uri: "+sub.URL+"\n") +
		triggerYAML("big", "  broker: default\n  filters:\n    - cesql: \"type = 'order.created' AND qty > 10\"\n  subscriber:\n    uri: "+sub.URL+"\n")
	r := startRouterIn(t, t.TempDir(), manifests, "", auth)

	run := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append([]string{"events", "explain", "--admin-url", r.Admin, "--token", "r3ader-token"}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := run("--broker", "default/default", "--type", "order.created", "--source", "/shop", "--ext", "region=us", "--ext", "qty=3")
	if err != nil {
		t.Fatalf("events explain: %v\n%s", err, out)
	}
	for _, want := range []string{
		`paid        false     filter.attributes: type is "order.created", not "order.paid"`,
		`eu-orders   false     all[1]: exact: region is "us", not "eu"`,
		`big         false     all[0]: cesql "type = 'order.created' AND qty > 10": qty > 10 is false`,
		"0 of 3 triggers of default/default match",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	out, err = run("--broker", "default/default", "--type", "order.created", "--source", "/shop", "--ext", "region=eu", "--ext", "qty=12", "-o", "json")
	if err != nil || !strings.Contains(out, `"matched": 2`) {
		t.Errorf("a matching event: %v\n%s", err, out)
	}
	if sub.count() != 0 {
		t.Errorf("explain delivered %d events; it must deliver none", sub.count())
	}
	if out, err := run("--broker", "default/nope", "--type", "t", "--source", "s"); err == nil || !strings.Contains(out, "404") {
		t.Errorf("an unknown broker: %v\n%s", err, out)
	}

	// An event that matched nothing is findable by its id: it arrived, at which broker, and
	// matched no trigger.
	if code, _, body := r.send(t, "/default/default", binaryEvent("lonely", "nobody.wants.this")); code != 202 {
		t.Fatalf("send: %d %s", code, body)
	}
	var got string
	waitFor(t, 5*time.Second, func() bool {
		out, _ := exec.Command(binary, "events", "get", "lonely", "--admin-url", r.Admin, "--token", "r3ader-token").CombinedOutput()
		got = string(out)
		return strings.Contains(got, `"status": "unmatched"`)
	})
	if !strings.Contains(got, `"trigger": "default/unmatched:default"`) || !strings.Contains(got, `"broker": "default/default"`) {
		t.Errorf("events get of an unmatched event:\n%s", got)
	}
	// A flood of unmatched events is counted in full and recorded at a bounded rate.
	var batch []string
	for i := range 500 {
		batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"flood-%d","source":"/s","type":"nobody.wants.this"}`, i))
	}
	if code, _, body := r.send(t, "/default/default", ceRequest{Headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"}, Body: "[" + strings.Join(batch, ",") + "]"}); code != 202 {
		t.Fatalf("batch: %d %s", code, body)
	}
	waitFor(t, 5*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return metricValue(m, `switchyard_broker_unmatched_total{broker_name="default",namespace_name="default"}`) == 501
	})
	req, _ := http.NewRequest(http.MethodGet, r.Admin+"/v1/triggers/default/unmatched:default/outcomes?limit=1000", nil)
	req.Header.Set("Authorization", "Bearer r3ader-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(body), `"status": "unmatched"`); n < 50 || n > 200 {
		t.Errorf("%d unmatched outcomes recorded of 501 sent in a moment; want the 100-a-second bound to hold", n)
	}
}

// TestPerEventLogs (issue #21): at debug, each event's way is in the log by its id: accepted,
// routed (which triggers), every attempt with its code and the retry scheduled; a dead-lettered
// event is logged at info.
func TestPerEventLogs(t *testing.T) {
	sub := newSubscriber(t, func(_ int, _ received, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	dls := newSubscriber(t, nil)
	r := startRouter(t, brokerYAML("default")+triggerYAML("flaky", "  broker: default\n  subscriber:\n    uri: "+sub.URL+
		"\n  delivery:\n    retry: 1\n    backoffDelay: PT0.05S\n    deadLetterSink: {uri: \""+dls.URL+"\"}\n"), "")
	r.send(t, "/default/default", binaryEvent("traced-1", "order.created"))
	dls.waitFor(t, 1, 5*time.Second)
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(r.log.String(), `"msg":"event dead-lettered"`) })
	var lines []string
	for _, l := range strings.Split(r.log.String(), "\n") {
		if strings.Contains(l, `"event_id":"traced-1"`) {
			lines = append(lines, l)
		}
	}
	log := strings.Join(lines, "\n")
	for _, want := range []string{
		`"msg":"event accepted","broker":"default/default","event_id":"traced-1"`,
		`"msg":"event routed","broker":"default/default","event_id":"traced-1","type":"order.created","matched":["flaky"]`,
		`"msg":"delivery attempt","trigger":"default/flaky","event_id":"traced-1","attempt":1,"code":503`,
		`"retry_in":`,
		`"msg":"delivery attempt","trigger":"default/flaky","event_id":"traced-1","attempt":2,"code":503`,
		`"level":"warn"`, // a dead-lettered event is logged at warn, as every other failure
		`"msg":"event dead-lettered","trigger":"default/flaky","event_id":"traced-1","attempts":2,"code":503`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log of event traced-1 lacks %s:\n%s", want, log)
		}
	}
}

// TestExplainOfADeliveredEventJudgesItAsItWas (issue #33, item 3): the README's own event, with
// the extension its trigger's CESQL reads, was delivered to big-web-orders, but the explain link
// of its event page started from its id, source and type alone and said the trigger did not
// match. Delivered outcomes now keep the event's attributes (not its data), so the playground
// starts from the event as it arrived and agrees with what happened.
func TestExplainOfADeliveredEventJudgesItAsItWas(t *testing.T) {
	sub := newSubscriber(t, nil)
	manifests := brokerYAML("default") +
		triggerYAML("big-web-orders", "  broker: default\n  filters:\n    - cesql: \"type = 'com.example.order.created' AND source LIKE '%/web' AND EXISTS amount AND INT(amount) > 100\"\n  subscriber:\n    uri: "+sub.URL+"\n")
	r := startRouter(t, manifests, "")
	req := binaryEvent("readme-1", "com.example.order.created")
	req.Headers["Ce-Source"] = "https://shop.example/web"
	req.Headers["Ce-Amount"] = "150"
	if code, _, msg := r.send(t, "/default/default", req); code != 202 {
		t.Fatalf("%d %q", code, msg)
	}
	sub.waitFor(t, 1, 10*time.Second)
	var page string
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, page = r.get(t, "/ui/explain?event=readme-1&broker=default%2Fdefault")
		// The subscriber has the event a moment before its outcome is recorded.
		if !strings.Contains(page, "has no recorded outcome") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := strings.Index(page, `id="explain-event"`)
	if start < 0 {
		t.Fatalf("no event in the playground:\n%s", page)
	}
	text := page[strings.Index(page[start:], ">")+start+1:]
	text = html.UnescapeString(text[:strings.Index(text, "</textarea>")])
	if !strings.Contains(text, `"amount":"150"`) {
		t.Fatalf("the playground starts from %s, without the event's amount", text)
	}
	resp, err := http.PostForm(r.Admin+"/ui/explain", url.Values{"broker": {"default/default"}, "event": {text}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "<td>big-web-orders</td><td>yes</td>") {
		t.Errorf("explain of the delivered event does not match the trigger it was delivered to:\n%s", body)
	}
}
