package admin

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/replay"
)

// maxCandidateBytes bounds a dry run's candidate configuration.
const maxCandidateBytes = 4 << 20

// SetReplays serves replays (docs/archive.md) with m; load turns a dry run's candidate
// configuration into a Config as serve would load it.
func (s *Server) SetReplays(m *replay.Manager, load func(name string, data []byte) (*config.Config, error)) {
	s.replays, s.loadCandidate = m, load
}

func (s *Server) routeReplays() {
	s.mux.HandleFunc("POST /v1/brokers/{ns}/{name}/replays", s.startReplay)
	s.mux.HandleFunc("GET /v1/replays", s.listReplays)
	s.mux.HandleFunc("GET /v1/replays/{id}", s.getReplay)
	s.mux.HandleFunc("DELETE /v1/replays/{id}", s.cancelReplay)
}

// startReplay is POST /v1/brokers/{ns}/{name}/replays?from=&to=&trigger=NS/NAME...&allTriggers=true,
// or with dryRun=true and a candidate configuration as the body (config=NAME names it in errors).
func (s *Server) startReplay(w http.ResponseWriter, r *http.Request) {
	if s.replays == nil {
		http.Error(w, "replays are not served by this process", http.StatusNotFound)
		return
	}
	qs := r.URL.Query()
	spec := replay.Spec{Broker: router.BrokerRef{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}, AllTriggers: qs.Get("allTriggers") == "true"}
	for _, tf := range []struct {
		name string
		to   *time.Time
	}{{"from", &spec.From}, {"to", &spec.To}} {
		if v := qs.Get(tf.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				http.Error(w, tf.name+" must be an RFC 3339 time such as 2026-11-22T08:00:00Z", http.StatusBadRequest)
				return
			}
			*tf.to = t
		}
	}
	for _, v := range qs["trigger"] {
		f, err := parseEventFilter(map[string][]string{"trigger": {v}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		spec.Triggers = append(spec.Triggers, f.Trigger)
	}
	if qs.Get("dryRun") == "true" {
		s.dryRun(w, r, spec)
		return
	}
	run, err := s.replays.Start(spec)
	if err != nil {
		http.Error(w, "replay: "+err.Error(), replayErrorCode(err))
		return
	}
	w.Header().Set("Location", "/v1/replays/"+run.ID)
	w.WriteHeader(http.StatusAccepted)
	writeJSON(w, run)
}

// candidateError is why a dry run's candidate could not be read or loaded, with its status.
type candidateError struct {
	status int
	msg    string
}

func (e *candidateError) Error() string { return e.msg }

// dryRun takes one of the process's dry-run slots before it reads the candidate, and reads it
// under the body budget: the candidate's bytes, and what compiling them holds, are spent only by
// the few dry runs allowed at once.
func (s *Server) dryRun(w http.ResponseWriter, r *http.Request, spec replay.Spec) {
	name := r.URL.Query().Get("config")
	if name == "" {
		name = "candidate.yaml"
	}
	if r.ContentLength > maxCandidateBytes { // refused before a slot is taken
		http.Error(w, fmt.Sprintf("reading the candidate configuration: body larger than the %d-byte limit", maxCandidateBytes), http.StatusRequestEntityTooLarge)
		return
	}
	rep, err := s.replays.DryRunOf(r.Context(), spec, func() (*config.Config, error) {
		body, berr := s.bodies.Read(r, maxCandidateBytes)
		if berr != nil {
			return nil, &candidateError{berr.Status, "reading the candidate configuration: " + berr.Msg}
		}
		defer body.Release()
		if len(body.Data) == 0 {
			return nil, &candidateError{http.StatusBadRequest, "a dry run takes the candidate configuration (YAML) as the request body"}
		}
		candidate, err := s.loadCandidate(name, body.Data)
		if err != nil {
			return nil, &candidateError{http.StatusBadRequest, "the candidate configuration is not valid: " + err.Error()}
		}
		return candidate, nil
	})
	var ce *candidateError
	switch {
	case errors.As(err, &ce):
		if ce.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, ce.msg, ce.status)
		return
	case err != nil:
		if errors.Is(err, replay.ErrBusy) {
			w.Header().Set("Retry-After", "1")
		}
		http.Error(w, "dry run: "+err.Error(), replayErrorCode(err))
		return
	}
	writeJSON(w, rep)
}

func replayErrorCode(err error) int {
	switch {
	case errors.Is(err, replay.ErrBadSpec), errors.Is(err, router.ErrNoArchive):
		return http.StatusBadRequest
	case errors.Is(err, router.ErrBrokerNotFound), errors.Is(err, broker.ErrTriggerNotFound):
		return http.StatusNotFound
	case errors.Is(err, replay.ErrBusy):
		return http.StatusTooManyRequests
	}
	return http.StatusServiceUnavailable
}

func (s *Server) listReplays(w http.ResponseWriter, _ *http.Request) {
	runs := []replay.Run{}
	if s.replays != nil {
		runs = append(runs, s.replays.List()...)
	}
	writeJSON(w, struct {
		Replays []replay.Run `json:"replays"`
	}{runs})
}

func (s *Server) getReplay(w http.ResponseWriter, r *http.Request) {
	s.oneReplay(w, r, func(m *replay.Manager, id string) (replay.Run, bool) { return m.Get(id) })
}

func (s *Server) cancelReplay(w http.ResponseWriter, r *http.Request) {
	s.oneReplay(w, r, func(m *replay.Manager, id string) (replay.Run, bool) { return m.Cancel(id) })
}

// oneReplay answers with what do makes of the run named in the path, or 404.
func (s *Server) oneReplay(w http.ResponseWriter, r *http.Request, do func(*replay.Manager, string) (replay.Run, bool)) {
	id := r.PathValue("id")
	if s.replays == nil {
		http.Error(w, "replays are not served by this process", http.StatusNotFound)
		return
	}
	run, ok := do(s.replays, id)
	if !ok {
		http.Error(w, "no replay "+id+" in this process (a replay lives in the process that runs it; with Cassandra, another replica may have taken it over)", http.StatusNotFound)
		return
	}
	writeJSON(w, run)
}
