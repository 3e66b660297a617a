package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// maxTails bounds the live tails served at once: each polls the result store.
const maxTails = 32

// tailWriteTimeout bounds each round of writes to a tail: a client that stops reading (its TCP
// window full) would otherwise hold one of the maxTails slots for as long as its connection lives,
// and the admin listener has no write timeout of its own (other responses are short).
var tailWriteTimeout = 10 * time.Second

// tailEvery is how often a tail asks the store for what finished since the newest it sent, less
// tailLag; tailPages bounds the pages of 1,000 outcomes one poll reads.
const (
	tailEvery = 500 * time.Millisecond
	tailLag   = 2 * time.Second
	tailPages = 10
)

// tailBackfill bounds what a tail opened with since= sends of the outcomes that finished before it
// opened: the newest tailBackfill of them, the stream saying so when older ones were left out
// (GET /v1/events pages through those). Without it, 32 tails from 1970 over 60,000 outcomes held
// 980 MB.
const tailBackfill = 1000

// tail is GET /v1/tail: outcomes as they are recorded, oldest first, as server-sent events
// ("outcome" events carrying an OutcomeJSON; "notice" events when some were left out; a "problem"
// event with the reason, after which the stream ends, when the store cannot list what was asked),
// filtered as GET /v1/events is. With since=, it starts with the newest tailBackfill outcomes
// that finished from then on. The console's live tail reads it. Over a store that follows its
// outcomes in the order recorded (the in-memory one) each is read once; over others it polls, so
// an outcome shows up within about tailEvery of being recorded (the Cassandra store writes in
// batches: up to its flush interval more).
func (s *Server) tail(w http.ResponseWriter, r *http.Request) {
	f, err := parseEventFilter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.tails.Add(1) > maxTails {
		s.tails.Add(-1)
		http.Error(w, fmt.Sprintf("%d live tails are being served already; close one or try again later", maxTails), http.StatusServiceUnavailable)
		return
	}
	defer s.tails.Add(-1)
	// From before the client hears that the stream is open: what is recorded after that is sent.
	opened := time.Now().UTC()
	st := &tailStream{w: w, rc: http.NewResponseController(w)}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // a proxy in front must not hold the stream back
	w.WriteHeader(http.StatusOK)
	if fs, ok := s.results.(router.OutcomeFollower); ok {
		s.followTail(r, st, f, fs)
		return
	}
	s.pollTail(r, st, f, opened)
}

// tailStream writes a tail's server-sent events, each round of writes within tailWriteTimeout.
type tailStream struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	quiet int
}

func (t *tailStream) round() { _ = t.rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout)) } // unsupported: no bound, as before

func (t *tailStream) send(kind, data string) {
	_, _ = fmt.Fprintf(t.w, "event: %s\ndata: %s\n\n", kind, data)
}

func (t *tailStream) outcome(o *router.Outcome) {
	b, _ := json.Marshal(toJSON(o))
	t.send("outcome", string(b))
}

// end flushes the round; sent says whether it sent outcomes (a comment every 15 s of quiet keeps
// idle proxies from closing the stream). It reports false once the client is gone.
func (t *tailStream) end(sent bool) bool {
	if sent {
		t.quiet = 0
	} else if t.quiet++; t.quiet%30 == 0 {
		_, _ = fmt.Fprint(t.w, ": idle\n\n")
	}
	return t.rc.Flush() == nil
}

func (t *tailStream) backfillNotice(since time.Time) {
	t.send("notice", fmt.Sprintf("more than %d outcomes finished from %s to when this tail opened: only the newest %d were sent, older ones were skipped (GET /v1/events lists them)",
		tailBackfill, since.UTC().Format(time.RFC3339Nano), tailBackfill))
}

