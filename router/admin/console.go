package admin

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/cehttp"
)

// The web console (docs/console.md): server-rendered pages under /ui/ that read what the JSON API
// reads and act through the same calls, usable without JavaScript; a small vendored script adds
// live counters and the live tail. It sits behind the admin API's authentication: a browser
// cannot send a bearer token by itself, so the login page checks one and keeps it in an
// HttpOnly, SameSite=Strict cookie that authorize reads like the header.

//go:embed ui
var consoleFiles embed.FS

// sessionCookie holds the token the console's login accepted.
const sessionCookie = "switchyard_admin"

// sessionLifetime is how long a console login lasts.
const sessionLifetime = 12 * time.Hour

// maxPayloadShown caps the event data a console page shows.
const maxPayloadShown = 64 << 10

type role int

const (
	roleNone role = iota
	roleReader
	roleOperator
)

type roleKey struct{}

func withRole(r *http.Request, ro role) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), roleKey{}, ro))
}

func roleOf(r *http.Request) role {
	ro, _ := r.Context().Value(roleKey{}).(role)
	return ro
}

func inConsole(path string) bool { return path == "/ui" || strings.HasPrefix(path, "/ui/") }

// SetTraceURL makes the console link trace ids to a trace viewer: u with {traceId} replaced
// (e.g. http://jaeger:16686/trace/{traceId}); "" shows the ids alone.
func (s *Server) SetTraceURL(u string) { s.traceURL.Store(&u) }

func (s *Server) routeConsole() {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05.000Z")
		},
		"path":   url.PathEscape,
		"query":  url.QueryEscape,
		"trace":  s.traceLink,
		"plural": plural,
		"ms":     func(d time.Duration) string { return fmt.Sprintf("%.1f", ms(d)) },
		"rate":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
		"clip":   clip,
	}
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(consoleFiles, "ui/layout.html"))
	s.pages = map[string]*template.Template{}
	for _, name := range []string{"triggers", "trigger", "events", "event", "explain", "tail", "confirm", "login", "message"} {
		s.pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(consoleFiles, "ui/"+name+".html"))
	}
	static, _ := fs.Sub(consoleFiles, "ui/static")
	s.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /ui/{$}", s.consoleTriggers)
	s.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ui/", http.StatusMovedPermanently) })
	s.mux.HandleFunc("GET /ui/events", s.consoleEvents)
	s.mux.HandleFunc("GET /ui/search", s.consoleSearch)
	s.mux.HandleFunc("GET /ui/triggers/{ns}/{name}", s.consoleTrigger)
	s.mux.HandleFunc("GET /ui/events/{id}", s.consoleEvent)
	s.mux.HandleFunc("POST /ui/events/{id}/redrive", s.consoleRedriveEvent)
	s.mux.HandleFunc("POST /ui/redrive", s.consoleRedrive)
	s.mux.HandleFunc("POST /ui/triggers/{ns}/{name}/pause", s.consolePause(true))
	s.mux.HandleFunc("POST /ui/triggers/{ns}/{name}/resume", s.consolePause(false))
	s.mux.HandleFunc("GET /ui/explain", s.consoleExplain)
	s.mux.HandleFunc("POST /ui/explain", s.consoleExplain)
	s.mux.HandleFunc("GET /ui/tail", s.consoleTail)
	s.mux.HandleFunc("GET /ui/login", s.consoleLogin)
	s.mux.HandleFunc("POST /ui/login", s.consoleLogin)
	s.mux.HandleFunc("POST /ui/logout", s.consoleLogout)
}

// view is what every console page is rendered with.
type view struct {
	Title    string
	Nav      string
	Operator bool
	AuthOn   bool
	Config   *ConfigState
	Flash    string
	Error    string
	Data     any
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, page string, v view) {
	v.Operator = roleOf(r) == roleOperator
	v.AuthOn = s.auth.Load() != nil
	v.Config = s.config.Load()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	// Only our own script and style run, nothing frames the console, forms post only to it.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(code)
	_ = s.pages[page].ExecuteTemplate(w, "layout.html", v)
}

