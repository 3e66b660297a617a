package cehttp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadBody: a body within the limit is read; one past it is answered 413 naming the limit.
func TestReadBody(t *testing.T) {
	for _, c := range []struct {
		body string
		ok   bool
		code int
		msg  string
	}{
		{"0123456789", true, 200, ""},
		{"0123456789x", false, 413, "the request is larger than 10 bytes (spec.ingress.maxBodyBytes)"},
	} {
		w := httptest.NewRecorder()
		got, ok := ReadBody(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body)), 10)
		if ok != c.ok || ok && string(got) != c.body || w.Code != c.code || !strings.Contains(w.Body.String(), c.msg) {
			t.Errorf("%q: ok %v, %q, answered %d %q", c.body, ok, got, w.Code, w.Body.String())
		}
	}
}
