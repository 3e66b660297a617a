package broker

import (
	"fmt"
	"sort"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/metrics"
)

// QueueDepths reports every broker's queue length and, in memory, its unfinished events.
func (r *Router) QueueDepths() []metrics.QueueDepth {
	brokers := *r.brokers.Load()
	out := make([]metrics.QueueDepth, 0, len(brokers))
	for ref, b := range brokers {
		unfinished := -1
		if b.admit != nil {
			unfinished = b.admit.unfinished()
		}
		out = append(out, metrics.QueueDepth{Namespace: ref.Namespace, Broker: ref.Name, Depth: b.queue.Len(), Unfinished: unfinished})
	}
	return out
}

// TriggerStatus is a trigger's configuration summary and counters since it was first configured.
type TriggerStatus struct {
	Namespace    string `json:"namespace"`
	Name         string `json:"name"`
	Broker       string `json:"broker"`
	Subscriber   string `json:"subscriber"`
	Ordered      bool   `json:"ordered"`
	Concurrency  int    `json:"concurrency"`
	Matched      uint64 `json:"matched"`
	FilteredOut  uint64 `json:"filteredOut"`
	Delivered    uint64 `json:"delivered"`
	DeadLettered uint64 `json:"deadLettered"`
	Failed       uint64 `json:"failed"`
	// Redriven counts earlier failures a redrive's run took off the failed list (each run's own
	// outcome is counted as any); NotDelivered is what waits for redrive now: dead-lettered and
	// failed less redriven (counted by this process since it started).
	Redriven     uint64 `json:"redriven"`
	NotDelivered uint64 `json:"notDelivered"`
	Retries      uint64 `json:"retries"`
	InFlight     int64  `json:"inFlight"`
	// Paused is set while the trigger's deliveries are held; PausedBy says by whom: "manifest"
	// (the switchyard.dev/paused annotation) or "operator" (the admin API).
	Paused   bool   `json:"paused"`
	PausedBy string `json:"pausedBy,omitempty"`
	// Parked counts the trigger's copies a Kafka-class broker parked in the trigger's own topic
	// (it was behind, or paused) since this process started.
	Parked uint64 `json:"parked"`
	// LagRecords and LagSeconds are how far the trigger is behind (Router.TriggerLags).
	LagRecords int64   `json:"lagRecords"`
	LagSeconds float64 `json:"lagSeconds"`
	// Circuit is the trigger's circuit breaker state, closed, open or half-open ("" without
	// one); CircuitOpened counts the times it opened since this process started.
	Circuit       string `json:"circuit,omitempty"`
	CircuitOpened uint64 `json:"circuitOpened,omitempty"`
	TriggerSettings
	// Latency counts the delivered events by how long each took from acceptance to its final
	// outcome (the console's latency chart takes its quantiles from the changes between reads).
	Latency LatencyCounts `json:"-"`
}

// TriggerSettings are what a trigger was configured with, as GET /v1/triggers and the console
// show them: its filter in the manifest's terms, and its delivery.
type TriggerSettings struct {
	Filter   string           `json:"filter"`
	Delivery DeliverySettings `json:"delivery"`
	// Reply is where the subscriber's replies go: "" into the trigger's own broker, "broker
	// ns/name" (a Sequence's or Parallel's next step), "uri URL", or "discarded".
	Reply string `json:"reply,omitempty"`
}

// DeliverySettings are a trigger's delivery policy; durations in Go's notation ("200ms"), "" for
// none.
type DeliverySettings struct {
	Retry          int     `json:"retry"`
	BackoffPolicy  string  `json:"backoffPolicy"`
	BackoffDelay   string  `json:"backoffDelay"`
	BackoffMax     string  `json:"backoffMax,omitempty"`
	Timeout        string  `json:"timeout,omitempty"`
	DeadLetterSink string  `json:"deadLetterSink,omitempty"`
	RateLimit      float64 `json:"rateLimit,omitempty"`
}

func settingsOf(tc *config.Trigger) TriggerSettings {
	p := &tc.Delivery
	d := func(v time.Duration) string {
		if v <= 0 {
			return ""
		}
		return v.String()
	}
	policy := "exponential"
	if p.Backoff == delivery.Linear {
		policy = "linear"
	}
	reply := ""
	switch to := tc.Reply; {
	case to == nil:
	case to.Discard:
		reply = "discarded"
	case to.Broker != nil:
		reply = "broker " + to.Broker.String()
	default:
		reply = "uri " + router.RedactURL(to.URI)
	}
	return TriggerSettings{Filter: filter.Describe(tc.Filter), Reply: reply, Delivery: DeliverySettings{
		Retry: p.Retry, BackoffPolicy: policy, BackoffDelay: d(p.Delay), BackoffMax: d(p.BackoffMax), Timeout: d(p.Timeout),
		DeadLetterSink: router.RedactURL(p.DeadLetterSink), RateLimit: tc.RateLimit,
	}}
}

// Triggers returns every configured trigger's status, by broker and trigger name.
func (r *Router) Triggers() []TriggerStatus {
	var out []TriggerStatus
	for _, b := range *r.brokers.Load() {
		seen := b.events.Load()
		for _, t := range b.routes.Load().triggers {
			s := t.stats
			matched := s.matched.Load()
			var filtered uint64
			if seen > s.base+matched {
				filtered = seen - s.base - matched
			}
			out = append(out, TriggerStatus{
				Namespace: t.cfg.Ref.Namespace, Name: t.cfg.Ref.Name, Broker: b.ref.Name, Subscriber: t.shownSubscriber,
				Ordered: t.cfg.Ordered, Concurrency: t.cfg.Concurrency,
				Matched: matched, FilteredOut: filtered, Delivered: s.delivered.Load(),
				DeadLettered: s.deadLettered.Load(), Failed: s.failed.Load(), Retries: s.rs.Load(), InFlight: s.inFlight.Load(),
				Redriven: s.redriven.Load(), Parked: s.parked.Load(), TriggerSettings: t.settings, Latency: s.latency.counts(),
			})
			st := &out[len(out)-1]
			st.PausedBy = s.gate.who()
			st.LagRecords, st.LagSeconds = b.lag(t, time.Now())
			st.Paused = st.PausedBy != ""
			if br := s.breaker.Load(); br != nil {
				st.Circuit, st.CircuitOpened = br.status()
			}
			if failures := st.DeadLettered + st.Failed; failures > st.Redriven {
				st.NotDelivered = failures - st.Redriven
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Verdict is what one trigger of a broker makes of an event: whether its filter passes it, and
// if not, the clause that refuses it.
type Verdict struct {
	Trigger string `json:"trigger"`
	Matches bool   `json:"matches"`
	Why     string `json:"why,omitempty"`
}

// Explain runs e through every trigger of broker ref, without delivering anything: the admin
// API's "why wasn't it delivered" (and a filter playground). ErrBrokerNotFound for an unknown
// broker.
func (r *Router) Explain(ref router.BrokerRef, e *event.Event) ([]Verdict, error) {
	b := (*r.brokers.Load())[ref]
	if b == nil {
		return nil, fmt.Errorf("%w: %s", router.ErrBrokerNotFound, ref)
	}
	var out []Verdict
	for _, t := range b.routes.Load().triggers {
		ok, why := filter.Explain(t.cfg.Filter, e)
		out = append(out, Verdict{Trigger: t.cfg.Ref.Name, Matches: ok, Why: why})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Trigger < out[j].Trigger })
	return out, nil
}
