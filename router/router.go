package router

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// BrokerRef names a broker.
type BrokerRef struct{ Namespace, Name string }

func (b BrokerRef) String() string { return b.Namespace + "/" + b.Name }

// TriggerRef names a trigger.
type TriggerRef struct{ Namespace, Name string }

func (t TriggerRef) String() string { return t.Namespace + "/" + t.Name }

// ParseRef reads "NAMESPACE/NAME" (a broker's or a trigger's, as String writes it); ok is false
// when either part is missing.
func ParseRef(s string) (ref BrokerRef, ok bool) {
	ns, name, cut := strings.Cut(s, "/")
	if !cut || ns == "" || name == "" {
		return BrokerRef{}, false
	}
	return BrokerRef{Namespace: ns, Name: name}, true
}

// Envelope is one accepted event on its way through a broker, with what travels beside it.
type Envelope struct {
	Event *event.Event
	// Headers is the forwarded subset of the producer's HTTP headers (x-request-id, traceparent,
	// knative-*, ...), sent on to subscribers with the event.
	Headers http.Header
	Broker  BrokerRef
	// Received is when the broker admitted the event.
	Received time.Time
	// TTL is what remains of the event's knativebrokerttl hop limit. The broker takes the extension
	// out of the event at admission and keeps it here, so subscribers never see it; a reply
	// inherits it.
	TTL int32
	// Partition and Offset locate the event in a Kafka log; Partition is -1 in memory.
	Partition int32
	Offset    int64
	// ReplyBudget is how many events this event's replies, their replies and so on may still add
	// to the broker: the bound on reply amplification (see broker.Router). A Kafka log keeps it
	// in the record as the extension ExtReplyBudget.
	ReplyBudget int32
	// Bytes is what an in-memory broker counted for the envelope against its memory bound
	// (EnvelopeSize at admission), given back when its fate is final; 0 when not counted.
	Bytes int64
	// ReadBytes is the size of the record a durable log read the envelope from, which its window
	// counts in bytes (ParkingLog.Window); 0 in memory.
	ReadBytes int64
	// Redrive, when set, addresses the envelope to one trigger only: it is a redrive of an event
	// that failed there. A durable log keeps it beside the event (never in it).
	Redrive *Redrive
	// Observe, when set, is told each trigger's final outcome (a replay counts them). Envelopes
	// that carry it are delivered in this process and never written to a log.
	Observe func(Status)
}

// Redrive names the failed outcome an envelope redrives: its trigger, and its place on that
// trigger's failed list (with the event's id). The outcome leaves the list once the new run's
// outcome is final, so that a crash in between loses neither.
type Redrive struct {
	Trigger  TriggerRef `json:"trigger"`
	Received time.Time  `json:"received"`
	Finished time.Time  `json:"finished"`
}

// Outcome is the failed outcome r names, as much of it as ResultStore.Redriven needs.
func (r *Redrive) Outcome(eventID string) *Outcome {
	return &Outcome{EventID: eventID, Trigger: r.Trigger, Received: r.Received, Finished: r.Finished}
}

// ExtReplyBudget carries Envelope.ReplyBudget through a durable log; it is taken out of the event
// when read back and never reaches a subscriber.
const ExtReplyBudget = "switchyardreplybudget"

// Sink is where a source (a webhook, a KafkaSource) sends its events: a broker of this
// configuration, or a URI. delivery.SinkSender sends to either.
type Sink struct {
	Broker *BrokerRef
	URI    string
}

// String is the sink as outcomes and logs show it: "broker NS/NAME", or the URI without its
// credentials.
func (s Sink) String() string {
	if s.Broker != nil {
		return "broker " + s.Broker.String()
	}
	return RedactURL(s.URI)
}

// Log is a broker's event log: ingress appends accepted events to it, and the dispatcher reads them
// back through a Handler.
type Log interface {
	// Append stores envs, all or none. A nil error means they are accepted: in memory, queued; in
	// Kafka, acknowledged by every in-sync replica. It returns ErrQueueFull or ErrUnavailable when
	// the log cannot take them now, and never blocks for longer than ctx allows.
	Append(ctx context.Context, envs []*Envelope) error
}