// consoleRefusal answers a refused console request: a reader asked to act, or credentials are
// missing or wrong. A page load without credentials goes to the login page.
func (s *Server) consoleRefusal(r *http.Request) func(http.ResponseWriter, string, int) {
	return func(w http.ResponseWriter, msg string, code int) {
		if code == http.StatusUnauthorized && r.Method == http.MethodGet {
			http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		s.render(w, withRole(r, roleNone), code, "message", view{Title: http.StatusText(code), Error: msg})
	}
}

func (s *Server) traceLink(id string) string {
	if u := s.traceURL.Load(); u != nil && *u != "" && id != "" {
		return strings.ReplaceAll(*u, "{traceId}", url.PathEscape(id))
	}
	return ""
}

// triggersPage is the console's front page: every broker with its backlog, then every trigger.
type triggersPage struct {
	Brokers  []brokerRow
	Triggers []triggerRow
}

type brokerRow struct {
	Namespace, Name string
	Triggers        int
	// Queued is the broker's dispatch queue; Unfinished its accepted events not yet final at
	// every trigger (in memory; -1 on a Kafka-class broker, whose backlog is its triggers' lag).
	Queued, Unfinished int
	Lag                int64
	Last               point
	Chart              template.HTML
}

type triggerRow struct {
	broker.TriggerStatus
	Chart template.HTML
}

func (s *Server) consoleTriggers(w http.ResponseWriter, r *http.Request) {
	ts := s.routes.Triggers()
	page := triggersPage{Triggers: make([]triggerRow, len(ts))}
	rows := map[string]*brokerRow{}
	for _, d := range s.routes.QueueDepths() {
		rows[d.Namespace+"/"+d.Broker] = &brokerRow{Namespace: d.Namespace, Name: d.Broker, Queued: d.Depth, Unfinished: d.Unfinished}
	}
	for i, t := range ts {
		page.Triggers[i] = triggerRow{TriggerStatus: t, Chart: chartSVG(s.series.trigger(t.Namespace+"/"+t.Name), rateLines, 160, 28, "events/s")}
		if b := rows[t.Namespace+"/"+t.Broker]; b != nil {
			b.Triggers++
			b.Lag += t.LagRecords
		}
	}
	for _, b := range rows {
		points := s.series.broker(b.Namespace + "/" + b.Name)
		if len(points) > 0 {
			b.Last = points[len(points)-1]
		}
		b.Chart = chartSVG(points, rateLines, 160, 28, "events/s")
		page.Brokers = append(page.Brokers, *b)
	}
	sort.Slice(page.Brokers, func(i, j int) bool {
		x, y := page.Brokers[i], page.Brokers[j]
		return x.Namespace+"/"+x.Name < y.Namespace+"/"+y.Name
	})
	v := view{Title: "Triggers", Nav: "triggers", Data: page}
	qs := r.URL.Query()
	if t := qs.Get("paused"); t != "" {
		v.Flash = fmt.Sprintf("%s is paused: its deliveries are held until it is resumed (or this process restarts).", t)
	} else if t := qs.Get("resumed"); t != "" {
		v.Flash = fmt.Sprintf("%s is resumed: the events held for it are delivered, then the new ones.", t)
	}
	s.render(w, r, http.StatusOK, "triggers", v)
}

// triggerPage is one trigger: its settings, counters and charts.
type triggerPage struct {
	broker.TriggerStatus
	Rate, Latency, Backlog template.HTML
	Last                   point
	// Latest is the last interval with deliveries, for their latency.
	Latest point
	Every  time.Duration
}

func (s *Server) consoleTrigger(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	for _, t := range s.routes.Triggers() {
		if t.Namespace != ns || t.Name != name {
			continue
		}
		points := s.series.trigger(ns + "/" + name)
		p := triggerPage{TriggerStatus: t, Every: seriesEvery,
			Rate:    chartSVG(points, rateLines, 640, 140, "events/s"),
			Latency: chartSVG(points, latencyLines, 640, 140, "latency ms"),
			Backlog: chartSVG(points, backlogLines, 640, 100, "in flight and lag"),
		}
		if len(points) > 0 {
			p.Last = points[len(points)-1]
		}
		for i := len(points) - 1; i >= 0; i-- {
			if points[i].Delivered > 0 {
				p.Latest = points[i]
				break
			}
		}
		s.render(w, r, http.StatusOK, "trigger", view{Title: "Trigger " + ns + "/" + name, Nav: "triggers", Data: p})
		return
	}
	s.render(w, r, http.StatusNotFound, "message", view{Title: "Not found", Error: fmt.Sprintf("No trigger %s/%s is configured.", ns, name)})
}

// consoleSearch goes to the page of the event whose id was typed in the header's search box.
func (s *Server) consoleSearch(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		http.Redirect(w, r, "/ui/events", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/ui/events/"+url.PathEscape(id), http.StatusSeeOther)
}

// eventsPage is the event log: the filter as given, and one page of outcomes.
type eventsPage struct {
	Form     url.Values
	Filter   string
	Statuses []string
	Outcomes []OutcomeJSON
	Next     string
}

var statuses = []string{"", string(router.StatusDelivered), string(router.StatusFailed), string(router.StatusDeadLettered), string(router.StatusReplyFailed), string(router.StatusUnmatched)}

// formFilter is parseEventFilter over form values, with the empty fields a browser sends for
// untouched inputs dropped.
func formFilter(in url.Values) (eventFilter, url.Values, error) {
	kept := url.Values{}
	for k, vs := range in {
		if len(vs) > 0 && strings.TrimSpace(vs[0]) != "" {
			kept.Set(k, strings.TrimSpace(vs[0]))
		}
	}
	f, err := parseEventFilter(kept)
	return f, kept, err
}

func (s *Server) consoleEvents(w http.ResponseWriter, r *http.Request) {
	f, form, err := formFilter(r.URL.Query())
	p := eventsPage{Form: form, Statuses: statuses}
	v := view{Title: "Events", Nav: "events", Data: &p}
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "events", v)
		return
	}
	p.Filter = f.values().Encode()
	q := f.query()
	q.Limit, q.PageToken = 50, form.Get("page")
	outcomes, next, err := s.results.TriggerOutcomes(r.Context(), q)
	if err != nil {
		v.Error = "reading outcomes: " + err.Error()
		s.render(w, r, listErrorCode(err, q), "events", v)
		return
	}
	for i := range outcomes {
		p.Outcomes = append(p.Outcomes, toJSON(&outcomes[i]))
	}
	if next != "" {
		more := f.values()
		more.Set("page", next)
		p.Next = "/ui/events?" + more.Encode()
	}
	s.render(w, r, http.StatusOK, "events", v)
}

