package admin

import (
	"context"
	"fmt"
	"html/template"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// The console's charts: every seriesEvery the sampler reads each trigger's counters and keeps,
// per trigger and per broker, the rates and latencies of that interval for the last seriesPoints
// intervals (10 minutes). It reads what GET /v1/triggers reads, so the charts add nothing to the
// delivery path but a latency bucket's atomic add per delivered event.
const (
	seriesEvery  = 4 * time.Second
	seriesPoints = 150
)

// point is one interval of a trigger's or a broker's activity.
type point struct {
	At                time.Time
	Delivered, Failed float64 // per second
	P50, P99          time.Duration
	Backlog           int64 // in flight and lag (triggers), queued, unfinished and lag (brokers)
}

// ring is a fixed number of the latest points, oldest first.
type ring struct {
	points []point
	next   int
	full   bool
}

func (r *ring) add(p point) {
	if r.points == nil {
		r.points = make([]point, seriesPoints)
	}
	r.points[r.next] = p
	r.next = (r.next + 1) % seriesPoints
	r.full = r.full || r.next == 0
}

func (r *ring) all() []point {
	if !r.full {
		return append([]point(nil), r.points[:r.next]...)
	}
	return append(append([]point(nil), r.points[r.next:]...), r.points[:r.next]...)
}

// counters is what a trigger had counted at the previous read.
type counters struct {
	delivered, failed uint64
	latency           broker.LatencyCounts
}

type series struct {
	mu       sync.Mutex
	at       time.Time
	last     map[string]counters
	triggers map[string]*ring
	brokers  map[string]*ring
}

func newSeries() *series {
	return &series{last: map[string]counters{}, triggers: map[string]*ring{}, brokers: map[string]*ring{}}
}

// StartSampling keeps the console's charts until ctx ends.
func (s *Server) StartSampling(ctx context.Context) {
	go func() {
		t := time.NewTicker(seriesEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				s.series.sample(now, s.routes.Triggers(), s.routes.QueueDepths)
			}
		}
	}()
}

// sample turns the counters read now into one point per trigger and per broker. Triggers and
// brokers that are gone lose their history.
func (ss *series) sample(now time.Time, ts []broker.TriggerStatus, depths func() []metrics.QueueDepth) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	secs := now.Sub(ss.at).Seconds()
	first := ss.at.IsZero()
	ss.at = now
	type agg struct {
		p       point
		latency broker.LatencyCounts
	}
	byBroker := map[string]*agg{}
	seen := map[string]bool{}
	for i := range ts {
		t := &ts[i]
		key := t.Namespace + "/" + t.Name
		bkey := t.Namespace + "/" + t.Broker
		seen[key] = true
		prev, had := ss.last[key]
		failed := t.Failed + t.DeadLettered
		ss.last[key] = counters{delivered: t.Delivered, failed: failed, latency: t.Latency}
		a := byBroker[bkey]
		if a == nil {
			a = &agg{p: point{At: now}}
			byBroker[bkey] = a
		}
		a.p.Backlog += t.LagRecords
		if first || !had {
			continue // the first read of a trigger is its baseline
		}
		p := point{At: now, Backlog: t.InFlight + t.LagRecords}
		p.Delivered = float64(since(t.Delivered, prev.delivered)) / secs
		p.Failed = float64(since(failed, prev.failed)) / secs
		d := t.Latency.Sub(&prev.latency)
		p.P50, p.P99 = d.Quantile(0.5), d.Quantile(0.99)
		r := ss.triggers[key]
		if r == nil {
			r = &ring{}
			ss.triggers[key] = r
		}
		r.add(p)
		a.p.Delivered += p.Delivered
		a.p.Failed += p.Failed
		a.latency.Add(&d)
	}
	for key := range ss.last {
		if !seen[key] {
			delete(ss.last, key)
			delete(ss.triggers, key)
		}
	}
	if first {
		return
	}
	for _, d := range depths() {
		key := d.Namespace + "/" + d.Broker
		a := byBroker[key]
		if a == nil {
			a = &agg{p: point{At: now}}
			byBroker[key] = a
		}
		a.p.Backlog += int64(d.Depth + max(d.Unfinished, 0))
	}
	for key, a := range byBroker {
		a.p.P50, a.p.P99 = a.latency.Quantile(0.5), a.latency.Quantile(0.99)
		r := ss.brokers[key]
		if r == nil {
			r = &ring{}
			ss.brokers[key] = r
		}
		r.add(a.p)
	}
	for key := range ss.brokers {
		if byBroker[key] == nil {
			delete(ss.brokers, key)
		}
	}
}

