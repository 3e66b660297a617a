// Package admin serves the admin listener: health and readiness probes, Prometheus metrics, and the
// read API that answers "where did my event go".
//
//	GET /healthz                              200 while the process runs
//	GET /readyz                               200 once config is loaded and listeners are up; 503 when draining;
//	                                          the body says when the last configuration change was rejected
//	GET /metrics                              Prometheus text format
//	GET /v1/events/{id}                       every trigger's outcome for the event
//	GET /v1/events                            outcomes, newest first, of every trigger or ?trigger=NS/NAME,
//	                                          filtered by broker=, status=, type=, source=, since=, until= (&limit=&page=)
//	GET /v1/config                            the configuration served: when applied, the last change refused and why
//	GET /v1/triggers                          every trigger with its counters
//	GET /v1/triggers/{ns}/{name}/outcomes     a trigger's outcomes, newest first (?failed=true&limit=&page=)
//	POST /v1/triggers/{ns}/{name}/redrive     re-queue failed events to the trigger (?event=ID or ?since=RFC3339)
//	POST /v1/triggers/{ns}/{name}/pause       hold the trigger's deliveries (until resumed or the process restarts)
//	POST /v1/triggers/{ns}/{name}/resume      end an operator's pause (409 while the trigger's manifest pauses it)
//	POST /v1/brokers/{ns}/{name}/explain      the posted event against every trigger of the broker:
//	                                          matches or not, and which filter clause refuses it
//	POST /v1/redrive                          redrive by filter, across triggers (?dryRun=true counts)
//	GET /v1/tail                              outcomes as they are recorded (server-sent events)
//	POST /v1/brokers/{ns}/{name}/replays      start a replay of the broker's archive (?dryRun=true with
//	                                          a candidate configuration: compare filters, deliver nothing)
//	GET /v1/replays, GET|DELETE /v1/replays/{id}   replays' progress; cancel one
//	GET /ui/                                  the web console
//
// With Auth set, /v1/ and /debug/pprof/ need a bearer token or JWT: a reader's for GET, an
// operator's for POST (redrive, pause, resume; an operator may read too). The probes and /metrics
// stay open. Cross-origin POSTs from browsers are refused whatever the credentials (CSRF). Every
// request body the admin listener reads (explain, the dry run's candidate, the console's forms) is
// read under a byte budget of its own, the size of the ingress's, and bounded before it is parsed.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/ingress"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/replay"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// Routes is what the admin API needs of the router; broker.Router implements it.
type Routes interface {
	Triggers() []broker.TriggerStatus
	Redrive(ctx context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error)
	Explain(ref router.BrokerRef, e *event.Event) ([]broker.Verdict, error)
	// PauseTrigger and ResumeTrigger hold and release a trigger's deliveries; errors wrap
	// broker.ErrTriggerNotFound, and broker.ErrPausedByManifest for a resume its manifest refuses.
	PauseTrigger(ref router.TriggerRef) error
	ResumeTrigger(ref router.TriggerRef) error
	// QueueDepths is each broker's backlog, for the console.
	QueueDepths() []metrics.QueueDepth
}

// Server is the admin HTTP handler.
type Server struct {
	mux     *http.ServeMux
	handler http.Handler
	ready   atomic.Bool
	results router.ResultStore
	routes  Routes
	auth    atomic.Pointer[Auth]
	config  atomic.Pointer[ConfigState]
	// traceURL links a trace id to a trace viewer in the console ("" shows the id alone).
	traceURL atomic.Pointer[string]
	// series are the console's charts (StartSampling).
	series *series
	tails  atomic.Int32
	pages  map[string]*template.Template
	// replays and loadCandidate serve replays (SetReplays before serving); nil: none.
	replays       *replay.Manager
	loadCandidate func(name string, data []byte) (*config.Config, error)
	// bodies bounds the request bodies the admin listener reads at once (explain, the dry run's
	// candidate, the console's forms), counted as their bytes arrive: the admin listener's own
	// budget, of the ingress's size, so that neither listener's callers can spend the other's.
	bodies *ingress.BodyBudget
}