// eventPage is one event: what is known of it, and every trigger's outcome.
type eventPage struct {
	ID         string
	Attributes [][2]string
	Payload    string
	PayloadFmt string
	Kept       bool
	Outcomes   []eventOutcome
	Explain    string
	// Path is where the event went and what it caused (path.go).
	Path *PathNode
}

// eventOutcome is one row of an event's page; Redrivable marks a trigger's newest outcome when it
// is a failure (older rows are history: a redrive re-sends by the newest).
type eventOutcome struct {
	OutcomeJSON
	Redrivable bool
}

func (s *Server) consoleEvent(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	p := eventPage{ID: id}
	v := view{Title: "Event " + id, Nav: "events", Data: &p}
	if n := r.URL.Query().Get("redriven"); n != "" {
		trigger := r.URL.Query().Get("trigger")
		if count, _ := strconv.Atoi(n); count > 0 {
			v.Flash = fmt.Sprintf("Sent again to %s: its new outcome shows here once final.", trigger)
		} else {
			v.Flash = fmt.Sprintf("Nothing sent to %s: its latest outcome there is not a failure, its data was not kept, or a redrive of it is under way.", trigger)
		}
	}
	outcomes, err := s.results.EventOutcomes(r.Context(), id)
	if err != nil {
		v.Error = "reading outcomes: " + err.Error()
		s.render(w, r, http.StatusServiceUnavailable, "event", v)
		return
	}
	if len(outcomes) == 0 {
		v.Error = "no outcome recorded for event " + strconv.Quote(id) + ": not final yet, never received, forgotten, or one of the unmatched events past the 100 a second per broker that are counted but not recorded."
		s.render(w, r, http.StatusNotFound, "event", v)
		return
	}
	sort.SliceStable(outcomes, func(i, j int) bool { return outcomes[i].Finished.After(outcomes[j].Finished) })
	var kept *event.Event
	newest := map[router.TriggerRef]bool{}
	for i := range outcomes {
		o := &outcomes[i]
		p.Outcomes = append(p.Outcomes, eventOutcome{OutcomeJSON: toJSON(o), Redrivable: !newest[o.Trigger] && o.Status.Failed()})
		newest[o.Trigger] = true
		if kept == nil && outcomes[i].Event != nil {
			kept = outcomes[i].Event
		}
	}
	p.Path = s.pathFrom(r.Context(), id, outcomes)
	first := &outcomes[0]
	p.Explain = "/ui/explain?event=" + url.QueryEscape(id) + "&broker=" + url.QueryEscape(first.Broker.String())
	if kept == nil {
		p.Attributes = [][2]string{{"id", id}, {"source", first.Source}, {"type", first.Type}}
	} else {
		p.Kept = true
		p.Attributes, p.Payload, p.PayloadFmt = describe(kept)
	}
	s.render(w, r, http.StatusOK, "event", v)
}

