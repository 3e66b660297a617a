package ingress

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBodyBudgetCountsBytesThatArrived (issue #16, item 4): a body is given memory as its bytes
// arrive, not as its Content-Length announces: requests announcing 4 MiB each and sending a byte
// hold a chunk each, and a body that does not fit in what is left of the budget gets 503.
func TestBodyBudgetCountsBytesThatArrived(t *testing.T) {
	b := NewBodyBudget(1 << 20)
	var stalled []*io.PipeWriter
	defer func() {
		for _, w := range stalled {
			w.Close()
		}
	}()
	results := make(chan *BodyError, 16)
	for range 16 {
		pr, pw := io.Pipe()
		stalled = append(stalled, pw)
		req := httptest.NewRequest(http.MethodPost, "/ns/b", pr)
		req.ContentLength = 4 << 20
		go func() {
			_, err := b.Read(req, 4<<20)
			results <- err
		}()
		if _, err := pw.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if used := b.Used(); used > 16*firstChunk*4 {
		t.Fatalf("16 stalled bodies of one byte hold %d bytes of the budget", used)
	}
	// A full body that needs more than what is left is refused at once.
	big := httptest.NewRequest(http.MethodPost, "/ns/b", strings.NewReader(strings.Repeat("y", 1<<20)))
	if _, err := b.Read(big, 4<<20); err == nil || err.Status != http.StatusServiceUnavailable {
		t.Fatalf("a body past the budget: %v, want 503", err)
	}
	for _, w := range stalled {
		w.CloseWithError(io.ErrUnexpectedEOF)
	}
	for range 16 {
		if err := <-results; err == nil || err.Status != http.StatusBadRequest {
			t.Errorf("a body cut short: %v, want 400", err)
		}
	}
	stalled = nil
	if used := b.Used(); used != 0 {
		t.Fatalf("%d bytes still counted after every read ended", used)
	}
}

func TestBodyBudgetRead(t *testing.T) {
	b := NewBodyBudget(0)
	cases := []struct {
		name    string
		body    string
		length  int64 // -1: unknown (chunked)
		limit   int64
		status  int
		wantCap int // exact capacity expected, 0: not checked
	}{
		{name: "small known", body: "hello", length: 5, limit: 100, wantCap: 5},
		{name: "large known is exact", body: strings.Repeat("a", 300<<10), length: 300 << 10, limit: 1 << 20, wantCap: 300 << 10},
		{name: "unknown length", body: strings.Repeat("b", 100<<10), length: -1, limit: 1 << 20},
		{name: "unknown length over limit", body: strings.Repeat("c", 1001), length: -1, limit: 1000, status: 413},
		{name: "announced over limit", body: "x", length: 2000, limit: 1000, status: 413},
		{name: "empty", body: "", length: 0, limit: 10, wantCap: 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(c.body))
			req.ContentLength = c.length
			body, err := b.Read(req, c.limit)
			if c.status != 0 {
				if err == nil || err.Status != c.status {
					t.Fatalf("got %v, want %d", err, c.status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer body.Release()
			if string(body.Data) != c.body {
				t.Fatalf("read %d bytes, want %d", len(body.Data), len(c.body))
			}
			if c.length >= 0 && cap(body.Data) != c.wantCap {
				t.Errorf("capacity %d, want exactly %d", cap(body.Data), c.wantCap)
			}
		})
	}
	if b.Used() != 0 {
		t.Fatalf("%d bytes still counted", b.Used())
	}
}