// ConfigState is what became of the configuration: when the one served was applied, and whether a
// later change was refused (the previous configuration is then still served).
type ConfigState struct {
	Applied time.Time `json:"applied"`
	// Rejected and Error are the last change refused since Applied; zero when there is none.
	Rejected time.Time `json:"rejected,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// ConfigApplied records that the configuration served now was applied at t.
func (s *Server) ConfigApplied(t time.Time) { s.config.Store(&ConfigState{Applied: t}) }

// ConfigRejected records that a change was refused at t for err; the applied one stays.
func (s *Server) ConfigRejected(t time.Time, err error) {
	next := ConfigState{Rejected: t, Error: err.Error()}
	if cur := s.config.Load(); cur != nil {
		next.Applied = cur.Applied
	}
	s.config.Store(&next)
}

// Auth are the credentials of the admin API's roles; a nil role has no members.
type Auth struct {
	// Readers may GET; Operators may also POST (redrive, pause, resume).
	Readers, Operators *senderauth.Policy
}

// SetAuth protects the admin API with a (nil: open). It may be called while serving (reload).
func (s *Server) SetAuth(a *Auth) { s.auth.Store(a) }

// New returns the admin handler; it reports not ready until SetReady(true).
func New(results router.ResultStore, triggers Routes, m *metrics.Metrics) *Server {
	s := &Server{mux: http.NewServeMux(), results: results, routes: triggers, bodies: ingress.NewBodyBudget(0), series: newSeries()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}))
	s.mux.HandleFunc("GET /v1/events/{id}", s.event)
	s.mux.HandleFunc("GET /v1/events/{id}/path", s.path)
	s.mux.HandleFunc("GET /v1/events", s.listEvents)
	s.mux.HandleFunc("GET /v1/config", s.configState)
	s.mux.HandleFunc("GET /v1/triggers", s.triggers)
	s.mux.HandleFunc("GET /v1/triggers/{ns}/{name}/outcomes", s.triggerOutcomes)
	s.mux.HandleFunc("POST /v1/triggers/{ns}/{name}/redrive", s.redrive)
	s.mux.HandleFunc("POST /v1/triggers/{ns}/{name}/pause", s.pauseTrigger)
	s.mux.HandleFunc("POST /v1/triggers/{ns}/{name}/resume", s.resumeTrigger)
	s.mux.HandleFunc("POST /v1/redrive", s.redriveAll)
	s.mux.HandleFunc("POST /v1/brokers/{ns}/{name}/explain", s.explain)
	s.mux.HandleFunc("GET /v1/tail", s.tail)
	s.routeConsole()
	s.routeReplays()
	// A browser on another origin must not make an operator's browser redrive: Go's check of
	// Sec-Fetch-Site and Origin refuses cross-origin requests that are not GET, HEAD or OPTIONS.
	csrf := http.NewCrossOriginProtection()
	s.handler = csrf.Handler(http.HandlerFunc(s.authorize))
	return s
}

// authorize applies Auth, then serves the request with the caller's role in its context (the
// console shows an operator's actions only to operators). Credentials come from the
// Authorization header or, for the console in a browser, the session cookie its login sets.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	a := s.auth.Load()
	if a == nil {
		s.mux.ServeHTTP(w, withRole(r, roleOperator)) // an open admin API: anyone may act
		return
	}
	if !protected(r.URL.Path) {
		s.mux.ServeHTTP(w, r)
		return
	}
	if r.Header.Get("Authorization") == "" {
		if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+c.Value)
		}
	}
	// Explain is a POST (it takes an event) that changes nothing: readers may call it.
	reading := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/explain")
	op := verifyRole(a.Operators, r.Header)
	if op.Status == 0 {
		s.mux.ServeHTTP(w, withRole(r, roleOperator))
		return
	}
	rd := verifyRole(a.Readers, r.Header)
	refuse := http.Error
	if inConsole(r.URL.Path) {
		refuse = s.consoleRefusal(r)
	}
	switch {
	case rd.Status == 0 && reading:
		s.mux.ServeHTTP(w, withRole(r, roleReader))
	case rd.Status == 0:
		refuse(w, "these credentials may read the admin API but not act through it: an operator's are needed", http.StatusForbidden)
	case op.Status == http.StatusForbidden:
		refuse(w, op.Reason, op.Status)
	case rd.Status == http.StatusForbidden:
		refuse(w, rd.Reason, rd.Status)
	default:
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard-admin"`)
		refuse(w, "the admin API requires an Authorization: Bearer token of a reader (or, to act, an operator)", http.StatusUnauthorized)
	}
}

func verifyRole(p *senderauth.Policy, h http.Header) senderauth.Decision {
	if p == nil {
		return senderauth.Decision{Status: http.StatusUnauthorized}
	}
	return p.Verify(h, "the admin API", time.Now())
}