// describe lists e's attributes and extensions, and its data as text (or base64), capped.
func describe(e *event.Event) (attrs [][2]string, payload, format string) {
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, [2]string{k, v})
		}
	}
	add("specversion", e.SpecVersion())
	add("id", e.ID())
	add("source", e.Source())
	add("type", e.Type())
	add("subject", e.Subject())
	if !e.Time().IsZero() {
		add("time", e.Time().UTC().Format(time.RFC3339Nano))
	}
	add("datacontenttype", e.DataContentType())
	add("dataschema", e.DataSchema())
	exts := e.Extensions()
	names := make([]string, 0, len(exts))
	for k := range exts {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		add(k, fmt.Sprint(exts[k]))
	}
	data := e.Data()
	format = fmt.Sprintf("%d bytes", len(data))
	shown := data
	if len(shown) > maxPayloadShown {
		shown = shown[:maxPayloadShown]
		format += fmt.Sprintf(", the first %d shown", maxPayloadShown)
	}
	if utf8.Valid(shown) {
		return attrs, string(shown), format
	}
	return attrs, base64.StdEncoding.EncodeToString(shown), format + ", binary: base64"
}

// clip shortens a long text (a subscriber's error) for a table cell; the full text is in the
// cell's title and on the event's page.
func clip(s string) string {
	const most = 140
	if utf8.RuneCountInString(s) <= most {
		return s
	}
	r := []rune(s)
	return string(r[:most]) + "…"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// consoleRedriveEvent redrives one event to one trigger (the event page's button).
func (s *Server) consoleRedriveEvent(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, maxFormBytes) {
		return
	}
	id := r.PathValue("id")
	f, _, err := formFilter(url.Values{"trigger": {r.PostFormValue("trigger")}})
	if err == nil && f.Trigger == (router.TriggerRef{}) {
		err = errors.New("which trigger: the form names none")
	}
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "message", view{Title: "Redrive", Error: err.Error()})
		return
	}
	rep, err := s.redriveMatching(r.Context(), f, id, false)
	if err != nil {
		s.render(w, r, redriveErrorCode(err), "message", view{Title: "Redrive", Error: "redrive: " + err.Error()})
		return
	}
	http.Redirect(w, r, fmt.Sprintf("/ui/events/%s?redriven=%d&trigger=%s", url.PathEscape(id), rep.Total, url.QueryEscape(f.Trigger.String())), http.StatusSeeOther)
}

// confirmPage asks before a redrive by filter, with the count of what it would send, and then
// reports what it sent.
type confirmPage struct {
	Done   bool
	Form   url.Values
	Filter string
	Back   string
	Report RedriveReport
}

// consoleRedrive is redrive by filter: the first post (from the event log) counts what matches
// and asks; the post of that page, with confirm set, redrives.
func (s *Server) consoleRedrive(w http.ResponseWriter, r *http.Request) {
	if !s.readForm(w, r, maxFormBytes) {
		return
	}
	in := url.Values{}
	for _, k := range []string{"trigger", "broker", "status", "type", "source", "since", "until"} {
		in.Set(k, r.PostForm.Get(k))
	}
	f, form, err := formFilter(in)
	if err != nil {
		s.render(w, r, http.StatusBadRequest, "message", view{Title: "Redrive", Error: err.Error()})
		return
	}
	confirmed := r.PostForm.Get("confirm") != ""
	p := confirmPage{Done: confirmed, Form: form, Filter: f.describe(), Back: "/ui/events?" + f.values().Encode()}
	v := view{Title: "Redrive failed events", Nav: "events", Data: &p}
	p.Report, err = s.redriveMatching(r.Context(), f, "", !confirmed)
	if err != nil {
		v.Error = "redrive: " + strings.TrimPrefix(err.Error(), errBadRedrive.Error()+": ")
		s.render(w, r, redriveErrorCode(err), "confirm", v)
		return
	}
	s.render(w, r, http.StatusOK, "confirm", v)
}

