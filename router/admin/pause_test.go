package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// TestPauseResumeAPI: the codes of POST /v1/triggers/{ns}/{name}/pause and /resume, in order
// (each step sees the state the earlier ones left): 200 with the state after, again when nothing
// changes, 404 for an unknown trigger, 409 for the resume of a trigger its manifest pauses.
func TestPauseResumeAPI(t *testing.T) {
	routes := fixedTriggers{{Namespace: "ns", Name: "orders"}, {Namespace: "ns", Name: "held", Paused: true, PausedBy: "manifest"}}
	srv := httptest.NewServer(New(memstore.New(10), routes, metrics.New()))
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL}
	for _, step := range []struct {
		method, path string
		code         int
		want         TriggerPause // for a 200
		body         string       // in the answer of a refusal
	}{
		{"POST", "/v1/triggers/ns/orders/pause", 200, TriggerPause{Trigger: "ns/orders", Paused: true, PausedBy: "operator"}, ""},
		{"POST", "/v1/triggers/ns/orders/pause", 200, TriggerPause{Trigger: "ns/orders", Paused: true, PausedBy: "operator"}, ""},
		{"POST", "/v1/triggers/ns/orders/resume", 200, TriggerPause{Trigger: "ns/orders"}, ""},
		{"POST", "/v1/triggers/ns/orders/resume", 200, TriggerPause{Trigger: "ns/orders"}, ""},
		{"POST", "/v1/triggers/ns/nope/pause", 404, TriggerPause{}, "pause: trigger not found"},
		{"POST", "/v1/triggers/ns/nope/resume", 404, TriggerPause{}, "resume: trigger not found"},
		{"POST", "/v1/triggers/ns/held/resume", 409, TriggerPause{}, "resume: paused by its manifest: remove the switchyard.dev/paused annotation of trigger ns/held"},
		{"POST", "/v1/triggers/ns/held/pause", 200, TriggerPause{Trigger: "ns/held", Paused: true, PausedBy: "manifest"}, ""},
		{"GET", "/v1/triggers/ns/orders/pause", 405, TriggerPause{}, ""},
	} {
		resp, body := c.do(step.method, step.path, nil, nil)
		if resp.StatusCode != step.code {
			t.Errorf("%s %s: %d %s, want %d", step.method, step.path, resp.StatusCode, body, step.code)
			continue
		}
		if step.code != 200 {
			if !strings.Contains(body, step.body) {
				t.Errorf("%s %s: %d %q, want it to say %q", step.method, step.path, resp.StatusCode, body, step.body)
			}
			continue
		}
		var got TriggerPause
		if err := json.Unmarshal([]byte(body), &got); err != nil || got != step.want || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %s (%v), want %+v", step.method, step.path, body, err, step.want)
		}
	}
	// GET /v1/triggers shows the state too.
	if resp, body := c.do("GET", "/v1/triggers", nil, nil); resp.StatusCode != 200 || !strings.Contains(body, `"pausedBy": "manifest"`) {
		t.Errorf("triggers: %d %s", resp.StatusCode, body)
	}
}

// TestPauseNeedsAnOperator: pause and resume are an operator's, as redrive is: a reader gets 403,
// no credentials 401, another site's request 403 whatever the credentials; nothing changes.
func TestPauseNeedsAnOperator(t *testing.T) {
	routes := fixedTriggers{{Namespace: "ns", Name: "orders"}}
	s := New(memstore.New(10), routes, metrics.New())
	s.SetAuth(&Auth{
		Readers:   &senderauth.Policy{Tokens: [][]byte{[]byte("reader-token")}},
		Operators: &senderauth.Policy{Tokens: [][]byte{[]byte("operator-token")}},
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL}
	reader := map[string]string{"Authorization": "Bearer reader-token"}
	operator := map[string]string{"Authorization": "Bearer operator-token"}
	crossSite := map[string]string{"Authorization": "Bearer operator-token", "Sec-Fetch-Site": "cross-site"}
	for _, verb := range []string{"pause", "resume"} {
		path := "/v1/triggers/ns/orders/" + verb
		if resp, body := c.do("POST", path, nil, reader); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "an operator's are needed") {
			t.Errorf("a reader's %s: %d %s", verb, resp.StatusCode, body)
		}
		if resp, _ := c.do("POST", path, nil, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d", verb, resp.StatusCode)
		}
		if resp, _ := c.do("POST", path, nil, crossSite); resp.StatusCode != http.StatusForbidden {
			t.Errorf("a cross-site %s: %d", verb, resp.StatusCode)
		}
		if routes[0].Paused {
			t.Fatalf("refused %s paused the trigger", verb)
		}
	}
	if resp, body := c.do("POST", "/v1/triggers/ns/orders/pause", nil, operator); resp.StatusCode != 200 || !routes[0].Paused {
		t.Errorf("an operator's pause: %d %s", resp.StatusCode, body)
	}
	if resp, body := c.do("POST", "/v1/triggers/ns/orders/resume", nil, operator); resp.StatusCode != 200 || routes[0].Paused {
		t.Errorf("an operator's resume: %d %s", resp.StatusCode, body)
	}
}

