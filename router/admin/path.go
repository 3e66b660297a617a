package admin

import (
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// An event's path: where it went and what it caused, built from what the result store records.
// An event arrives at a broker; each trigger's outcome there is a delivery; a delivery whose
// subscriber replied leads to the reply's own arrival, at the trigger's broker or at the next
// step's broker of a Sequence or Parallel, and so on down the tree. See docs/event-path.md.

// PathNode is one arrival of an event at a broker, with its deliveries there.
type PathNode struct {
	// Via is how it came from the delivery above: "reply" (its subscriber's reply) or
	// "forwarded" (the subscriber is a broker of this router: a Sequence's or Parallel's
	// address, say); "" for the event asked about.
	Via        string         `json:"via,omitempty"`
	EventID    string         `json:"eventId"`
	Type       string         `json:"type,omitempty"`
	Source     string         `json:"source,omitempty"`
	Broker     string         `json:"broker,omitempty"`
	Received   time.Time      `json:"received,omitzero"`
	Deliveries []PathDelivery `json:"deliveries,omitempty"`
	// Note says why the path stops here, or what is not known of it.
	Note string `json:"note,omitempty"`
}

// PathDelivery is one trigger's outcome for the event, where it ended up besides its
// subscriber, and the arrival of the reply it caused.
type PathDelivery struct {
	OutcomeJSON
	// Sink names a sink the outcome reached: a CassandraSink or KafkaSink subscriber, or the
	// dead-letter sink of a dead-lettered event.
	Sink string `json:"sink,omitempty"`
	// Next is the arrival the delivery caused: its reply's, or the event's own at the broker it
	// was delivered to.
	Next *PathNode `json:"next,omitempty"`
}

// The bounds of a path: how many replies deep, and how many deliveries in all.
const (
	pathMaxDepth      = 16
	pathMaxDeliveries = 256
)

type pathBuilder struct {
	s        *Server
	ctx      context.Context
	triggers map[string]triggerPathSettings
	// brokers are this router's brokers by their ingress path, "/ns/name".
	brokers map[string]string
	left    int
}

// triggerPathSettings is what a trigger's current configuration says of where its replies and
// failures go (the result store does not record it).
type triggerPathSettings struct{ reply, deadLetterSink string }

// eventPath builds the path of event id from its first arrival; nil when nothing is recorded.
func (s *Server) eventPath(ctx context.Context, id string) (*PathNode, error) {
	outcomes, err := s.results.EventOutcomes(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.pathFrom(ctx, id, outcomes), nil
}

// pathFrom builds the path of event id from its recorded outcomes (a caller that has read them
// already need not read them again); nil when there are none.
func (s *Server) pathFrom(ctx context.Context, id string, outcomes []router.Outcome) *PathNode {
	if len(outcomes) == 0 {
		return nil
	}
	b := &pathBuilder{s: s, ctx: ctx, triggers: map[string]triggerPathSettings{}, brokers: map[string]string{}, left: pathMaxDeliveries}
	for _, d := range s.routes.QueueDepths() {
		b.brokers["/"+d.Namespace+"/"+d.Broker] = d.Namespace + "/" + d.Broker
	}
	for _, t := range s.routes.Triggers() {
		b.triggers[t.Namespace+"/"+t.Name] = triggerPathSettings{reply: t.Reply, deadLetterSink: t.Delivery.DeadLetterSink}
	}
	return b.arrival(id, outcomes, "", nil, 0)
}

// arrival is an arrival of event id at broker ("" for any) among outcomes (the event's recorded
// outcomes): the outcomes there that share one received time. For the event asked about (from
// nil) it is the first one. For what a delivery from caused (its reply, or the event forwarded to
// a broker) it is the latest one received while that delivery ran: a reply is published, and a
// broker's 202 given, before the delivery's outcome is final. So two branches of a Parallel whose
// same-id replies meet in one broker are told apart. Should the clocks disagree (no arrival in
// that window), it is the first one received after the delivery started.
func (b *pathBuilder) arrival(id string, outcomes []router.Outcome, broker string, from *router.Outcome, depth int) *PathNode {
	n := &PathNode{EventID: id, Broker: broker}
	var first, latest time.Time
	for i := range outcomes {
		o := &outcomes[i]
		if broker != "" && o.Broker.String() != broker {
			continue
		}
		// After the delivery started; at the same time too in another broker than the delivery's
		// own (the Cassandra store keeps milliseconds, and a forward can be accepted within the
		// millisecond its delivery started).
		if from == nil || o.Received.After(from.Received) || o.Received.Equal(from.Received) && o.Broker != from.Broker {
			if first.IsZero() || o.Received.Before(first) {
				first = o.Received
			}
			if from != nil && !o.Received.After(from.Finished) && o.Received.After(latest) {
				latest = o.Received
			}
		}
	}
	if !latest.IsZero() {
		first = latest
	}
	if first.IsZero() {
		n.Note = "no outcome recorded for it here: it matched no trigger, is not final yet, or was forgotten"
		return n
	}
	var here []router.Outcome
	for _, o := range outcomes {
		if (broker == "" || o.Broker.String() == broker) && o.Received.Equal(first) {
			here = append(here, o)
		}
	}
	sort.SliceStable(here, func(i, j int) bool { return here[i].Finished.Before(here[j].Finished) })
	n.Type, n.Source, n.Broker, n.Received = here[0].Type, here[0].Source, here[0].Broker.String(), first
	for i := range here {
		if b.left <= 0 {
			n.Note = fmt.Sprintf("cut: the path has more than %d deliveries", pathMaxDeliveries)
			break
		}
		b.left--
		o := &here[i]
		settings := b.triggers[o.Trigger.String()]
		d := PathDelivery{OutcomeJSON: toJSON(o), Sink: sinkAt(o.Subscriber)}
		if o.Status == router.StatusDeadLettered {
			d.Sink = "dead-letter sink"
			if settings.deadLetterSink != "" {
				d.Sink += " " + settings.deadLetterSink
			}
		}
		switch to := b.brokerAt(o.Subscriber); {
		case o.ReplyID != "":
			d.Next = b.reply(o, settings, outcomes, depth)
		case to != "" && o.Status == router.StatusDelivered:
			d.Next = b.next(o.EventID, outcomes, to, o, depth)
			d.Next.Via = "forwarded"
		}
		n.Deliveries = append(n.Deliveries, d)
	}
	return n
}

// reply follows the reply o's subscriber gave to where it went.
func (b *pathBuilder) reply(o *router.Outcome, settings triggerPathSettings, parent []router.Outcome, depth int) *PathNode {
	n := &PathNode{Via: "reply", EventID: o.ReplyID}
	to := o.Broker.String()
	switch dest, rest, _ := strings.Cut(settings.reply, " "); {
	case o.Status != router.StatusDelivered:
		n.Note = "the reply was not published: " + o.LastError
		return n
	case strings.HasPrefix(o.LastError, "reply dropped"):
		n.Note = o.LastError
		return n
	case dest == "broker":
		to = rest
	case dest == "uri":
		n.Note = "sent on to " + rest + " (a Sequence's or Parallel's reply), outside the brokers"
		return n
	case dest == "discarded":
		n.Note = "discarded: the last step of a Sequence without spec.reply"
		return n
	}
	outcomes := parent
	if o.ReplyID != o.EventID {
		var err error
		if outcomes, err = b.s.results.EventOutcomes(b.ctx, o.ReplyID); err != nil {
			n.Note = "reading its outcomes: " + err.Error()
			return n
		}
	}
	next := b.next(o.ReplyID, outcomes, to, o, depth)
	next.Via = "reply"
	return next
}

// next is the arrival one step further down, unless the path is too deep already.
func (b *pathBuilder) next(id string, outcomes []router.Outcome, broker string, from *router.Outcome, depth int) *PathNode {
	if depth+1 >= pathMaxDepth {
		return &PathNode{EventID: id, Broker: broker, Note: fmt.Sprintf("cut: the path is more than %d steps deep", pathMaxDepth)}
	}
	return b.arrival(id, outcomes, broker, from, depth+1)
}

// brokerAt is the broker ("ns/name") a subscriber URL addresses on this router's ingress, or "".
func (b *pathBuilder) brokerAt(subscriber string) string {
	u, err := url.Parse(subscriber)
	if err != nil {
		return ""
	}
	return b.brokers[u.Path]
}

// sinkAt names the sink a subscriber URL is on this router's ingress, or "".
func sinkAt(subscriber string) string {
	u, err := url.Parse(subscriber)
	if err != nil {
		return ""
	}
	for prefix, kind := range map[string]string{"/sinks/cassandra/": "CassandraSink", "/sinks/kafka/": "KafkaSink"} {
		if rest, ok := strings.CutPrefix(u.Path, prefix); ok {
			return kind + " " + rest
		}
	}
	return ""
}
