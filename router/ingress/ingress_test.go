package ingress

import (
	"net/http"
	"strings"
	"testing"
)

func TestParseBrokerPath(t *testing.T) {
	for path, want := range map[string]string{
		"/ns/b": "ok ns/b", "/ns/b/": "ok ns/b", "/": "404", "": "404",
		"/ns": "400", "/ns/": "400", "/ns/b/c": "400", "//b": "400", "/ns//": "400",
	} {
		ref, found, ok := ParseBrokerPath(path)
		got := "ok " + ref.String()
		switch {
		case !found:
			got = "404"
		case !ok:
			got = "400"
		}
		if got != want {
			t.Errorf("ParseBrokerPath(%q) = %s, want %s", path, got, want)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"X-Request-Id", "Traceparent", "Tracestate", "Knative-Foo", "X-B3-Traceid", "Retry-After", "Authorization", "Content-Type", "Ce-Id"} {
		h.Set(k, "v")
	}
	h.Set("Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	got := ForwardedHeaders(h)
	if len(got) != 6 || got.Get("Authorization") != "" || got.Get("Ce-Id") != "" {
		t.Errorf("forwarded %v", got)
	}
	// An invalid traceparent is not carried along, nor its tracestate (W3C: both are ignored).
	h.Set("Traceparent", "00-"+strings.Repeat("a", 1<<20))
	if got := ForwardedHeaders(h); len(got) != 4 || got.Get("Traceparent") != "" || got.Get("Tracestate") != "" {
		t.Errorf("forwarded with an invalid traceparent: %v", got)
	}
	if ForwardedHeaders(http.Header{"Accept": {"x"}}) != nil {
		t.Error("allocated a header map with nothing to forward")
	}
}