// BrokerLog is a Log together with its reading side: what a broker runs on. memqueue.Queue is the
// embedded one; sinks/kafka provides the Kafka-backed one.
type BrokerLog interface {
	Log
	// Run hands every envelope read back from the log to h until the log is closed (and, in
	// memory, drained) or ctx ends. Several processes may Run the same durable log; each envelope
	// then reaches one of them.
	Run(ctx context.Context, h Handler)
	// Close stops Append and makes Run return once what it has read is handed over.
	Close()
	// Len is the number of envelopes waiting to be read, where the log knows it.
	Len() int
}

// WindowedLog is a BrokerLog that bounds by itself what it has handed to Handle and not yet seen
// done (a Kafka log's per-partition window). Handle then queues a slow trigger's events up to that
// bound instead of holding the log back, so one slow trigger does not stall the broker's others.
type WindowedLog interface {
	BrokerLog
	BoundsUnfinished() bool
}

// ParkingLog is a WindowedLog that can keep one trigger's copies of events apart from the others'
// (a Kafka log's park topic per trigger): a trigger that falls behind then waits in the log, not
// in the shared window, so it holds back no other trigger of the broker, for any backlog.
// docs/kafka-isolation.md has the design.
type ParkingLog interface {
	WindowedLog
	// Parked reports whether trigger t's copies of partition p's records are being parked now:
	// once one is, every later one is too until the parked ones are final, which keeps their order.
	Parked(t TriggerRef, p int32) bool
	// Park stores env, read from partition p, for trigger t alone, and calls done once it is
	// stored (that copy is then final for the shared window). It reports false when the log
	// cannot park now (partition p is not claimed here any more): the caller delivers the copy
	// itself. A parked copy comes back through the handler's HandleParked.
	Park(t TriggerRef, env *Envelope, done func()) bool
	// Window is how much of a partition may be handed out and not final: records and bytes.
	Window() (records int, bytes int64)
	// Lag is what trigger t owes on the partitions claimed here, besides the copies it holds in
	// memory: the records not read yet, and its parked copies not final, with the arrival time of
	// the oldest of those (zero when unknown).
	Lag(t TriggerRef) (records int64, oldest time.Time)
}

// ParkedHandler is a Handler that also takes back the copies a ParkingLog parked.
type ParkedHandler interface {
	Handler
	// HandleParked delivers env to trigger t only; done as for Handle. A trigger that is no longer
	// configured gets nothing (done at once): its backlog went with it, as with Knative's.
	HandleParked(ctx context.Context, t TriggerRef, env *Envelope, done func())
	// Holds reports whether trigger t takes no parked copies now (it is paused): they stay in the
	// log, not in memory, until it does.
	Holds(t TriggerRef) bool
	// Starts lists the broker's triggers with where each starts reading the log when it is new
	// there; version changes whenever the list may have (a reload), and is never 0.
	Starts() (version uint64, starts []TriggerStart)
	// HandleEarlier delivers env, a record from before trigger t was first seen on its partition,
	// to t alone if it matches t's filter (its start-from reaches back); done as for Handle.
	HandleEarlier(ctx context.Context, t TriggerRef, env *Envelope, done func())
}

// StartFrom is where a trigger new to a durable log starts reading it: its oldest record
// (Earliest), the first one stored at or after At, or (the zero value) the records that come after
// the trigger, as Knative's triggers do.
type StartFrom struct {
	Earliest bool
	At       time.Time
}

// Latest reports whether s starts at the records after the trigger.
func (s StartFrom) Latest() bool { return !s.Earliest && s.At.IsZero() }

// TriggerStart is one trigger of a broker and where it starts when new to the broker's log.
type TriggerStart struct {
	Trigger TriggerRef
	From    StartFrom
}

// VolatileLog is a BrokerLog whose accepted events live only in this process until they are final
// (memqueue.Queue): a crash loses them, and nothing but the broker bounds them. The broker then
// counts them itself (max-in-flight, the memory bound) and releases each when its fate is final;
// the done it is handed by Run does nothing.
type VolatileLog interface {
	BrokerLog
	Volatile() bool
}