// explainPage is the filter playground: an event (JSON) judged by a broker's triggers.
type explainPage struct {
	Brokers  []string
	Broker   string
	Event    string
	Judged   bool
	Matched  int
	Verdicts []broker.Verdict
}

const sampleEvent = `{
  "specversion": "1.0",
  "id": "example-1",
  "source": "/example",
  "type": "com.example.order.created",
  "datacontenttype": "application/json",
  "data": {"order": {"id": 42}}
}`

func (s *Server) consoleExplain(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && !s.readForm(w, r, maxExplainBytes+maxFormBytes) { // as the API's explain, url-encoded
		return
	}
	p := explainPage{Event: sampleEvent, Broker: r.FormValue("broker")}
	v := view{Title: "Explain", Nav: "explain", Data: &p}
	seen := map[string]bool{}
	for _, t := range s.routes.Triggers() {
		if b := t.Namespace + "/" + t.Broker; !seen[b] {
			seen[b] = true
			p.Brokers = append(p.Brokers, b)
		}
	}
	sort.Strings(p.Brokers)
	if p.Broker == "" && len(p.Brokers) > 0 {
		p.Broker = p.Brokers[0]
	}
	if r.Method == http.MethodGet {
		if id := r.FormValue("event"); id != "" {
			p.Event = s.storedEventJSON(r.Context(), id, &v)
		}
		s.render(w, r, http.StatusOK, "explain", v)
		return
	}
	p.Event = r.PostFormValue("event")
	ref, ok := router.ParseRef(p.Broker)
	if !ok {
		v.Error = "broker: want NAMESPACE/NAME"
		s.render(w, r, http.StatusBadRequest, "explain", v)
		return
	}
	events, err := cehttp.Decode(http.Header{"Content-Type": {"application/cloudevents+json"}}, []byte(p.Event))
	if err == nil && len(events) != 1 {
		err = fmt.Errorf("one event, not %d", len(events))
	}
	if err != nil {
		v.Error = "the event must be one CloudEvent in JSON (structured mode): " + err.Error()
		s.render(w, r, http.StatusBadRequest, "explain", v)
		return
	}
	verdicts, err := s.routes.Explain(ref, events[0])
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusNotFound, "explain", v)
		return
	}
	p.Judged, p.Verdicts = true, verdicts
	for _, vd := range verdicts {
		if vd.Matches {
			p.Matched++
		}
	}
	s.render(w, r, http.StatusOK, "explain", v)
}

// storedEventJSON is event id as the playground's starting point: the event itself when a failed
// outcome kept it, else the attributes every outcome records.
func (s *Server) storedEventJSON(ctx context.Context, id string, v *view) string {
	outcomes, err := s.results.EventOutcomes(ctx, id)
	if err != nil || len(outcomes) == 0 {
		v.Error = "event " + strconv.Quote(id) + " has no recorded outcome: paste it below"
		return sampleEvent
	}
	for i := range outcomes {
		if e := outcomes[i].Event; e != nil {
			if b, err := e.MarshalJSON(); err == nil {
				return string(b)
			}
		}
	}
	for i := range outcomes {
		if e := outcomes[i].Attributes; e != nil {
			if b, err := e.MarshalJSON(); err == nil {
				v.Flash = "The event's attributes as it arrived (it was delivered, so its data was not kept: no filter reads data)."
				return string(b)
			}
		}
	}
	o := &outcomes[0]
	v.Flash = "Only the id, source and type of this event are recorded (this result store keeps no attributes of delivered events): add the extensions and other attributes your filters read, or the verdict may differ from what happened."
	e := event.New()
	e.SetID(o.EventID)
	e.SetSource(o.Source)
	e.SetType(o.Type)
	b, _ := e.MarshalJSON()
	return string(b)
}

// tailPage is the live tail: the filter, and the stream's address.
type tailPage struct {
	Form     url.Values
	Statuses []string
	Stream   string
}

func (s *Server) consoleTail(w http.ResponseWriter, r *http.Request) {
	f, form, err := formFilter(r.URL.Query())
	p := tailPage{Form: form, Statuses: statuses}
	v := view{Title: "Live tail", Nav: "tail", Data: &p}
	if err != nil {
		v.Error = err.Error()
		s.render(w, r, http.StatusBadRequest, "tail", v)
		return
	}
	p.Stream = "/v1/tail?" + f.values().Encode()
	s.render(w, r, http.StatusOK, "tail", v)
}

