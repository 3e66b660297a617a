package delivery

import (
	"context"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// SinkSender sends sources' events to their sinks: publishing into a broker, or delivering to a
// URI. It is the one place where "a sink is a broker or a URI" is decided, for every source.
type SinkSender struct {
	Publisher router.Publisher
	Deliverer *Deliverer
	// Timeout bounds one delivery to a URI sink (default 10 s). A URI sink gets one attempt: the
	// source's own sender (the webhook provider, the Kafka partition) retries.
	Timeout time.Duration
}

// Send sends env to sink; namespace is the source's (Kn-Namespace for a URI). It returns nil once
// the sink has the event, else Publish's error or a *router.DeliveryError: router.HTTPStatus says
// what to answer, router.IsRetryable whether to try again.
func (s *SinkSender) Send(ctx context.Context, sink router.Sink, env *router.Envelope, namespace string) error {
	if sink.Broker != nil {
		return s.Publisher.Publish(ctx, *sink.Broker, []*router.Envelope{env})
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	res := s.Deliverer.Deliver(ctx, &Request{URL: sink.URI, Event: env.Event, Headers: env.Headers, Namespace: namespace}, &Policy{Timeout: timeout})
	return res.Err
}