// followTail serves a tail from a store that hands out outcomes in the order recorded: each round
// reads what was recorded since the last, nothing twice, nothing sorted.
func (s *Server) followTail(r *http.Request, st *tailStream, f eventFilter, fs router.OutcomeFollower) {
	q := f.query()
	st.round()
	_, _ = fmt.Fprint(st.w, ": following outcomes\n\n")
	backfill, older, next := fs.LatestOutcomes(q, 0)
	if !f.Since.IsZero() {
		backfill, older, next = fs.LatestOutcomes(q, tailBackfill)
	}
	if older {
		st.backfillNotice(f.Since)
	}
	for i := range backfill {
		st.outcome(&backfill[i])
	}
	if !st.end(len(backfill) > 0) {
		return
	}
	tick := time.NewTicker(tailEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		st.round()
		sent := 0
		for pages := 0; pages < tailPages; pages++ { // a busy half second: read on next round from where this one stopped
			batch, at, lost := fs.OutcomesAfter(q, next, 1000)
			next = at
			if lost > 0 {
				st.send("notice", fmt.Sprintf("%d outcomes were recorded and forgotten (spec.results.memory.maxOutcomes) before this tail could read them: they were skipped", lost))
			}
			for i := range batch {
				st.outcome(&batch[i])
			}
			if sent += len(batch); len(batch) < 1000 {
				break
			}
		}
		if !st.end(sent > 0) {
			return
		}
	}
}

// pollTail serves a tail by polling TriggerOutcomes for what finished since the newest outcome
// sent, less tailLag: an outcome can become readable after a newer one (the Cassandra store
// writes with several writers, in batches). seen, keyed with each outcome's finish time, tells
// what was sent already.
func (s *Server) pollTail(r *http.Request, st *tailStream, f eventFilter, opened time.Time) {
	st.round()
	_, _ = fmt.Fprint(st.w, ": following outcomes\n\n")
	if !st.end(true) {
		return
	}
	problem := func(err error) {
		msg := "reading outcomes: " + err.Error()
		if !errors.Is(err, router.ErrListNeedsTrigger) {
			msg += " (the tail ends; open it again once the store answers)"
		}
		st.round()
		st.send("problem", msg)
		_ = st.rc.Flush()
	}
	seen := map[string]time.Time{}
	newest := opened
	send := func(batch []router.Outcome) { // newest first, as the store lists them
		for i := len(batch) - 1; i >= 0; i-- {
			o := &batch[i]
			key := o.EventID + "\x00" + o.Trigger.String() + "\x00" + o.Received.String()
			if _, sent := seen[key]; sent {
				continue
			}
			seen[key] = o.Finished
			st.outcome(o)
			if o.Finished.After(newest) {
				newest = o.Finished
			}
		}
	}
	if !f.Since.IsZero() { // the backfill: one page of the newest, not every page since then
		q := f.query()
		q.Limit = tailBackfill
		if q.Until.IsZero() || q.Until.After(opened) {
			q.Until = opened
		}
		outcomes, next, err := s.results.TriggerOutcomes(r.Context(), q)
		if err != nil {
			if r.Context().Err() == nil {
				problem(err)
			}
			return
		}
		st.round()
		if next != "" {
			st.backfillNotice(f.Since)
		}
		send(outcomes)
		if !st.end(len(outcomes) > 0) {
			return
		}
	}
	tick := time.NewTicker(tailEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
		q := f.query()
		q.Since, q.Limit = opened, 1000
		if f.Since.After(opened) {
			q.Since = f.Since
		}
		if back := newest.Add(-tailLag); back.After(q.Since) {
			q.Since = back
		}
		var batch []router.Outcome
		full := true
		for pages := 0; pages < tailPages; pages++ { // a busy half second can fill pages: read them all, within bounds
			outcomes, next, err := s.results.TriggerOutcomes(r.Context(), q)
			if err != nil {
				if r.Context().Err() == nil {
					problem(err)
				}
				return
			}
			batch = append(batch, outcomes...)
			if q.PageToken = next; next == "" {
				full = false
				break
			}
		}
		st.round()
		if full {
			st.send("notice", fmt.Sprintf("more outcomes finished within %s than a tail sends at once (%d): older ones of them were skipped; narrow the filter", tailLag, tailPages*1000))
		}
		send(batch)
		for key, finished := range seen { // what finished before the window cannot come back
			if finished.Before(newest.Add(-tailLag)) {
				delete(seen, key)
			}
		}
		if !st.end(len(batch) > 0) {
			return
		}
	}
}
