package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
)

// TriggerPause is the answer to a pause or a resume: the trigger's state after it. PausedBy is
// "manifest" (its switchyard.dev/paused annotation, which an operator's pause or resume does not
// lift) or "operator", and empty when the trigger runs.
type TriggerPause struct {
	Trigger  string `json:"trigger"`
	Paused   bool   `json:"paused"`
	PausedBy string `json:"pausedBy,omitempty"`
}

// setPause pauses (or resumes) trigger ref and returns its state after. Pausing a paused trigger
// and resuming a running one change nothing and are not errors.
func (s *Server) setPause(ref router.TriggerRef, pause bool) (TriggerPause, error) {
	verb, call := "resume", s.routes.ResumeTrigger
	if pause {
		verb, call = "pause", s.routes.PauseTrigger
	}
	if err := call(ref); err != nil {
		return TriggerPause{}, fmt.Errorf("%s: %w", verb, err)
	}
	st := TriggerPause{Trigger: ref.String(), Paused: pause}
	if pause {
		st.PausedBy = "operator"
	}
	for _, t := range s.routes.Triggers() {
		if t.Namespace == ref.Namespace && t.Name == ref.Name {
			st.Paused, st.PausedBy = t.Paused, t.PausedBy
			break
		}
	}
	return st, nil
}

// pauseErrorCode is the status of a refused pause or resume.
func pauseErrorCode(err error) int {
	switch {
	case errors.Is(err, broker.ErrTriggerNotFound):
		return http.StatusNotFound
	case errors.Is(err, broker.ErrPausedByManifest):
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

// pauseTrigger is POST /v1/triggers/{ns}/{name}/pause: the trigger's deliveries are held until
// resumed (or the process restarts). It reads no body.
func (s *Server) pauseTrigger(w http.ResponseWriter, r *http.Request) { s.pauseAPI(w, r, true) }

// resumeTrigger is POST /v1/triggers/{ns}/{name}/resume: an operator's pause ends; 409 when the
// trigger's manifest pauses it. It reads no body.
func (s *Server) resumeTrigger(w http.ResponseWriter, r *http.Request) { s.pauseAPI(w, r, false) }

func (s *Server) pauseAPI(w http.ResponseWriter, r *http.Request, pause bool) {
	st, err := s.setPause(router.TriggerRef{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}, pause)
	if err != nil {
		http.Error(w, err.Error(), pauseErrorCode(err))
		return
	}
	writeJSON(w, st)
}

// consolePause is the triggers page's Pause and Resume buttons: the API's call, then back to the
// page, which says what was done. Like logout it reads no body: the path names the trigger.
func (s *Server) consolePause(pause bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ref := router.TriggerRef{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
		title := "Resume"
		if pause {
			title = "Pause"
		}
		st, err := s.setPause(ref, pause)
		if err != nil {
			s.render(w, r, pauseErrorCode(err), "message", view{Title: title, Error: err.Error()})
			return
		}
		done := "resumed"
		if st.Paused {
			done = "paused"
		}
		http.Redirect(w, r, "/ui/?"+done+"="+url.QueryEscape(st.Trigger), http.StatusSeeOther)
	}
}
