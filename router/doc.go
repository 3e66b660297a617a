// Package router holds the types every part of Switchyard shares and the small interfaces between
// them. It imports none of its subpackages, and sources and sinks depend on it, never the reverse.
//
// One event's path:
//
//	ingress.Handler.ServeHTTP        decode and validate the CloudEvent (binary, structured, batch)
//	  -> broker.Router.Publish       admit it: TTL, arrival time; append it to the broker's Log
//	  -> Log (memory or Kafka)       the durable hand-off: 202 is answered once Append returns nil
//	  -> broker.Router.Handle        match it against the broker's filter index, fan out to lanes
//	  -> delivery.Deliverer.Deliver  POST to the subscriber with retries, backoff, dead-letter sink
//	  -> ResultStore.Record          the final outcome, per trigger
//
// Replies from subscribers go back to broker.Router.Publish, so they take the same path.
package router