// protected reports whether path needs credentials when Auth is set: everything but the probes
// and /metrics, which kubelets and Prometheus read without them, and the console's login page and
// its style sheet and script.
func protected(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics", "/ui/login", "/ui/logout":
		return false
	}
	return !strings.HasPrefix(path, "/ui/static/")
}

// EnableProfiling serves Go's runtime profiles under /debug/pprof/ (CPU, heap, goroutines, mutex
// and block profiles, execution traces), for `go tool pprof` and `go tool trace`. Off by default:
// a profile shows the process's internals and costs CPU while it is taken.
func (s *Server) EnableProfiling() {
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// SetMaxBodyBytesInFlight bounds the bytes of request bodies the admin listener reads at once
// (ingress.DefaultBodyBudget when max <= 0); serve gives it spec.ingress.maxBodyBytesInFlight, the
// ingress's bound, for a budget of its own. It may be called while serving (reload).
func (s *Server) SetMaxBodyBytesInFlight(max int64) { s.bodies.SetMax(max) }

// BodyBytesInFlight is what the request bodies being read now hold of that budget.
func (s *Server) BodyBytesInFlight() int64 { return s.bodies.Used() }

// readBody reads r's body, at most limit bytes, under the admin listener's body budget; what is
// read is what is held, not what Content-Length announces. When it cannot (413 past limit, 503
// with Retry-After when the budget is spent, 408, 400) it answers and reports false. The caller
// releases the body once it has parsed it.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, limit int64, what string) (ingress.Body, bool) {
	body, berr := s.bodies.Read(r, limit)
	if berr != nil {
		if berr.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "reading "+what+": "+berr.Msg, berr.Status)
		return ingress.Body{}, false
	}
	return body, true
}

// SetReady flips /readyz.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// readyz stays 200 when a configuration change is refused: the previous configuration is served
// still, and taking every replica out of its Service for a typo would turn one bad change into an
// outage. The body says so, for a person or a probe that reads it.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	msg := "ok\n"
	if c := s.config.Load(); c != nil && c.Error != "" {
		msg += fmt.Sprintf("config: the change of %s was rejected; serving the configuration applied at %s: %s\n",
			c.Rejected.UTC().Format(time.RFC3339), c.Applied.UTC().Format(time.RFC3339), c.Error)
	}
	_, _ = w.Write([]byte(msg))
}

func (s *Server) configState(w http.ResponseWriter, _ *http.Request) {
	c := s.config.Load()
	if c == nil {
		c = &ConfigState{}
	}
	writeJSON(w, c)
}

// OutcomeJSON is how the admin API shows an outcome.
type OutcomeJSON struct {
	EventID    string    `json:"eventId"`
	Source     string    `json:"source"`
	Type       string    `json:"type"`
	Broker     string    `json:"broker"`
	Trigger    string    `json:"trigger"`
	Subscriber string    `json:"subscriber"`
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	LastCode   int       `json:"lastCode"`
	LastError  string    `json:"lastError,omitempty"`
	LatencyMS  float64   `json:"latencyMs"`
	Received   time.Time `json:"received"`
	Finished   time.Time `json:"finished"`
	ReplyID    string    `json:"replyId,omitempty"`
	TraceID    string    `json:"traceId,omitempty"`
}

func toJSON(o *router.Outcome) OutcomeJSON {
	return OutcomeJSON{
		EventID: o.EventID, Source: o.Source, Type: o.Type, Broker: o.Broker.String(), Trigger: o.Trigger.String(),
		Subscriber: o.Subscriber, Status: string(o.Status), Attempts: o.Attempts, LastCode: o.LastCode,
		LastError: o.LastError, LatencyMS: float64(o.Latency().Microseconds()) / 1000, Received: o.Received,
		Finished: o.Finished, ReplyID: o.ReplyID, TraceID: o.TraceID,
	}
}

