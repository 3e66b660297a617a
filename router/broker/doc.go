// Package broker is the routing engine: it admits events into a broker's log (TTL, arrival time),
// reads them back, matches them against the broker's filter index, and fans them out to one lane per
// trigger, where they are delivered with bounded concurrency and their outcomes recorded. Replies
// come back in through the same admission step.
//
// The routing table is compiled from a config.Config and swapped atomically by Apply; events in
// flight finish under the table they started with. Per broker, one goroutine dispatches in log
// order; per trigger, a lane runs at most Concurrency deliveries and holds at most Pending waiting
// ones, after which the broker's dispatch waits for it (and a full queue then answers 429).
//
// The files follow an event: router.go (the Router and its per-broker and per-trigger state),
// apply.go (a configuration becomes routing tables and logs), publish.go (admission: validation,
// TTL, reply budget, memory bound, the append; replies re-entering), admission.go (max-in-flight),
// dispatch.go (matching, fan-out to lanes, attempts, parked retries, panics contained), lane.go (a
// trigger's bounded concurrency), outcome.go (a final result becomes a recorded outcome and metrics),
// redrive.go, status.go (what the admin API shows), shutdown.go (the drain).
//
// What a log can do beyond router.BrokerLog is asked through documented optional interfaces
// (router.WindowedLog, router.VolatileLog), never by its concrete type.
package broker