// loginPage takes a reader's or operator's token.
type loginPage struct{ Next string }

func (s *Server) consoleLogin(w http.ResponseWriter, r *http.Request) {
	// Anyone may post here: the form is bounded and read before anything looks at it.
	if r.Method == http.MethodPost && !s.readForm(w, r, maxLoginFormBytes) {
		return
	}
	next := consoleNext(r.FormValue("next"))
	p := loginPage{Next: next}
	v := view{Title: "Log in", Data: &p}
	a := s.auth.Load()
	if a == nil {
		http.Redirect(w, r, next, http.StatusSeeOther) // nothing to log in to
		return
	}
	if r.Method == http.MethodGet {
		s.render(w, r, http.StatusOK, "login", v)
		return
	}
	token := strings.TrimSpace(r.PostFormValue("token"))
	h := http.Header{"Authorization": {"Bearer " + token}}
	if token == "" || verifyRole(a.Operators, h).Status != 0 && verifyRole(a.Readers, h).Status != 0 {
		v.Error = "that token is neither a reader's nor an operator's (spec.admin.auth)"
		s.render(w, r, http.StatusUnauthorized, "login", v)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: token, Path: "/", MaxAge: int(sessionLifetime / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// consoleNext is where a login goes back to: next when it is a path of the console, else /ui/,
// so that the login page is never an open redirect. Refused: a scheme, host or user; a fragment
// (http.Redirect cleans what precedes the query as a path, "/ui/#/../../v1/triggers" to
// "/v1/triggers"); a backslash a browser would read as a slash; control characters; a path that
// is not already clean, "." and ".." segments included, also percent-encoded ("%2e%2e", "..%2f").
// What is returned is next re-encoded from its parsed parts, so that nothing cleans it further.
func consoleNext(next string) string {
	const home = "/ui/"
	if next == "" || strings.ContainsAny(next, "#\\") || strings.IndexFunc(next, func(c rune) bool { return c < 0x20 || c == 0x7f }) >= 0 {
		return home
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return home
	}
	p := u.Path // decoded: "%2e%2e" is ".." here
	if p != "/ui" && !strings.HasPrefix(p, home) {
		return home
	}
	for _, seg := range strings.Split(p, "/")[1:] {
		if seg == "." || seg == ".." {
			return home
		}
	}
	raw := u.EscapedPath()
	if clean := path.Clean(raw); clean != raw && clean+"/" != raw {
		return home // "//", or a dot segment only its escaped form shows
	}
	if u.RawQuery != "" {
		raw += "?" + u.RawQuery
	}
	return raw
}

// Bounds of the console's posted forms, read under the admin listener's body budget before they
// are parsed: the login's token and next, and a redrive's or explain's fields.
const (
	maxLoginFormBytes = 8 << 10
	maxFormBytes      = 64 << 10
)

// readForm reads r's form, at most limit bytes under the body budget, and parses it into r.Form
// and r.PostForm; r.Body is left empty, so nothing parses it again. Only
// application/x-www-form-urlencoded is read (what the console's forms send): multipart/form-data
// is refused with 415 before a byte of it is read, since Go's multipart parser writes large parts
// to temporary files. It answers and reports false when it cannot.
func (s *Server) readForm(w http.ResponseWriter, r *http.Request, limit int64) bool {
	refuse := func(msg string, code int) bool {
		s.render(w, r, code, "message", view{Title: http.StatusText(code), Error: msg})
		return false
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return refuse("the console's forms are sent as application/x-www-form-urlencoded; "+strconv.Quote(mt)+" is not read", http.StatusUnsupportedMediaType)
	}
	body, berr := s.bodies.Read(r, limit)
	if berr != nil {
		if berr.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		return refuse("reading the form: "+berr.Msg, berr.Status)
	}
	defer body.Release()
	posted, err := url.ParseQuery(string(body.Data))
	if err != nil {
		return refuse("reading the form: "+err.Error(), http.StatusBadRequest)
	}
	r.Body = http.NoBody
	r.PostForm = posted
	r.Form = url.Values{}
	for k, vs := range posted {
		r.Form[k] = append(r.Form[k], vs...)
	}
	for k, vs := range r.URL.Query() {
		r.Form[k] = append(r.Form[k], vs...)
	}
	return true
}

// consoleLogout reads no body: the cookie it clears is all it needs.
func (s *Server) consoleLogout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
}