func (s *Server) event(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	outcomes, err := s.results.EventOutcomes(r.Context(), id)
	if err != nil {
		http.Error(w, "reading outcomes: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if len(outcomes) == 0 {
		http.Error(w, "no outcome recorded for event "+strconv.Quote(id)+" (not final yet, never received, forgotten, or one of the unmatched events past the 100 a second per broker that are counted but not recorded)", http.StatusNotFound)
		return
	}
	out := struct {
		ID       string        `json:"id"`
		Outcomes []OutcomeJSON `json:"outcomes"`
	}{ID: id, Outcomes: make([]OutcomeJSON, len(outcomes))}
	for i := range outcomes {
		out.Outcomes[i] = toJSON(&outcomes[i])
	}
	writeJSON(w, out)
}

// path answers the event's path (path.go): where it went and what it caused.
func (s *Server) path(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	root, err := s.eventPath(r.Context(), id)
	switch {
	case err != nil:
		http.Error(w, "reading outcomes: "+err.Error(), http.StatusServiceUnavailable)
	case root == nil:
		http.Error(w, "no outcome recorded for event "+strconv.Quote(id)+": its path starts at its first outcome", http.StatusNotFound)
	default:
		writeJSON(w, root)
	}
}

func (s *Server) triggers(w http.ResponseWriter, _ *http.Request) {
	ts := s.routes.Triggers()
	if ts == nil {
		ts = []broker.TriggerStatus{}
	}
	writeJSON(w, struct {
		Triggers []broker.TriggerStatus `json:"triggers"`
	}{ts})
}

func (s *Server) triggerOutcomes(w http.ResponseWriter, r *http.Request) {
	s.listOutcomes(w, r, router.TriggerRef{Namespace: r.PathValue("ns"), Name: r.PathValue("name")})
}

// listEvents is GET /v1/events: outcomes of every trigger (or trigger=NS/NAME), filtered by
// broker, status, type, source, since and until, newest first, paged.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) {
	s.listOutcomes(w, r, router.TriggerRef{})
}

func (s *Server) listOutcomes(w http.ResponseWriter, r *http.Request, trigger router.TriggerRef) {
	qs := r.URL.Query()
	f, err := parseEventFilter(qs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if trigger != (router.TriggerRef{}) {
		f.Trigger = trigger
	}
	q := f.query()
	q.OnlyFailed, q.PageToken = qs.Get("failed") == "true", qs.Get("page")
	if v := qs.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 1000 {
			http.Error(w, "limit must be an integer from 1 to 1000", http.StatusBadRequest)
			return
		}
		q.Limit = n
	}
	outcomes, next, err := s.results.TriggerOutcomes(r.Context(), q)
	if err != nil {
		http.Error(w, "reading outcomes: "+err.Error(), listErrorCode(err, q))
		return
	}
	out := struct {
		Outcomes []OutcomeJSON `json:"outcomes"`
		NextPage string        `json:"nextPage,omitempty"`
	}{Outcomes: make([]OutcomeJSON, len(outcomes)), NextPage: next}
	for i := range outcomes {
		out.Outcomes[i] = toJSON(&outcomes[i])
	}
	writeJSON(w, out)
}

// listErrorCode is the status of a listing the store refused: the request's own mistakes (a page
// token not given out, a listing the store cannot make) are 400; the store failing to answer is
// 503, as for a single event.
func listErrorCode(err error, q router.OutcomeQuery) int {
	if errors.Is(err, router.ErrListNeedsTrigger) || q.PageToken != "" && strings.Contains(err.Error(), "token") {
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

// maxExplainBytes bounds an explained event: it is held only for the call.
const maxExplainBytes = 4 << 20

func (s *Server) explain(w http.ResponseWriter, r *http.Request) {
	ref := router.BrokerRef{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
	// A batch is refused before its body is read: decoding one holds many times its bytes, only to
	// be refused after.
	if cehttp.DetectMode(r.Header) == cehttp.BatchMode {
		http.Error(w, "explain takes one CloudEvent, in binary or structured mode, not a batch", http.StatusBadRequest)
		return
	}
	body, ok := s.readBody(w, r, maxExplainBytes, "the event")
	if !ok {
		return
	}
	defer body.Release()
	events, err := cehttp.Decode(r.Header, body.Data)
	if err != nil {
		http.Error(w, "explain takes one CloudEvent, in binary or structured mode: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(events) != 1 {
		http.Error(w, fmt.Sprintf("explain takes one CloudEvent, got a batch of %d", len(events)), http.StatusBadRequest)
		return
	}
	verdicts, err := s.routes.Explain(ref, events[0])
	if errors.Is(err, router.ErrBrokerNotFound) {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	matched := 0
	for _, v := range verdicts {
		if v.Matches {
			matched++
		}
	}
	writeJSON(w, struct {
		Broker   string           `json:"broker"`
		EventID  string           `json:"eventId"`
		Type     string           `json:"type"`
		Source   string           `json:"source"`
		Matched  int              `json:"matched"`
		Triggers []broker.Verdict `json:"triggers"`
	}{ref.String(), events[0].ID(), events[0].Type(), events[0].Source(), matched, verdicts})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
