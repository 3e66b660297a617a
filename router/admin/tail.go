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

// tail is GET /v1/tail: outcomes as they are recorded, oldest first, as server-sent events
// ("outcome" events carrying an OutcomeJSON; a "problem" event with the reason, after which the
// stream ends, when the store cannot list what was asked), filtered as GET /v1/events is. The
// console's live tail reads it. It polls the result store, so an outcome shows up within about
// tailEvery of being recorded (the Cassandra store writes in batches: up to its flush interval
// more).
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
	since := time.Now().UTC()
	if !f.Since.IsZero() {
		since = f.Since
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // a proxy in front must not hold the stream back
	w.WriteHeader(http.StatusOK)
	writeBy := func() { _ = rc.SetWriteDeadline(time.Now().Add(tailWriteTimeout)) } // unsupported: no bound, as before
	writeBy()
	_, _ = fmt.Fprint(w, ": following outcomes\n\n")
	if rc.Flush() != nil {
		return
	}
	// Each poll asks again for the last tailLag before the newest outcome sent: an outcome can
	// become readable after a newer one (the Cassandra store writes with several writers, in
	// batches). seen, keyed with each outcome's finish time, tells what was sent already.
	seen := map[string]time.Time{}
	newest := since
	tick := time.NewTicker(tailEvery)
	defer tick.Stop()
	quiet := 0
	for {
		q := f.query()
		q.Since, q.Limit = since, 1000
		if back := newest.Add(-tailLag); back.After(q.Since) {
			q.Since = back
		}
		var batch []router.Outcome
		full := true
		for pages := 0; pages < tailPages; pages++ { // a busy half second can fill pages: read them all, within bounds
			outcomes, next, err := s.results.TriggerOutcomes(r.Context(), q)
			if err != nil {
				if r.Context().Err() != nil {
					return
				}
				msg := "reading outcomes: " + err.Error()
				if !errors.Is(err, router.ErrListNeedsTrigger) {
					msg += " (the tail ends; open it again once the store answers)"
				}
				writeBy()
				_, _ = fmt.Fprintf(w, "event: problem\ndata: %s\n\n", msg)
				_ = rc.Flush()
				return
			}
			batch = append(batch, outcomes...)
			if q.PageToken = next; next == "" {
				full = false
				break
			}
		}
		writeBy()
		if full {
			_, _ = fmt.Fprintf(w, "event: notice\ndata: more outcomes finished within %s than a tail sends at once (%d): older ones of them were skipped; narrow the filter\n\n", tailLag, tailPages*1000)
		}
		for i := len(batch) - 1; i >= 0; i-- {
			o := &batch[i]
			key := o.EventID + "\x00" + o.Trigger.String() + "\x00" + o.Received.String()
			if _, sent := seen[key]; sent {
				continue
			}
			seen[key] = o.Finished
			b, _ := json.Marshal(toJSON(o))
			_, _ = fmt.Fprintf(w, "event: outcome\ndata: %s\n\n", b)
			if o.Finished.After(newest) {
				newest = o.Finished
			}
		}
		for key, finished := range seen { // what finished before the window cannot come back
			if finished.Before(newest.Add(-tailLag)) {
				delete(seen, key)
			}
		}
		if len(batch) > 0 {
			quiet = 0
		} else if quiet++; quiet%30 == 0 { // a comment every 15 s keeps idle proxies from closing it
			_, _ = fmt.Fprint(w, ": idle\n\n")
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}
