package cassandra

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
)

// record is an outcome as it is written: to Cassandra's rows and, verbatim, to the journal.
// Times are truncated to milliseconds, Cassandra's precision, so keys read back equal keys written.
type record struct {
	EventID    string          `json:"id"`
	Source     string          `json:"source"`
	Type       string          `json:"type"`
	Broker     string          `json:"broker"`
	Trigger    string          `json:"trigger"`
	Subscriber string          `json:"subscriber"`
	Status     string          `json:"status"`
	Attempts   int             `json:"attempts"`
	LastCode   int             `json:"code"`
	LastError  string          `json:"error,omitempty"`
	ReplyID    string          `json:"reply,omitempty"`
	TraceID    string          `json:"trace,omitempty"`
	Received   time.Time       `json:"received"`
	Finished   time.Time       `json:"finished"`
	Event      json.RawMessage `json:"event,omitempty"`
}

func toRecord(o *router.Outcome) (*record, error) {
	r := &record{
		EventID: o.EventID, Source: o.Source, Type: o.Type, Broker: o.Broker.String(), Trigger: o.Trigger.String(),
		Subscriber: o.Subscriber, Status: string(o.Status), Attempts: o.Attempts, LastCode: o.LastCode,
		LastError: o.LastError, ReplyID: o.ReplyID, TraceID: o.TraceID,
		Received: o.Received.UTC().Truncate(time.Millisecond), Finished: o.Finished.UTC().Truncate(time.Millisecond),
	}
	if o.Event != nil {
		b, err := o.Event.MarshalJSON()
		if err != nil {
			return nil, fmt.Errorf("encoding event %s: %w", o.EventID, err)
		}
		r.Event = b
	}
	return r, nil
}

func (r *record) outcome() router.Outcome {
	o := router.Outcome{
		EventID: r.EventID, Source: r.Source, Type: r.Type, Broker: router.BrokerRef(splitRef(r.Broker)),
		Trigger: splitRef(r.Trigger), Subscriber: r.Subscriber, Status: router.Status(r.Status), Attempts: r.Attempts,
		LastCode: r.LastCode, LastError: r.LastError, ReplyID: r.ReplyID, TraceID: r.TraceID, Received: r.Received, Finished: r.Finished,
	}
	if len(r.Event) > 0 {
		e := event.New()
		if err := e.UnmarshalJSON(r.Event); err == nil {
			o.Event = &e
		}
	}
	return o
}

func splitRef(s string) router.TriggerRef {
	ns, name, _ := strings.Cut(s, "/")
	return router.TriggerRef{Namespace: ns, Name: name}
}

func (r *record) latencyMicros() int64 { return r.Finished.Sub(r.Received).Microseconds() }

// stamp is the rows' write time: the outcome's finish (see Store.insertAll).
func (r *record) stamp() int64 { return r.Finished.UnixMicro() }

// eventBlob is the event column: nil (no cell) when the outcome kept no event.
func (r *record) eventBlob() []byte {
	if len(r.Event) == 0 {
		return nil
	}
	return r.Event
}

// rowBytes estimates the size of r's outcomes_by_trigger row in a batch: its text columns and
// about 64 bytes of the rest.
func (r *record) rowBytes() int {
	return len(r.Trigger) + len(r.EventID) + len(r.Broker) + len(r.Source) + len(r.Type) + len(r.Subscriber) +
		len(r.Status) + len(r.LastError) + len(r.ReplyID) + len(r.TraceID) + 64
}
