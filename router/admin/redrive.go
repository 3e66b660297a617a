package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
)

// maxRedriveCount bounds what a dry run counts per trigger, as a redrive bounds what it sends.
const maxRedriveCount = 100000

// TriggerRedrive is one trigger's part of a redrive: how many of its failed events it re-queued,
// or, in a dry run, would re-queue (Matching) and how many of those lack their event (not kept:
// over the store's size bound) and would be passed over.
type TriggerRedrive struct {
	Trigger      string `json:"trigger"`
	Redriven     int    `json:"redriven"`
	Matching     int    `json:"matching,omitempty"`
	WithoutEvent int    `json:"withoutEvent,omitempty"`
}

// RedriveReport is the answer to a redrive by filter.
type RedriveReport struct {
	DryRun   bool             `json:"dryRun"`
	Total    int              `json:"total"`
	Triggers []TriggerRedrive `json:"triggers"`
}

// redriveTargets are the triggers a redrive by f reaches: f's trigger, else every configured
// trigger (of f's broker when it names one). A named trigger is checked only when it is a
// trigger's: a KafkaSource's or PingSource's outcomes (kafkasource:NAME, pingsource:NAME) are
// checked by their manager.
func (s *Server) redriveTargets(f eventFilter) ([]router.TriggerRef, error) {
	all := s.routes.Triggers()
	if f.Trigger != (router.TriggerRef{}) {
		if strings.Contains(f.Trigger.Name, ":") {
			return []router.TriggerRef{f.Trigger}, nil
		}
		for _, t := range all {
			if t.Namespace == f.Trigger.Namespace && t.Name == f.Trigger.Name {
				return []router.TriggerRef{f.Trigger}, nil
			}
		}
		return nil, fmt.Errorf("%w: %s", broker.ErrTriggerNotFound, f.Trigger)
	}
	var out []router.TriggerRef
	for _, t := range all {
		if f.Broker == (router.BrokerRef{}) || f.Broker == (router.BrokerRef{Namespace: t.Namespace, Name: t.Broker}) {
			out = append(out, router.TriggerRef{Namespace: t.Namespace, Name: t.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// redriveMatching redrives (or, with dryRun, counts) the failed events of f's triggers that pass
// f, or only event eventID when it is set. A redrive stops at the first trigger that refuses; the
// report then holds what was re-queued before it.
func (s *Server) redriveMatching(ctx context.Context, f eventFilter, eventID string, dryRun bool) (RedriveReport, error) {
	rep := RedriveReport{DryRun: dryRun, Triggers: []TriggerRedrive{}}
	if f.Status != "" && !f.Status.Failed() {
		return rep, fmt.Errorf("%w: status %s: only failed, dead-lettered and reply-failed events are redriven", errBadRedrive, f.Status)
	}
	targets, err := s.redriveTargets(f)
	if err != nil {
		return rep, err
	}
	q := f.redrive(eventID)
	for _, ref := range targets {
		tr := TriggerRedrive{Trigger: ref.String()}
		if dryRun {
			candidates, err := router.RedriveCandidates(ctx, s.results, ref, q, maxRedriveCount)
			if err != nil {
				return rep, err
			}
			for i := range candidates {
				if candidates[i].Event == nil {
					tr.WithoutEvent++
				} else {
					tr.Matching++
				}
			}
			rep.Total += tr.Matching
		} else {
			n, err := s.routes.Redrive(ctx, ref, q)
			tr.Redriven = n
			rep.Total += n
			if err != nil {
				rep.Triggers = append(rep.Triggers, tr)
				return rep, err
			}
		}
		if tr.Redriven+tr.Matching+tr.WithoutEvent > 0 || len(targets) == 1 {
			rep.Triggers = append(rep.Triggers, tr)
		}
	}
	return rep, nil
}

// errBadRedrive marks a redrive the request itself got wrong (a 400).
var errBadRedrive = errors.New("bad redrive")

// redriveErrorCode is the status of a refused redrive.
func redriveErrorCode(err error) int {
	switch {
	case errors.Is(err, broker.ErrTriggerNotFound):
		return http.StatusNotFound
	case errors.Is(err, errBadRedrive), errors.Is(err, router.ErrListNeedsTrigger):
		return http.StatusBadRequest
	}
	return http.StatusServiceUnavailable
}

// redrive is POST /v1/triggers/{ns}/{name}/redrive: one trigger's failed events, one (event=ID)
// or those passing the filters; dryRun=true counts them instead.
func (s *Server) redrive(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	f, err := parseEventFilter(qs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.Trigger = router.TriggerRef{Namespace: r.PathValue("ns"), Name: r.PathValue("name")}
	rep, err := s.redriveMatching(r.Context(), f, qs.Get("event"), qs.Get("dryRun") == "true")
	if err != nil {
		http.Error(w, "redrive: "+strings.TrimPrefix(err.Error(), errBadRedrive.Error()+": "), redriveErrorCode(err))
		return
	}
	tr := TriggerRedrive{Trigger: f.Trigger.String()}
	if len(rep.Triggers) == 1 {
		tr = rep.Triggers[0]
	}
	writeJSON(w, tr)
}

// redriveAll is POST /v1/redrive: the failed events passing the filters, of trigger= or of every
// trigger (of broker=); dryRun=true counts them instead.
func (s *Server) redriveAll(w http.ResponseWriter, r *http.Request) {
	qs := r.URL.Query()
	f, err := parseEventFilter(qs)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rep, err := s.redriveMatching(r.Context(), f, qs.Get("event"), qs.Get("dryRun") == "true")
	if err != nil {
		http.Error(w, "redrive: "+strings.TrimPrefix(err.Error(), errBadRedrive.Error()+": "), redriveErrorCode(err))
		return
	}
	writeJSON(w, rep)
}