func since(now, before uint64) uint64 {
	if now < before { // the trigger was recreated: its counters started again
		return now
	}
	return now - before
}

func (ss *series) trigger(key string) []point { return ss.get(ss.triggers, key) }
func (ss *series) broker(key string) []point  { return ss.get(ss.brokers, key) }

func (ss *series) get(m map[string]*ring, key string) []point {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if r := m[key]; r != nil {
		return r.all()
	}
	return nil
}

// A chart is drawn on the server as inline SVG: no script or library is needed to read it, and
// the page's refresh redraws it. Each line is one field of the points.
type line struct {
	Name  string
	Class string
	Value func(point) float64
}

var (
	rateLines = []line{
		{"delivered/s", "delivered", func(p point) float64 { return p.Delivered }},
		{"failed/s", "failed", func(p point) float64 { return p.Failed }},
	}
	latencyLines = []line{
		{"p50 ms", "p50", func(p point) float64 { return ms(p.P50) }},
		{"p99 ms", "p99", func(p point) float64 { return ms(p.P99) }},
	}
	backlogLines = []line{{"backlog", "backlog", func(p point) float64 { return float64(p.Backlog) }}}
)

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// chartSVG draws points as a line chart w×h pixels, with its scale and legend; small charts
// (sparklines) have neither.
func chartSVG(points []point, lines []line, w, h int, title string) template.HTML {
	small := h < 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`, w, h, w, h, template.HTMLEscapeString(title))
	top, bottom, left := 14, h-14, 4
	if small {
		top, bottom = 2, h-2
	}
	peak := 0.0
	for _, p := range points {
		for _, l := range lines {
			peak = max(peak, l.Value(p))
		}
	}
	if !small {
		fmt.Fprintf(&b, `<text x="%d" y="10" class="scale">%s %s</text>`, left, template.HTMLEscapeString(title), scaleLabel(peak))
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="scale">%s</text><text x="%d" y="%d" class="scale" text-anchor="end">now</text>`,
			left, h-2, agoLabel(points), w-4, h-2)
		x := w - 4
		for i := len(lines) - 1; i >= 0; i-- {
			fmt.Fprintf(&b, `<text x="%d" y="10" class="legend %s" text-anchor="end">%s</text>`, x, lines[i].Class, lines[i].Name)
			x -= 8*len(lines[i].Name) + 12
		}
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" class="axis"/>`, left, bottom, w-4, bottom)
	if len(points) > 1 {
		span := float64(w - 4 - left)
		scale := 1.0
		if peak > 0 {
			scale = float64(bottom-top) / peak
		}
		for _, l := range lines {
			fmt.Fprintf(&b, `<polyline class="%s" points="`, l.Class)
			for i, p := range points {
				// Oldest at the left edge, newest at the right: the span drawn is what was
				// measured, up to the window (the label on the left says how long ago).
				x := float64(left) + span*float64(i)/float64(len(points)-1)
				fmt.Fprintf(&b, "%.1f,%.1f ", x, float64(bottom)-l.Value(p)*scale)
			}
			b.WriteString(`"/>`)
		}
	} else if !small {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="scale">no interval measured yet: a point every %s</text>`, left+4, (top+bottom)/2, seriesEvery)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // every text in it is escaped above
}

func scaleLabel(peak float64) string {
	switch {
	case peak == 0:
		return "(max 0)"
	case peak >= 100:
		return fmt.Sprintf("(max %.0f)", peak)
	default:
		return fmt.Sprintf("(max %.3g)", peak)
	}
}

func agoLabel(points []point) string {
	if len(points) == 0 {
		return ""
	}
	return fmt.Sprintf("%s ago", time.Since(points[0].At).Round(time.Second))
}
