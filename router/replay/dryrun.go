package replay

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/filter"
)

// maxDryRunEvents bounds the events one dry run reads; the report says when it stopped there.
const maxDryRunEvents = 1_000_000

// maxSamples is how many events of each change a dry run shows per trigger.
const maxSamples = 5

// DryRunReport compares, over a range of a broker's archive, which events each trigger matches
// under the configuration served and under a candidate one.
type DryRunReport struct {
	Broker    string    `json:"broker"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Events    int       `json:"events"`
	Truncated bool      `json:"truncated,omitempty"`
	// Triggers are the broker's triggers in either configuration, by name.
	Triggers []DryRunTrigger `json:"triggers"`
}

// DryRunTrigger is one trigger's counts: events matching now, under the candidate, and the
// difference, with samples of it.
type DryRunTrigger struct {
	Trigger          string         `json:"trigger"`
	InCurrent        bool           `json:"inCurrent"`
	InCandidate      bool           `json:"inCandidate"`
	Current          int            `json:"current"`
	Candidate        int            `json:"candidate"`
	NewlyMatching    int            `json:"newlyMatching"`
	NoLongerMatching int            `json:"noLongerMatching"`
	Samples          []DryRunSample `json:"samples,omitempty"`
}

// DryRunSample is an event whose fate at a trigger the candidate changes.
type DryRunSample struct {
	EventID string `json:"eventId"`
	Type    string `json:"type"`
	Source  string `json:"source"`
	Change  string `json:"change"` // "newly matches" or "no longer matches"
	// Why is the clause that refuses the event where it does not match.
	Why string `json:"why,omitempty"`
}

// DryRun reads spec's range of its broker's archive and judges each event by the current
// triggers of the broker and by candidate's (a whole configuration, as serve would load it).
// Nothing is delivered or recorded.
func (m *Manager) DryRun(ctx context.Context, spec Spec, candidate *config.Config) (DryRunReport, error) {
	return m.DryRunOf(ctx, spec, func() (*config.Config, error) { return candidate, nil })
}

// DryRunOf is DryRun with the candidate made by load: reading and compiling a candidate is the
// costly part (a 4 MiB one of 17,000 CESQL triggers takes seconds and hundreds of MB), so load is
// called only once the spec is checked, the broker found, and one of the maxDryRuns slots taken.
// load's error is returned as it is, for the caller to tell from the dry run's own.
func (m *Manager) DryRunOf(ctx context.Context, spec Spec, load func() (*config.Config, error)) (DryRunReport, error) {
	if spec.To.IsZero() || spec.To.After(time.Now()) {
		spec.To = time.Now()
	}
	if spec.From.IsZero() || !spec.From.Before(spec.To) {
		return DryRunReport{}, fmt.Errorf("%w: from is required and must be before to", ErrBadSpec)
	}
	select {
	case m.dryRuns <- struct{}{}:
		defer func() { <-m.dryRuns }()
	default:
		return DryRunReport{}, fmt.Errorf("%w: %d dry runs are being made in this process already: try again when one is done", ErrBusy, maxDryRuns)
	}
	reader, err := m.o.Reader(spec.Broker)
	if err != nil {
		return DryRunReport{}, err
	}
	current, err := m.o.Filters(spec.Broker)
	if err != nil {
		return DryRunReport{}, err
	}
	candidate, err := load()
	if err != nil {
		return DryRunReport{}, err
	}
	next := map[string]filter.Filter{}
	found := false
	for _, b := range candidate.Brokers {
		found = found || b.Ref == spec.Broker
	}
	if !found {
		return DryRunReport{}, fmt.Errorf("%w: the candidate configuration has no broker %s", ErrBadSpec, spec.Broker)
	}
	for _, t := range candidate.Triggers {
		if t.Broker == spec.Broker {
			next[t.Ref.Name] = t.Filter
		}
	}
	rows := map[string]*DryRunTrigger{}
	for name := range current {
		rows[name] = &DryRunTrigger{Trigger: spec.Broker.Namespace + "/" + name, InCurrent: true}
	}
	for name := range next {
		if rows[name] == nil {
			rows[name] = &DryRunTrigger{Trigger: spec.Broker.Namespace + "/" + name}
		}
		rows[name].InCandidate = true
	}
	rep := DryRunReport{Broker: spec.Broker.String(), From: spec.From, To: spec.To}
	err = reader.ReadArchive(ctx, router.ArchiveQuery{Broker: spec.Broker, From: spec.From, To: spec.To}, func(ae router.ArchivedEvent) error {
		if rep.Events == maxDryRunEvents {
			rep.Truncated = true
			return errChunkFull
		}
		rep.Events++
		for name, row := range rows {
			now := row.InCurrent && matches(current[name], ae.Event)
			then := row.InCandidate && matches(next[name], ae.Event)
			if now {
				row.Current++
			}
			if then {
				row.Candidate++
			}
			switch {
			case then && !now:
				row.NewlyMatching++
				row.sample(ae.Event, "newly matches", current[name], row.InCurrent)
			case now && !then:
				row.NoLongerMatching++
				row.sample(ae.Event, "no longer matches", next[name], row.InCandidate)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errChunkFull) {
		return DryRunReport{}, fmt.Errorf("reading the archive: %w", err)
	}
	for _, row := range rows {
		rep.Triggers = append(rep.Triggers, *row)
	}
	sort.Slice(rep.Triggers, func(i, j int) bool { return rep.Triggers[i].Trigger < rep.Triggers[j].Trigger })
	return rep, nil
}

func matches(f filter.Filter, e *event.Event) bool { return f == nil || f.Match(e) }

// sample keeps e as an example of change, with the clause of refusing (the configuration where e
// does not match) that says why; present is false when the trigger is not in that configuration.
func (row *DryRunTrigger) sample(e *event.Event, change string, refusing filter.Filter, present bool) {
	if len(row.Samples) >= maxSamples*2 {
		return
	}
	n := 0
	for _, s := range row.Samples {
		if s.Change == change {
			n++
		}
	}
	if n >= maxSamples {
		return
	}
	why := "the trigger is not in that configuration"
	if present {
		_, why = filter.Explain(refusing, e)
	}
	row.Samples = append(row.Samples, DryRunSample{EventID: e.ID(), Type: e.Type(), Source: e.Source(), Change: change, Why: why})
}