// TestConsolePauseButtons: the triggers page shows who pauses a trigger, and to an operator a
// Pause or Resume button (none for a trigger its manifest pauses: its manifest must change); the
// buttons act and come back to the page; a reader sees none, and a forged post is refused.
func TestConsolePauseButtons(t *testing.T) {
	routes := fixedTriggers{{Namespace: "ns", Name: "orders", Broker: "default"}, {Namespace: "ns", Name: "held", Broker: "default", Paused: true, PausedBy: "manifest"}}
	s := New(memstore.New(10), routes, metrics.New())
	s.SetAuth(&Auth{
		Readers:   &senderauth.Policy{Tokens: [][]byte{[]byte("reader-token")}},
		Operators: &senderauth.Policy{Tokens: [][]byte{[]byte("operator-token")}},
	})
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL, cookie: &http.Cookie{Name: sessionCookie, Value: "operator-token"}}
	row := func(body, trigger string) string {
		_, after, _ := strings.Cut(body, `<tr data-trigger="`+trigger+`">`)
		r, _, _ := strings.Cut(after, "</tr>")
		return r
	}

	_, body := c.do("GET", "/ui/", nil, nil)
	if r := row(body, "ns/orders"); !strings.Contains(r, ">running<") || !strings.Contains(r, `action="/ui/triggers/ns/orders/pause"`) || strings.Contains(r, "resume") {
		t.Errorf("a running trigger's row:\n%s", r)
	}
	if r := row(body, "ns/held"); !strings.Contains(r, "paused (by manifest)") || strings.Contains(r, "<form") {
		t.Errorf("the row of a trigger its manifest pauses:\n%s", r)
	}
	resp, _ := c.do("POST", "/ui/triggers/ns/orders/pause", url.Values{}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/ui/?paused=ns%2Forders" || !routes[0].Paused {
		t.Fatalf("pause: %d %q %+v", resp.StatusCode, loc, routes[0])
	}
	_, body = c.do("GET", "/ui/?paused=ns%2Forders", nil, nil)
	if r := row(body, "ns/orders"); !strings.Contains(body, `id="flash">ns/orders is paused`) || !strings.Contains(r, "paused (by operator)") || !strings.Contains(r, `action="/ui/triggers/ns/orders/resume"`) {
		t.Errorf("after the pause:\n%s", body)
	}
	resp, _ = c.do("POST", "/ui/triggers/ns/orders/resume", url.Values{}, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/ui/?resumed=ns%2Forders" || routes[0].Paused {
		t.Errorf("resume: %d %q %+v", resp.StatusCode, loc, routes[0])
	}
	if resp, body = c.do("POST", "/ui/triggers/ns/held/resume", url.Values{}, nil); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "switchyard.dev/paused annotation") {
		t.Errorf("resume of a trigger its manifest pauses: %d\n%s", resp.StatusCode, body)
	}
	if resp, _ = c.do("POST", "/ui/triggers/ns/nope/pause", url.Values{}, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("pause of an unknown trigger: %d", resp.StatusCode)
	}
	if resp, _ = c.do("POST", "/ui/triggers/ns/orders/pause", url.Values{}, map[string]string{"Sec-Fetch-Site": "cross-site"}); resp.StatusCode != http.StatusForbidden || routes[0].Paused {
		t.Errorf("cross-site pause: %d", resp.StatusCode)
	}

	c.cookie.Value = "reader-token"
	_, body = c.do("GET", "/ui/", nil, nil)
	if strings.Contains(body, "pause-trigger") || !strings.Contains(row(body, "ns/held"), "paused (by manifest)") {
		t.Errorf("a reader's triggers page:\n%s", body)
	}
	if resp, body = c.do("POST", "/ui/triggers/ns/orders/pause", url.Values{}, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "an operator&#39;s are needed") || routes[0].Paused {
		t.Errorf("a reader's pause: %d\n%s", resp.StatusCode, body)
	}
}
