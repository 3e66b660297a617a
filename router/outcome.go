package router

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Status is the final state of one event at one trigger.
type Status string

const (
	// StatusDelivered: the subscriber answered 2xx (and its reply, if any, was published).
	StatusDelivered Status = "delivered"
	// StatusDeadLettered: every attempt failed and the dead-letter sink took the event.
	StatusDeadLettered Status = "dead-lettered"
	// StatusFailed: every attempt failed and there was no dead-letter sink, or it failed too, or
	// the router shut down before the event could be delivered. The event is kept for redrive.
	StatusFailed Status = "failed"
	// StatusReplyFailed: the subscriber took the event, but its reply could not be published and
	// could not be dead-lettered either. The event is kept for redrive.
	StatusReplyFailed Status = "reply-failed"
	// StatusUnmatched: the event reached its broker and matched none of its triggers; recorded
	// under the pseudo-trigger UnmatchedPrefix + broker name, at a bounded rate per broker.
	StatusUnmatched Status = "unmatched"
)

// UnmatchedPrefix starts the name under which a broker's unmatched events are recorded and
// queried, as if it were a trigger: "unmatched:BROKER" (Kubernetes names have no colon).
const UnmatchedPrefix = "unmatched:"

// Failed reports whether an outcome of status s belongs on its trigger's failed list (and keeps
// its event for redrive): not delivered, and not an event that simply matched nothing.
func (s Status) Failed() bool { return s != StatusDelivered && s != StatusUnmatched }

// Outcome is what became of one event at one trigger: the unit the ResultStore records.
type Outcome struct {
	EventID    string
	Source     string
	Type       string
	Broker     BrokerRef
	Trigger    TriggerRef
	Subscriber string
	Status     Status
	Attempts   int
	// LastCode is the last HTTP status code seen, 0 when no response arrived.
	LastCode  int
	LastError string
	Received  time.Time
	Finished  time.Time
	// ReplyID is the id of the reply event the subscriber sent back, if any.
	ReplyID string
	// TraceID is the W3C trace the event belongs to (its traceparent extension), "" without one.
	TraceID string
	// Event is the event itself, kept for outcomes that are not StatusDelivered so they can be redriven.
	Event *event.Event
	// Attributes is a delivered event without its data: what a filter reads, so that explaining
	// the event later judges it as it was. The in-memory store keeps it; the Cassandra store does
	// not (its explain starts from the id, source and type, and says so).
	Attributes *event.Event
}

// Latency is the time from ingress to the final outcome.
func (o *Outcome) Latency() time.Duration { return o.Finished.Sub(o.Received) }

// OutcomeQuery selects a trigger's outcomes, newest first.
type OutcomeQuery struct {
	Trigger TriggerRef
	// OnlyFailed keeps outcomes that are not StatusDelivered.
	OnlyFailed bool
	// Since drops outcomes finished before it; zero keeps all.
	Since time.Time
	Limit int
	// PageToken continues a previous query; empty starts from the newest.
	PageToken string
	// Broker, Status, Type and Source, when set, keep only outcomes with that value; Until drops
	// outcomes finished after it (Keeps). A zero Trigger lists every trigger's outcomes, in the
	// stores that can (the in-memory one); the others answer ErrListNeedsTrigger.
	Broker       BrokerRef
	Status       Status
	Type, Source string
	Until        time.Time
}

// ErrListNeedsTrigger: the store keeps outcomes by trigger and cannot list across triggers.
var ErrListNeedsTrigger = errors.New("this result store lists outcomes per trigger: name one (trigger=NAMESPACE/NAME)")

// Keeps reports whether o passes the query's filters other than Trigger and OnlyFailed, which
// the stores apply themselves.
func (q *OutcomeQuery) Keeps(o *Outcome) bool {
	return (q.Broker == BrokerRef{} || o.Broker == q.Broker) && (q.Status == "" || o.Status == q.Status) &&
		(q.Type == "" || o.Type == q.Type) && (q.Source == "" || o.Source == q.Source) &&
		(q.Since.IsZero() || !o.Finished.Before(q.Since)) && (q.Until.IsZero() || !o.Finished.After(q.Until))
}

// DurableStore is a ResultStore that says when a recorded outcome is safe: written to its database,
// or fsynced to local disk. A broker on a durable log lets go of an event (a Kafka log commits its
// offset) only once every outcome of it is, so a crash between the two cannot lose the only record
// of a failed event. A store that is not a DurableStore is taken as durable at Record.
type DurableStore interface {
	ResultStore
	// RecordThen records o as Record does and calls durable once o is safe, exactly once, from any
	// goroutine; never when o could be stored nowhere (the caller then keeps the event, to be
	// read again after a restart).
	RecordThen(o *Outcome, durable func())
}

// AttributeStore is a ResultStore that keeps a delivered event's attributes (Outcome.Attributes),
// so that explaining the event later judges it as it was. The broker copies them only for such a
// store: the copy is an allocation per delivered outcome that a store which drops it must not cost.
type AttributeStore interface {
	ResultStore
	KeepsAttributes() bool
}

