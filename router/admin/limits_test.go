package admin

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/replay"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// countingBody is a request body that counts what the handler read of it.
type countingBody struct {
	r    io.Reader
	read atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return nil }

func serve(s *Server, method, path, contentType string, body io.Reader, length int64) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, body)
	if body != nil {
		req.Body = io.NopCloser(body)
		if cb, ok := body.(*countingBody); ok {
			req.Body = cb
		}
	}
	req.ContentLength = length
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// TestLoginFormIsBounded: anyone may post to /ui/login, so its body is bounded (8 KiB) and read
// under the body budget before it is parsed; multipart forms, which Go's parser spills to
// temporary files, are refused before a byte of them is read.
func TestLoginFormIsBounded(t *testing.T) {
	s := New(memstore.New(10), fixedTriggers{}, metrics.New())
	s.SetAuth(&Auth{Readers: &senderauth.Policy{Tokens: [][]byte{[]byte("reader-token")}}})
	big := url.Values{"token": {strings.Repeat("x", maxLoginFormBytes)}}.Encode()
	for _, c := range []struct {
		name, contentType, body string
		length                  int64 // -1: unknown (chunked)
		want                    int
		wantRead                int64 // at most
	}{
		{"a token", "application/x-www-form-urlencoded", "token=reader-token&next=%2Fui%2Fevents", -1, http.StatusSeeOther, 1 << 10},
		{"past the bound, chunked", "application/x-www-form-urlencoded", big, -1, http.StatusRequestEntityTooLarge, maxLoginFormBytes + 1},
		{"past the bound, announced", "application/x-www-form-urlencoded", big, 1 << 30, http.StatusRequestEntityTooLarge, 0},
		{"multipart", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"token\"\r\n\r\nreader-token\r\n--x--\r\n", -1, http.StatusUnsupportedMediaType, 0},
		{"no content type", "", "token=reader-token", -1, http.StatusUnsupportedMediaType, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := &countingBody{r: strings.NewReader(c.body)}
			rec := serve(s, http.MethodPost, "/ui/login", c.contentType, body, c.length)
			if rec.Code != c.want || body.read.Load() > c.wantRead {
				t.Errorf("%d after reading %d bytes, want %d after at most %d\n%s", rec.Code, body.read.Load(), c.want, c.wantRead, rec.Body.String())
			}
			if c.want == http.StatusSeeOther && rec.Header().Get("Location") != "/ui/events" {
				t.Errorf("login went to %q", rec.Header().Get("Location"))
			}
			if used := s.BodyBytesInFlight(); used != 0 {
				t.Errorf("%d bytes still held of the body budget", used)
			}
		})
	}
}

// TestAdminBodiesShareABudget: what the admin listener reads counts against its body budget as
// it arrives; past it, 503 with Retry-After; a batch is refused by explain before it is read.
func TestAdminBodiesShareABudget(t *testing.T) {
	s := New(memstore.New(10), fixedTriggers{}, metrics.New())
	s.SetMaxBodyBytesInFlight(64 << 10)
	event := `{"specversion":"1.0","id":"1","source":"/s","type":"a","data":"` + strings.Repeat("x", 100<<10) + `"}`
	rec := serve(s, http.MethodPost, "/v1/brokers/ns/default/explain", "application/cloudevents+json", strings.NewReader(event), int64(len(event)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "maxBodyBytesInFlight") {
		t.Errorf("explain past the budget: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
	s.SetMaxBodyBytesInFlight(0) // the default: 64 MiB
	if rec = serve(s, http.MethodPost, "/v1/brokers/ns/default/explain", "application/cloudevents+json", strings.NewReader(event), int64(len(event))); rec.Code != 200 {
		t.Errorf("explain within the budget: %d %s", rec.Code, rec.Body.String())
	}
	batch := &countingBody{r: strings.NewReader("[" + event + "," + event + "]")}
	if rec = serve(s, http.MethodPost, "/v1/brokers/ns/default/explain", "application/cloudevents-batch+json", batch, -1); rec.Code != 400 || batch.read.Load() != 0 {
		t.Errorf("explain of a batch: %d after reading %d bytes, want 400 before reading it", rec.Code, batch.read.Load())
	}
	if used := s.BodyBytesInFlight(); used != 0 {
		t.Errorf("%d bytes still held of the body budget", used)
	}
}

type emptyArchive struct{}

func (emptyArchive) ReadArchive(context.Context, router.ArchiveQuery, func(router.ArchivedEvent) error) error {
	return nil
}

// TestDryRunTakesItsSlotFirst: a dry run past the two at once is refused before its candidate is
// read or compiled; it used to compile it first (8 candidates of 4 MiB at once: 3.3 GB).
func TestDryRunTakesItsSlotFirst(t *testing.T) {
	m := replay.New(replay.Options{Logger: zap.NewNop(),
		Reader:  func(router.BrokerRef) (router.ArchiveReader, error) { return emptyArchive{}, nil },
		Filters: func(router.BrokerRef) (map[string]filter.Filter, error) { return nil, nil }})
	defer m.Close()
	s := New(memstore.New(10), fixedTriggers{}, metrics.New())
	var loads atomic.Int32
	loading, release := make(chan struct{}, 8), make(chan struct{})
	s.SetReplays(m, func(name string, data []byte) (*config.Config, error) {
		loads.Add(1)
		loading <- struct{}{}
		<-release
		return config.Parse(name, data)
	})
	candidate := "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: ns}\n"
	path := "/v1/brokers/ns/default/replays?dryRun=true&from=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339))
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = serve(s, http.MethodPost, path, "application/yaml", strings.NewReader(candidate), int64(len(candidate))).Code
		}()
	}
	<-loading
	<-loading
	third := &countingBody{r: bytes.NewReader([]byte(candidate))}
	rec := serve(s, http.MethodPost, path, "application/yaml", third, int64(len(candidate)))
	if rec.Code != http.StatusTooManyRequests || third.read.Load() != 0 || loads.Load() != 2 {
		t.Errorf("third dry run at once: %d after reading %d bytes, %d candidates loaded; want 429, nothing read, 2 loaded\n%s", rec.Code, third.read.Load(), loads.Load(), rec.Body.String())
	}
	if rec = serve(s, http.MethodPost, path, "application/yaml", strings.NewReader(candidate), maxCandidateBytes+1); rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("a candidate announced past the bound: %d, want 413", rec.Code)
	}
	close(release)
	wg.Wait()
	if codes[0] != 200 || codes[1] != 200 {
		t.Errorf("the two dry runs within the bound: %v", codes)
	}
}

// TestCandidateReadsNoFiles: a dry run's candidate naming a host file (here as a JWT key) is
// loaded for its brokers and triggers only, so its answer cannot tell whether the file exists.
func TestCandidateReadsNoFiles(t *testing.T) {
	for _, file := range []string{"/etc/passwd", "/nonexistent/key.pem"} {
		doc := "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: c}\nspec:\n  ingress:\n    auth:\n    - brokers: [ns/default]\n      jwt: {publicKeyFile: " + file + ", audiences: [x]}\n" +
			"---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: ns}\n"
		cfg, err := config.LoadSources(config.Sources{Documents: []config.Document{{Name: "c.yaml", Data: []byte(doc)}}, RoutingOnly: true})
		if err != nil || len(cfg.Brokers) != 1 || len(cfg.Skipped) != 1 {
			t.Errorf("%s: %v (want the broker, the SwitchyardConfig left alone)", file, err)
		}
	}
}