// Handler takes envelopes read back from a Log.
type Handler interface {
	// Handle routes env. done must be called exactly once, when env's fate is final for every
	// trigger it matched (delivered, dead-lettered, or recorded as failed). A Kafka log commits the
	// record's offset only then; Handle itself may return before that.
	Handle(ctx context.Context, env *Envelope, done func())
}

// Publisher admits events into a broker: what ingress and every source hand events to.
// broker.Router implements it.
type Publisher interface {
	// HasBroker reports whether a broker is configured.
	HasBroker(ref BrokerRef) bool
	// Publish admits envs all or none. Errors: ErrBrokerNotFound, ErrTTLExpired (wrapped),
	// ErrQueueFull, ErrUnavailable.
	Publish(ctx context.Context, ref BrokerRef, envs []*Envelope) error
}

// BatchBound is a Publisher that can tell, before a batch is decoded, the most events one request
// to a broker may carry (0: no bound of its own, as for a Kafka log): ingress then refuses a larger
// batch with 413 without building its events.
type BatchBound interface {
	MaxBatch(ref BrokerRef) int
}

// Errors a Log or the broker returns on the publish path; ingress maps each to one status code.
var (
	// ErrBrokerNotFound: no broker of that namespace and name is configured (404).
	ErrBrokerNotFound = errors.New("broker not found")
	// ErrQueueFull: the in-memory queue is at its bound; try again later (429 with Retry-After).
	ErrQueueFull = errors.New("queue full")
	// ErrUnavailable: the durable log cannot accept events now, or the router is shutting down (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrTTLExpired: the event has gone round the broker too many times (400).
	ErrTTLExpired = errors.New("event TTL exhausted")
	// ErrTooLarge: the events can never be accepted as they are, whatever the load: a batch
	// larger than the broker's queue, or an event larger than its log takes (413).
	ErrTooLarge = errors.New("too large")
)

// DeliveryError is why a delivery (to a subscriber, a dead-letter sink, a URI sink) did not
// succeed. It keeps the cause for errors.Is and errors.As: a context deadline, a TLS verification
// error, delivery's ErrResponseHeadTooLarge, a reply that did not decode; nil for an answer with a
// failing status code.
type DeliveryError struct {
	// Code is the last status code answered, 0 when no response arrived.
	Code int
	// Retryable says whether trying again may succeed (a timeout, a 503) or not (a 400).
	Retryable bool
	Msg       string
	Cause     error
}

func (e *DeliveryError) Error() string { return e.Msg }
func (e *DeliveryError) Unwrap() error { return e.Cause }

// IsRetryable reports whether err says trying again later may succeed: a DeliveryError that says
// so, a full queue, an unavailable log. Nil, invalid events, exhausted TTLs, unknown brokers and
// refused deliveries are not.
func IsRetryable(err error) bool {
	var de *DeliveryError
	if errors.As(err, &de) {
		return de.Retryable
	}
	return errors.Is(err, ErrQueueFull) || errors.Is(err, ErrUnavailable)
}

// HTTPStatus is the status a producer is answered with when accepting its event ended in err, from
// Publish or from a delivery to a URI sink: the one mapping that ingress, webhook sources and every
// other HTTP front share.
func HTTPStatus(err error) int {
	var de *DeliveryError
	switch {
	case err == nil:
		return http.StatusAccepted
	case errors.As(err, &de):
		return http.StatusBadGateway // the destination behind us did not take it
	case errors.Is(err, ErrBrokerNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalidEvent), errors.Is(err, ErrTTLExpired):
		return http.StatusBadRequest
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrQueueFull):
		return http.StatusTooManyRequests
	default:
		return http.StatusServiceUnavailable
	}
}

// FailureCode is the status code an outcome records for err: the subscriber's or sink's own when
// it answered, else what ingress would answer (HTTPStatus).
func FailureCode(err error) int {
	var de *DeliveryError
	if errors.As(err, &de) && de.Code != 0 {
		return de.Code
	}
	return HTTPStatus(err)
}

// Sleep waits d, or less when ctx ends first; it reports whether the whole wait passed. For the
// backoffs of delivery and of the Kafka clients' reconnects.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