// DrainingStore is a ResultStore that is told when the process starts to stop, before the router
// drains: from then on Record must not wait for anything only a running process relieves (the
// Cassandra store's bounded journal during an outage), or the drain could never end.
type DrainingStore interface {
	ResultStore
	BeginShutdown()
}

// OutcomeFollower is a ResultStore that hands out its outcomes in the order it recorded them,
// from a position, without sorting or rereading what it handed out before: what a live tail
// reads. The in-memory store is one; a tail over a store that is not polls TriggerOutcomes.
type OutcomeFollower interface {
	ResultStore
	// LatestOutcomes returns, oldest recorded first, the newest n outcomes that pass q (Trigger,
	// OnlyFailed and Keeps; Limit and PageToken are ignored), whether older ones pass q too
	// (left out), and the position after the newest outcome held, to follow from.
	LatestOutcomes(q OutcomeQuery, n int) (out []Outcome, older bool, next uint64)
	// OutcomesAfter returns, oldest recorded first, at most n outcomes recorded at or after
	// position from that pass q, and the position to continue from; lost counts the outcomes
	// recorded from there that were forgotten (evicted) before they could be read.
	OutcomesAfter(q OutcomeQuery, from uint64, n int) (out []Outcome, next, lost uint64)
}

// ResultStore keeps final delivery outcomes, so "where did my event go" has an answer.
type ResultStore interface {
	// Record stores o. It must not block the delivery path: implementations buffer, and they own
	// the outcome once Record returns (its Event is not changed afterwards).
	Record(o *Outcome)
	// EventOutcomes returns every trigger's outcome for the event with that id.
	EventOutcomes(ctx context.Context, id string) ([]Outcome, error)
	// TriggerOutcomes returns one page of a trigger's outcomes and the token of the next page
	// ("" at the end). With OnlyFailed, outcomes already redriven are left out.
	TriggerOutcomes(ctx context.Context, q OutcomeQuery) ([]Outcome, string, error)
	// Redriven takes o (as returned by TriggerOutcomes or EventOutcomes, or Redrive.Outcome) off
	// its trigger's failed list once its event's new run has a final outcome; its history stays.
	Redriven(ctx context.Context, o *Outcome) error
}

// RedriveQuery selects what a redrive of one trigger re-sends: one event (EventID), or the
// trigger's failed list (failed and dead-lettered outcomes not yet redriven) narrowed by the
// other fields, each ignored when zero: finished from Since to Until, with that Type, Source,
// Broker or Status.
type RedriveQuery struct {
	EventID      string
	Since, Until time.Time
	Type, Source string
	Broker       BrokerRef
	Status       Status
}

// RedriveCandidates returns what a redrive of ref re-sends: with q.EventID, that event's latest
// outcome at ref when it is not delivered (and passes q's other filters); else ref's failed list
// narrowed by q, at most max outcomes. Triggers and KafkaSources are redriven alike.
func RedriveCandidates(ctx context.Context, store ResultStore, ref TriggerRef, q RedriveQuery, max int) ([]Outcome, error) {
	list := OutcomeQuery{Trigger: ref, OnlyFailed: true, Since: q.Since, Until: q.Until, Type: q.Type, Source: q.Source, Broker: q.Broker, Status: q.Status}
	if q.EventID != "" {
		outcomes, err := store.EventOutcomes(ctx, q.EventID)
		if err != nil {
			return nil, err
		}
		var latest *Outcome
		for i := range outcomes {
			if o := &outcomes[i]; o.Trigger == ref && (latest == nil || o.Finished.After(latest.Finished)) {
				latest = o
			}
		}
		if latest == nil || !latest.Status.Failed() || !list.Keeps(latest) {
			return nil, nil
		}
		return []Outcome{*latest}, nil
	}
	var out []Outcome
	for page := ""; len(out) < max; {
		list.Limit, list.PageToken = 1000, page
		batch, next, err := store.TriggerOutcomes(ctx, list)
		if err != nil {
			return nil, err
		}
		out = append(out, batch...)
		if page = next; page == "" {
			break
		}
	}
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// RedrivesUnderWay remembers which events a source's redrive is sending now, so that asking twice
// sends each once (the KafkaSource's and the PingSource's redrives; a broker keys its own by run).
type RedrivesUnderWay struct{ m sync.Map }

// Claim keeps of candidates those that hold their event and have no redrive under way at ref,
// and marks them under way.
func (r *RedrivesUnderWay) Claim(ref TriggerRef, candidates []Outcome) []Outcome {
	var out []Outcome
	for _, o := range candidates {
		if o.Event == nil {
			continue
		}
		if _, busy := r.m.LoadOrStore(ref.String()+"\x00"+o.EventID, struct{}{}); !busy {
			out = append(out, o)
		}
	}
	return out
}

// Done ends the redrive of o at ref.
func (r *RedrivesUnderWay) Done(ref TriggerRef, o *Outcome) {
	r.m.Delete(ref.String() + "\x00" + o.EventID)
}
