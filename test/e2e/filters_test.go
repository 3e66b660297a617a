package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestFilters sends a fixed set of events through triggers using every filter dialect and checks
// which trigger got which event.
func TestFilters(t *testing.T) {
	type trig struct{ name, filter string }
	triggers := []trig{
		{"attrs-type", "  filter:\n    attributes:\n      type: com.example.a\n"},
		{"attrs-any-ext", "  filter:\n    attributes:\n      region: \"\"\n"},
		{"attrs-two", "  filter:\n    attributes:\n      type: com.example.a\n      source: /shop\n"},
		{"ext-number", "  filter:\n    attributes:\n      count: \"5\"\n"},
		{"exact", "  filters:\n    - exact:\n        type: com.example.b\n"},
		{"prefix", "  filters:\n    - prefix:\n        type: com.example.\n"},
		{"suffix", "  filters:\n    - suffix:\n        source: /shop\n"},
		{"all", "  filters:\n    - all:\n        - prefix:\n            type: com.example.\n        - exact:\n            source: /shop\n"},
		{"any", "  filters:\n    - any:\n        - exact:\n            type: com.example.b\n        - exact:\n            region: eu\n"},
		{"not", "  filters:\n    - not:\n        exact:\n          type: com.example.a\n"},
		{"cesql", "  filters:\n    - cesql: \"type LIKE 'com.example.%' AND EXISTS region AND region <> 'us'\"\n"},
		{"cesql-missing", "  filters:\n    - cesql: \"nosuchattr = 'x'\"\n"},
		{"filters-win", "  filter:\n    attributes:\n      type: com.example.a\n  filters:\n    - exact:\n        type: com.example.b\n"},
		{"no-filter", ""},
	}
	subs := map[string]*subscriber{}
	var manifests strings.Builder
	manifests.WriteString(brokerYAML("default"))
	for _, tr := range triggers {
		s := newSubscriber(t, nil)
		subs[tr.name] = s
		manifests.WriteString(triggerYAML(tr.name, "  broker: default\n"+tr.filter+"  subscriber:\n    uri: "+s.URL+"\n"))
	}
	r := startRouter(t, manifests.String(), "")

	events := []ceRequest{
		withHeaders(binaryEvent("e1", "com.example.a"), "Ce-Source", "/shop", "Ce-Region", "eu"),
		withHeaders(binaryEvent("e2", "com.example.b"), "Ce-Source", "/other"),
		withHeaders(binaryEvent("e3", "org.other.c"), "Ce-Source", "/shop", "Ce-Region", "us"),
		// structured mode with a JSON number extension: 5 must equal "5"
		{Headers: map[string]string{"Content-Type": "application/cloudevents+json"}, Body: `{"specversion":"1.0","id":"e4","source":"/x","type":"num","count":5}`},
		withHeaders(binaryEvent("e5", "num"), "Ce-Count", "5"),
	}
	for _, e := range events {
		if code, _, body := r.send(t, "/default/default", e); code != 202 {
			t.Fatalf("send: %d %s", code, body)
		}
	}
	want := map[string][]string{
		"attrs-type":    {"e1"},
		"attrs-any-ext": {"e1", "e3"},
		"attrs-two":     {"e1"},
		"ext-number":    {"e4", "e5"},
		"exact":         {"e2"},
		"prefix":        {"e1", "e2"},
		"suffix":        {"e1", "e3"},
		"all":           {"e1"},
		"any":           {"e1", "e2"},
		"not":           {"e2", "e3", "e4", "e5"},
		"cesql":         {"e1"},
		"cesql-missing": {},
		"filters-win":   {"e2"},
		"no-filter":     {"e1", "e2", "e3", "e4", "e5"},
	}
	for name, ids := range want {
		if len(ids) > 0 {
			subs[name].waitFor(t, len(ids), 10*time.Second)
		}
	}
	time.Sleep(200 * time.Millisecond)
	for name, ids := range want {
		got := map[string]bool{}
		for _, req := range subs[name].requests() {
			got[req.Event.ID()] = true
		}
		if len(got) != len(ids) || len(subs[name].requests()) != len(ids) {
			t.Errorf("trigger %s got %v, want %v", name, got, ids)
			continue
		}
		for _, id := range ids {
			if !got[id] {
				t.Errorf("trigger %s got %v, want %v", name, got, ids)
			}
		}
	}
}

func withHeaders(r ceRequest, kv ...string) ceRequest {
	for i := 0; i+1 < len(kv); i += 2 {
		r.Headers[kv[i]] = kv[i+1]
	}
	return r
}
