package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

type fixedTriggers []broker.TriggerStatus

func (f fixedTriggers) Triggers() []broker.TriggerStatus { return f }

func (f fixedTriggers) QueueDepths() []metrics.QueueDepth { return nil }

// Explain judges every event by one trigger, "t", passing type a.
func (f fixedTriggers) Explain(ref router.BrokerRef, e *event.Event) ([]broker.Verdict, error) {
	if ref.Name != "default" {
		return nil, router.ErrBrokerNotFound
	}
	ok, why := filter.Explain(filter.Exact(map[string]string{"type": "a"}), e)
	return []broker.Verdict{{Trigger: "t", Matches: ok, Why: why}}, nil
}

func (f fixedTriggers) Redrive(_ context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error) {
	if ref.Name != "t" {
		return 0, broker.ErrTriggerNotFound
	}
	return len(q.EventID), nil
}

// PauseTrigger and ResumeTrigger change the trigger's status in place (the slice's elements are
// shared, so Triggers shows the change), with the broker's rules: a trigger whose PausedBy is
// "manifest" stays paused, and refuses a resume.
func (f fixedTriggers) PauseTrigger(ref router.TriggerRef) error {
	t := f.find(ref)
	if t == nil {
		return fmt.Errorf("%w: %s", broker.ErrTriggerNotFound, ref)
	}
	if !t.Paused {
		t.Paused, t.PausedBy = true, "operator"
	}
	return nil
}

func (f fixedTriggers) ResumeTrigger(ref router.TriggerRef) error {
	t := f.find(ref)
	switch {
	case t == nil:
		return fmt.Errorf("%w: %s", broker.ErrTriggerNotFound, ref)
	case t.PausedBy == "manifest":
		return fmt.Errorf("%w: remove the switchyard.dev/paused annotation of trigger %s to resume it", broker.ErrPausedByManifest, ref)
	}
	t.Paused, t.PausedBy = false, ""
	return nil
}

func (f fixedTriggers) find(ref router.TriggerRef) *broker.TriggerStatus {
	for i := range f {
		if f[i].Namespace == ref.Namespace && f[i].Name == ref.Name {
			return &f[i]
		}
	}
	return nil
}

func TestAdminAPI(t *testing.T) {
	store := memstore.New(10)
	now := time.Now()
	store.Record(&router.Outcome{EventID: "e1", Trigger: router.TriggerRef{Namespace: "ns", Name: "t"}, Broker: router.BrokerRef{Namespace: "ns", Name: "b"},
		Status: router.StatusDeadLettered, Attempts: 3, LastCode: 503, Received: now.Add(-1500 * time.Microsecond), Finished: now})
	s := New(store, fixedTriggers{{Namespace: "ns", Name: "t", Delivered: 4}}, metrics.New())
	srv := httptest.NewServer(s)
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Errorf("readyz before SetReady: %d", code)
	}
	s.SetReady(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz after SetReady: %d", code)
	}
	code, body := get("/v1/events/e1")
	var ev struct {
		Outcomes []OutcomeJSON `json:"outcomes"`
	}
	if err := json.Unmarshal([]byte(body), &ev); code != 200 || err != nil || len(ev.Outcomes) != 1 {
		t.Fatalf("event: %d %s", code, body)
	}
	if o := ev.Outcomes[0]; o.Status != "dead-lettered" || o.Trigger != "ns/t" || o.LatencyMS != 1.5 || o.LastCode != 503 {
		t.Errorf("outcome %+v", o)
	}
	if code, body := get("/v1/events/nope"); code != 404 || !strings.Contains(body, "nope") {
		t.Errorf("unknown event: %d %s", code, body)
	}
	if code, body := get("/v1/triggers"); code != 200 || !strings.Contains(body, `"delivered": 4`) {
		t.Errorf("triggers: %d %s", code, body)
	}
	if code, body := get("/v1/triggers/ns/t/outcomes?failed=true"); code != 200 || !strings.Contains(body, `"e1"`) {
		t.Errorf("trigger outcomes: %d %s", code, body)
	}
	if code, _ := get("/v1/triggers/ns/t/outcomes?limit=0"); code != 400 {
		t.Errorf("limit=0: %d", code)
	}
	post := func(path string) (int, string) {
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post("/v1/triggers/ns/t/redrive?event=abc"); code != 200 || !strings.Contains(body, `"redriven": 3`) {
		t.Errorf("redrive: %d %s", code, body)
	}
	if code, _ := post("/v1/triggers/ns/nope/redrive"); code != 404 {
		t.Errorf("redrive of an unknown trigger: %d", code)
	}
	if code, _ := post("/v1/triggers/ns/t/redrive?since=yesterday"); code != 400 {
		t.Errorf("redrive with a bad since: %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("metrics: %d", code)
	}
}

func TestProfilingIsOptIn(t *testing.T) {
	s := New(memstore.New(10), fixedTriggers{}, metrics.New())
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/debug/pprof/goroutine?debug=1"); code != http.StatusNotFound {
		t.Errorf("profiles served without EnableProfiling: %d", code)
	}
	s.EnableProfiling()
	if code, body := get("/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Errorf("goroutine profile: %d %.80q", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusOK {
		t.Errorf("profile index: %d", code)
	}
}

func TestExplain(t *testing.T) {
	s := New(memstore.New(10), fixedTriggers{}, metrics.New())
	post := func(path, typ string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{}`))
		for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/s", "Ce-Type": typ, "Content-Type": "application/json"} {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if code, body := post("/v1/brokers/ns/default/explain", "b"); code != 200 || !strings.Contains(body, `"matched": 0`) || !strings.Contains(body, `exact: type is \"b\", not \"a\"`) {
		t.Errorf("explain: %d %s", code, body)
	}
	if code, body := post("/v1/brokers/ns/default/explain", "a"); code != 200 || !strings.Contains(body, `"matched": 1`) {
		t.Errorf("explain of a matching event: %d %s", code, body)
	}
	if code, _ := post("/v1/brokers/ns/nope/explain", "a"); code != http.StatusNotFound {
		t.Errorf("unknown broker: %d", code)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/brokers/ns/default/explain", strings.NewReader("not an event")))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("not an event: %d", rec.Code)
	}
}
