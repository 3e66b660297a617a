package admin

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// latencies counts n events of latency d.
func latencies(counts map[time.Duration]uint64) broker.LatencyCounts {
	var c broker.LatencyCounts
	for d, n := range counts {
		for i := 0; i < broker.LatencyBuckets; i++ {
			if d < broker.LatencyBucketBound(i) || i == broker.LatencyBuckets-1 {
				c[i] += n
				break
			}
		}
	}
	return c
}

// TestSeriesRatesAndLatency (issue #33): a chart point is the interval's rate and the latency
// quantiles of the events delivered in it, not since start; a broker's point sums its triggers.
func TestSeriesRatesAndLatency(t *testing.T) {
	ss := newSeries()
	t0 := time.Unix(1_000_000, 0)
	depths := func() []metrics.QueueDepth {
		return []metrics.QueueDepth{{Namespace: "ns", Broker: "default", Depth: 3, Unfinished: 4}}
	}
	// Before: 1,000 slow events delivered long ago.
	ss.sample(t0, []broker.TriggerStatus{
		{Namespace: "ns", Name: "a", Broker: "default", Delivered: 1000, Latency: latencies(map[time.Duration]uint64{2 * time.Second: 1000})},
		{Namespace: "ns", Name: "b", Broker: "default"},
	}, depths)
	if got := ss.trigger("ns/a"); len(got) != 0 {
		t.Fatalf("the first read is a baseline, not a point: %+v", got)
	}
	// In 4 s: a delivers 400 fast ones (98 % under 1 ms, 2 % at 20 ms), b fails 8.
	ss.sample(t0.Add(4*time.Second), []broker.TriggerStatus{
		{Namespace: "ns", Name: "a", Broker: "default", Delivered: 1400, InFlight: 2, LagRecords: 5,
			Latency: latencies(map[time.Duration]uint64{2 * time.Second: 1000, 700 * time.Microsecond: 392, 20 * time.Millisecond: 8})},
		{Namespace: "ns", Name: "b", Broker: "default", Failed: 6, DeadLettered: 2},
	}, depths)
	a := ss.trigger("ns/a")
	if len(a) != 1 || a[0].Delivered != 100 || a[0].Failed != 0 || a[0].Backlog != 7 {
		t.Fatalf("trigger a: %+v", a)
	}
	if a[0].P50 != time.Millisecond || a[0].P99 != 32*time.Millisecond {
		t.Errorf("trigger a's quantiles: p50 %s p99 %s, want 1ms and 32ms (the buckets of 0.7 ms and 20 ms, not the old 2 s)", a[0].P50, a[0].P99)
	}
	b := ss.broker("ns/default")
	if len(b) != 1 || b[0].Delivered != 100 || b[0].Failed != 2 || b[0].Backlog != 5+3+4 {
		t.Errorf("broker: %+v", b)
	}
	// A trigger that is gone loses its history; a recreated one starts from its new counters.
	ss.sample(t0.Add(8*time.Second), []broker.TriggerStatus{{Namespace: "ns", Name: "b", Broker: "default", Failed: 1}}, depths)
	if got := ss.trigger("ns/a"); got != nil {
		t.Errorf("a removed trigger's points: %+v", got)
	}
	if got := ss.trigger("ns/b"); len(got) != 2 || got[1].Failed != 0.25 {
		t.Errorf("b after its counters restarted: %+v", got)
	}
	// The ring keeps the last seriesPoints points, oldest first.
	for i := 0; i < seriesPoints+5; i++ {
		ss.sample(t0.Add(time.Duration(12+4*i)*time.Second), []broker.TriggerStatus{{Namespace: "ns", Name: "b", Broker: "default", Failed: 1}}, depths)
	}
	got := ss.trigger("ns/b")
	if len(got) != seriesPoints || !got[0].At.Before(got[len(got)-1].At) {
		t.Errorf("ring: %d points, first %s last %s", len(got), got[0].At, got[len(got)-1].At)
	}
	svg := string(chartSVG(got, rateLines, 640, 140, "events/s"))
	if strings.Count(svg, "<polyline") != 2 || !strings.Contains(svg, "failed/s") || !strings.Contains(svg, ">now<") {
		t.Errorf("chart: %s", svg)
	}
}

// TestConsoleTriage (issue #33): the front page's brokers with their backlog, a trigger's page
// with its filter and delivery settings and charts, the last error in the event log, and the
// header's search by event id.
func TestConsoleTriage(t *testing.T) {
	store := memstore.New(100)
	now := time.Now()
	o := failedOutcome("order-9", "orders", now)
	o.LastError = "HTTP 500: " + strings.Repeat("database is down ", 20)
	store.Record(o)
	routes := &depthRoutes{fixedTriggers: fixedTriggers{{Namespace: "ns", Name: "orders", Broker: "default", LagRecords: 40, TriggerSettings: broker.TriggerSettings{
		Filter:   `all: [exact: {type: "order.created"}, cesql: "subject LIKE 'eu-%'"]`,
		Delivery: broker.DeliverySettings{Retry: 5, BackoffPolicy: "linear", BackoffDelay: "200ms", Timeout: "2s", DeadLetterSink: "http://dls.ns.svc"},
	}}}}
	s := New(store, routes, metrics.New())
	s.series.sample(now.Add(-4*time.Second), routes.Triggers(), routes.QueueDepths)
	s.series.sample(now, routes.Triggers(), routes.QueueDepths)
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := &consoleClient{t: t, url: srv.URL}

	_, body := c.do("GET", "/ui/", nil, nil)
	for _, want := range []string{`<tr data-broker="ns/default">`, `<td class="n" data-field="queued">7</td>`, `<td class="n" data-field="lag">40</td>`,
		`href="/ui/triggers/ns/orders"`, `<svg class="chart"`} {
		if !strings.Contains(body, want) {
			t.Errorf("front page lacks %s:\n%s", want, body)
		}
	}
	resp, body := c.do("GET", "/ui/triggers/ns/orders", nil, nil)
	for _, want := range []string{`<td id="trigger-filter">all: [exact: {type: &#34;order.created&#34;}, cesql: &#34;subject LIKE &#39;eu-%&#39;&#34;]</td>`,
		"linear, delay 200ms", "2s per attempt", "http://dls.ns.svc", `id="chart-latency"`, "p99 ms"} {
		if resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Errorf("trigger page (%d) lacks %s:\n%s", resp.StatusCode, want, body)
		}
	}
	if resp, _ := c.do("GET", "/ui/triggers/ns/nope", nil, nil); resp.StatusCode != 404 {
		t.Errorf("unknown trigger: %d", resp.StatusCode)
	}
	_, body = c.do("GET", "/ui/events", nil, nil)
	if !strings.Contains(body, `<td class="error" title="HTTP 500: database is down`) || !strings.Contains(body, "database is down …") && !strings.Contains(body, "…</td>") {
		t.Errorf("event log: no last error, clipped:\n%s", body)
	}
	resp, _ = c.do("GET", "/ui/search?id="+url.QueryEscape(" order/9 "), nil, nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != 303 || loc != "/ui/events/order%2F9" {
		t.Errorf("search: %d %q", resp.StatusCode, loc)
	}
}

type depthRoutes struct{ fixedTriggers }

func (depthRoutes) QueueDepths() []metrics.QueueDepth {
	return []metrics.QueueDepth{{Namespace: "ns", Broker: "default", Depth: 7, Unfinished: -1}}
}
