// Package metrics defines the router's Prometheus metrics (ingress, triggers, webhooks, the
// registry they and every component's are exported from) with Knative's label names
// (namespace_name, broker_name, trigger_name, event_type, response_code, response_code_class) so
// existing dashboards need little change. Components with metrics of their own register them on
// the same registry where they are made (the Cassandra result store's switchyard_results_*, the
// memory gauges in cmd/switchyard).
package metrics

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the router's metrics and the registry they are exported from.
type Metrics struct {
	Registry *prometheus.Registry

	// IngressEvents counts events received at broker ingress, by the status code answered.
	IngressEvents *prometheus.CounterVec
	// TriggerEvents counts final delivery outcomes per trigger, by the subscriber's last status code.
	TriggerEvents *prometheus.CounterVec
	// DispatchLatency is the time from admission to a trigger's final outcome, in milliseconds.
	DispatchLatency *prometheus.HistogramVec
	Retries         *prometheus.CounterVec
	DeadLettered    *prometheus.CounterVec
	Failed          *prometheus.CounterVec
	RepliesDropped  *prometheus.CounterVec
	// RepliesOverBudget counts replies dropped because their lineage's reply budget was spent.
	RepliesOverBudget *prometheus.CounterVec
	// TriggerOverflow counts events recorded as failed because their trigger's backlog was full.
	TriggerOverflow *prometheus.CounterVec
	InFlight        *prometheus.GaugeVec
	ConfigReloads   *prometheus.CounterVec
	// ConfigLastReloadOK is 1 when the last configuration change was applied (or none came
	// since start), 0 when it was rejected and the previous configuration is served.
	ConfigLastReloadOK prometheus.Gauge

	// Webhook sources, per source.
	WebhookReceived     *prometheus.CounterVec
	WebhookVerified     *prometheus.CounterVec
	WebhookRejected     *prometheus.CounterVec // by reason
	WebhookDeduplicated *prometheus.CounterVec

	// Unmatched counts events that matched no trigger of their broker.
	Unmatched *prometheus.CounterVec
	// BrokerDeduplicated counts events a broker refused as duplicates (switchyard.dev/dedup-window).
	BrokerDeduplicated *prometheus.CounterVec

	// PingTicks counts PingSource ticks, by what became of them (sources/ping).
	PingTicks *prometheus.CounterVec

	// EventTypesOverflowed counts ingress events whose type was reported as OverflowEventType
	// because their broker already had the maximum of distinct event_type values.
	EventTypesOverflowed *prometheus.CounterVec

	// Knative's own series (knative-semantics.md 9.4), under both names Knative's dashboards
	// query: mt_broker_* (the MT broker) and broker_* (older releases). Milliseconds; counters
	// without _total. Ingress: valid events by the code answered, and the time to admit them.
	// Filter: one per delivery attempt (Knative's filter counts attempts), its duration, and the
	// time from arrival to the attempt.
	knIngressCount                       [2]*prometheus.CounterVec
	knIngressLatency                     [2]*prometheus.HistogramVec
	knFilterCount                        [2]*prometheus.CounterVec
	knFilterDispatch, knFilterProcessing [2]*prometheus.HistogramVec
	admissions                           sync.Map // admissionKey -> *admissionSeries

	maxEventTypes atomic.Int64
	eventTypes    sync.Map // brokerKey -> *typeSet
}

// DefaultMaxEventTypes is how many distinct event_type label values a broker gets by default.
const DefaultMaxEventTypes = 100

// OverflowEventType is the event_type label of events whose type did not get a value of its own.
const OverflowEventType = "(other)"

// MaxEventTypeBytes is the longest event type that gets an event_type label value of its own;
// longer ones are counted under OverflowEventType. With the bound on distinct values it bounds
// what producers add to every series' labels in bytes: 100 types of 1 MB made /metrics 3.5 GB.
const MaxEventTypeBytes = 256

// New creates the metrics on a fresh registry (with Go runtime and process collectors).
func New() *Metrics {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	f := func(c prometheus.Collector) { r.MustRegister(c) }
	m := &Metrics{Registry: r}
	m.IngressEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_broker_event_count",
		Help: "Events received at broker ingress, by the status code answered.",
	}, []string{"namespace_name", "broker_name", "event_type", "response_code", "response_code_class"})
	f(m.IngressEvents)
	triggerLabels := []string{"namespace_name", "broker_name", "trigger_name", "event_type", "response_code", "response_code_class"}
	m.TriggerEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_trigger_event_count",
		Help: "Final delivery outcomes per trigger, by the subscriber's last status code.",
	}, triggerLabels)
	f(m.TriggerEvents)
	m.DispatchLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchyard_trigger_event_dispatch_latencies",
		Help:    "Milliseconds from admission to a trigger's final outcome, retries included.",
		Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 60000},
	}, triggerLabels)
	f(m.DispatchLatency)
	byTrigger := []string{"namespace_name", "trigger_name"}
	m.Retries = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_trigger_retries_total", Help: "Delivery attempts after the first."}, byTrigger)
	m.DeadLettered = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_trigger_dead_lettered_total", Help: "Events handed to a dead-letter sink."}, byTrigger)
	m.Failed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_trigger_failed_total", Help: "Events neither delivered nor dead-lettered, kept in the result store."}, byTrigger)
	m.RepliesDropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_trigger_replies_dropped_total", Help: "Replies dropped because their TTL was exhausted."}, byTrigger)
	m.RepliesOverBudget = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_trigger_replies_over_budget_total", Help: "Replies dropped because the reply budget of the event they answer was spent (spec.ingress.maxRepliesPerEvent)."}, byTrigger)
	m.TriggerOverflow = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_trigger_overflow_total", Help: "Events recorded as failed (kept for redrive) because their unordered trigger's backlog (concurrency + pending) was full."}, byTrigger)
	m.InFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "switchyard_trigger_in_flight", Help: "Deliveries in progress."}, byTrigger)
	m.ConfigReloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_config_reloads_total", Help: "Configuration reloads, by result (applied or rejected)."}, []string{"result"})
	// Both results exported at 0 from the start, so that increase() and alerts see the first one.
	m.ConfigReloads.WithLabelValues("applied")
	m.ConfigReloads.WithLabelValues("rejected")
	m.ConfigLastReloadOK = prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchyard_config_last_reload_successful",
		Help: "1 when the last configuration change was applied (or none came since start), 0 when it was rejected and the previous configuration is still served."})
	m.ConfigLastReloadOK.Set(1)
	bySource := []string{"namespace_name", "source_name"}
	m.WebhookReceived = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_webhook_received_total", Help: "Webhook requests received."}, bySource)
	m.WebhookVerified = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_webhook_verified_total", Help: "Webhook requests whose signature or token verified."}, bySource)
	m.WebhookRejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_webhook_rejected_total", Help: "Webhook requests rejected, by reason."}, append(bySource, "reason"))
	m.WebhookDeduplicated = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_webhook_deduplicated_total", Help: "Redelivered webhooks acknowledged without routing them again."}, bySource)
	m.Unmatched = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_broker_unmatched_total",
		Help: "Events that matched no trigger of their broker (recorded as unmatched outcomes at most 100 a second per broker)."},
		[]string{"namespace_name", "broker_name"})
	m.BrokerDeduplicated = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_broker_deduplicated_total",
		Help: "Events a broker answered as accepted without appending them again: the same source and id accepted within its switchyard.dev/dedup-window."},
		[]string{"namespace_name", "broker_name"})
	m.PingTicks = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_pingsource_ticks_total",
		Help: "PingSource ticks by result: sent, sent_late (a tick missed while no replica ran), failed (the sink would not take it: recorded as failed), other_replica (claimed by another replica), not_leader (left to the Lease holder), missed (due while no replica ran and not sent)."},
		append(bySource, "result"))
	m.EventTypesOverflowed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_event_type_overflow_total",
		Help: "Events counted at ingress under event_type=\"" + OverflowEventType + "\" because their broker already had as many distinct types as it may (spec.metrics.maxEventTypes)."},
		[]string{"namespace_name", "broker_name"})
	m.maxEventTypes.Store(DefaultMaxEventTypes)
	m.registerKnative(f)
	for _, c := range []prometheus.Collector{m.EventTypesOverflowed, m.RepliesOverBudget, m.TriggerOverflow, m.Retries, m.DeadLettered, m.Failed, m.RepliesDropped, m.InFlight, m.ConfigReloads, m.ConfigLastReloadOK,
		m.WebhookReceived, m.WebhookVerified, m.WebhookRejected, m.WebhookDeduplicated, m.PingTicks, m.Unmatched, m.BrokerDeduplicated} {
		f(c)
	}
	return m
}

// SetMaxEventTypes sets how many distinct event_type label values each broker may have; types seen
// after that are counted under OverflowEventType. Values already given out stay.
func (m *Metrics) SetMaxEventTypes(n int) { m.maxEventTypes.Store(int64(n)) }

type brokerKey struct{ namespace, name string }

// typeSet is the event_type label values one broker has been given.
type typeSet struct {
	mu    sync.RWMutex
	types map[string]string // event type -> its label value
}

// EventTypeLabel is the event_type label value for an event of type t at a broker: t itself
// (made valid UTF-8, which the Prometheus client requires) while the broker has fewer than the
// maximum of distinct types and t is at most MaxEventTypeBytes long, else OverflowEventType.
// Producers choose types, so without these bounds any producer could grow the series (and
// /metrics) without limit.
func (m *Metrics) EventTypeLabel(namespace, broker, t string) string {
	if len(t) > MaxEventTypeBytes {
		return OverflowEventType
	}
	key := brokerKey{namespace, broker}
	v, ok := m.eventTypes.Load(key)
	if !ok {
		v, _ = m.eventTypes.LoadOrStore(key, &typeSet{types: map[string]string{}})
	}
	set := v.(*typeSet)
	set.mu.RLock()
	label, ok := set.types[t]
	n := len(set.types)
	set.mu.RUnlock()
	if ok {
		return label
	}
	if int64(n) >= m.maxEventTypes.Load() {
		return OverflowEventType
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	if label, ok := set.types[t]; ok {
		return label
	}
	if int64(len(set.types)) >= m.maxEventTypes.Load() {
		return OverflowEventType
	}
	label = LabelValue(t)
	set.types[strings.Clone(t)] = label
	return label
}

// CountIngress counts one event answered code at broker namespace/broker's ingress before it
// reached the broker (a body or decoding error); CountAdmission counts the rest.
func (m *Metrics) CountIngress(namespace, broker, eventType string, code int) {
	label := m.ingressTypeLabel(namespace, broker, eventType)
	m.IngressEvents.WithLabelValues(namespace, broker, label, strconv.Itoa(code), CodeClass(code)).Inc()
}

// ingressTypeLabel is EventTypeLabel, counting the events whose type did not get a label of its own.
func (m *Metrics) ingressTypeLabel(namespace, broker, eventType string) string {
	label := m.EventTypeLabel(namespace, broker, eventType)
	if label == OverflowEventType && eventType != OverflowEventType {
		m.EventTypesOverflowed.WithLabelValues(namespace, broker).Inc()
	}
	return label
}

// knativeBuckets are Knative's latency buckets, in milliseconds.
var knativeBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}

// knativePrefixes are the two names Knative's broker series go by.
var knativePrefixes = [2]string{"mt_broker_", "broker_"}

func (m *Metrics) registerKnative(register func(prometheus.Collector)) {
	ingress := []string{"namespace_name", "broker_name", "event_type", "response_code", "response_code_class"}
	filter := []string{"namespace_name", "broker_name", "trigger_name", "filter_type", "response_code", "response_code_class"}
	for i, p := range knativePrefixes {
		m.knIngressCount[i] = prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "ingress_event_count",
			Help: "Knative's: valid events received at broker ingress, by the code answered."}, ingress)
		m.knIngressLatency[i] = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "ingress_event_dispatch_latencies",
			Help: "Knative's: milliseconds to admit an event (a Kafka-class broker: until Kafka has it).", Buckets: knativeBuckets}, ingress)
		m.knFilterCount[i] = prometheus.NewCounterVec(prometheus.CounterOpts{Name: p + "filter_event_count",
			Help: "Knative's: delivery attempts to trigger subscribers, by the code answered (500 when none came)."}, filter)
		m.knFilterDispatch[i] = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "filter_event_dispatch_latencies",
			Help: "Knative's: milliseconds of one delivery attempt.", Buckets: knativeBuckets}, filter)
		m.knFilterProcessing[i] = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: p + "filter_event_processing_latencies",
			Help: "Knative's: milliseconds from the event's arrival to a delivery attempt.", Buckets: knativeBuckets}, filter)
		for _, c := range []prometheus.Collector{m.knIngressCount[i], m.knIngressLatency[i], m.knFilterCount[i], m.knFilterDispatch[i], m.knFilterProcessing[i]} {
			register(c)
		}
	}
}

type admissionKey struct {
	namespace, broker, eventType string
	code                         int
}

// admissionSeries are one (broker, type, code)'s series, resolved once.
type admissionSeries struct {
	events  prometheus.Counter // switchyard_broker_event_count
	count   [2]prometheus.Counter
	latency [2]prometheus.Observer
}

// CountAdmission counts one valid event that the broker answered code after took: the
// switchyard_ series and Knative's, whose latency is whole milliseconds as Knative's. The series
// are resolved once per (broker, type, code), not hashed per event.
func (m *Metrics) CountAdmission(namespace, broker, eventType string, code int, took time.Duration) {
	label := m.ingressTypeLabel(namespace, broker, eventType)
	key := admissionKey{namespace, broker, label, code}
	v, ok := m.admissions.Load(key)
	if !ok {
		labels := []string{namespace, broker, label, strconv.Itoa(code), CodeClass(code)}
		s := &admissionSeries{events: m.IngressEvents.WithLabelValues(labels...)}
		for i := range knativePrefixes {
			s.count[i] = m.knIngressCount[i].WithLabelValues(labels...)
			s.latency[i] = m.knIngressLatency[i].WithLabelValues(labels...)
		}
		v, _ = m.admissions.LoadOrStore(key, s)
	}
	s := v.(*admissionSeries)
	s.events.Inc()
	ms := float64(took.Milliseconds())
	for i := range knativePrefixes {
		s.count[i].Inc()
		s.latency[i].Observe(ms)
	}
}

// AttemptSeries are Knative's filter series of one trigger and status code.
type AttemptSeries struct {
	count                [2]prometheus.Counter
	dispatch, processing [2]prometheus.Observer
}

// Attempts resolves a trigger's Knative filter series for code; callers cache the result.
// filterType is the event type the trigger's filter requires, or "any" (Knative's filter_type).
func (m *Metrics) Attempts(namespace, broker, trigger, filterType string, code int) *AttemptSeries {
	labels := []string{namespace, broker, trigger, LabelValue(filterType), strconv.Itoa(code), CodeClass(code)}
	s := &AttemptSeries{}
	for i := range knativePrefixes {
		s.count[i] = m.knFilterCount[i].WithLabelValues(labels...)
		s.dispatch[i] = m.knFilterDispatch[i].WithLabelValues(labels...)
		s.processing[i] = m.knFilterProcessing[i].WithLabelValues(labels...)
	}
	return s
}

// Observe records one attempt that took dispatch, started processing after the event's arrival.
func (s *AttemptSeries) Observe(dispatch, processing time.Duration) {
	d, p := float64(dispatch.Milliseconds()), float64(processing.Milliseconds())
	for i := range knativePrefixes {
		s.count[i].Inc()
		s.dispatch[i].Observe(d)
		s.processing[i].Observe(p)
	}
}

// LabelValue makes s usable as a Prometheus label value: the client panics on invalid UTF-8.
func LabelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// CodeClass is Knative's response_code_class label: "2xx", "4xx", ...
func CodeClass(code int) string {
	if code < 100 || code > 599 {
		return "5xx"
	}
	return strconv.Itoa(code/100) + "xx"
}

// QueueDepth is one broker's queue length at scrape time, and for an in-memory broker the events
// it holds accepted and not yet final (Unfinished; -1 for a broker on a durable log).
type QueueDepth struct {
	Namespace, Broker string
	Depth             int
	Unfinished        int
}

// TriggerLag is how far one trigger is behind at scrape time (broker.Router.TriggerLags).
type TriggerLag struct {
	Namespace, Broker, Trigger string
	Records                    int64
	Seconds                    float64
	// Circuit is the trigger's circuit breaker state (closed, open, half-open), "" without one.
	Circuit string
}

// triggerLagCollector reads trigger lags when Prometheus scrapes.
type triggerLagCollector struct {
	records, seconds, circuit *prometheus.Desc
	lags                      func() []TriggerLag
}

// RegisterTriggerLag exports switchyard_trigger_lag_records and switchyard_trigger_lag_seconds
// from lags, called at each scrape: what an autoscaler scales the dispatch on.
func (m *Metrics) RegisterTriggerLag(lags func() []TriggerLag) {
	labels := []string{"namespace_name", "broker_name", "trigger_name"}
	m.Registry.MustRegister(&triggerLagCollector{
		records: prometheus.NewDesc("switchyard_trigger_lag_records", "Records a trigger still owes: on a Kafka-class broker those of the partitions this process claims not read yet plus the trigger's copies not final (in memory or parked); in memory its broker's queue plus its backlog.", labels, nil),
		seconds: prometheus.NewDesc("switchyard_trigger_lag_seconds", "Age of the oldest event a trigger still owes whose arrival is known (0 when none).", labels, nil),
		circuit: prometheus.NewDesc("switchyard_trigger_circuit_open", "1 while a trigger's circuit breaker is open or half-open (its deliveries held), 0 while closed; only triggers with a breaker.", labels, nil),
		lags:    lags,
	})
}

func (c *triggerLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.records
	ch <- c.seconds
	ch <- c.circuit
}

func (c *triggerLagCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.lags() {
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(l.Records), l.Namespace, l.Broker, l.Trigger)
		ch <- prometheus.MustNewConstMetric(c.seconds, prometheus.GaugeValue, l.Seconds, l.Namespace, l.Broker, l.Trigger)
		if l.Circuit != "" {
			open := 0.0
			if l.Circuit != "closed" {
				open = 1
			}
			ch <- prometheus.MustNewConstMetric(c.circuit, prometheus.GaugeValue, open, l.Namespace, l.Broker, l.Trigger)
		}
	}
}

// queueDepthCollector reads queue depths when Prometheus scrapes, so brokers added or removed by a
// reload need no bookkeeping here.
type queueDepthCollector struct {
	desc, unfinished *prometheus.Desc
	depth            func() []QueueDepth
}

// RegisterQueueDepth exports switchyard_broker_queue_depth and switchyard_broker_unfinished_events
// from depth, called at each scrape.
func (m *Metrics) RegisterQueueDepth(depth func() []QueueDepth) {
	labels := []string{"namespace_name", "broker_name"}
	m.Registry.MustRegister(&queueDepthCollector{
		desc:       prometheus.NewDesc("switchyard_broker_queue_depth", "Events waiting in a broker's queue.", labels, nil),
		unfinished: prometheus.NewDesc("switchyard_broker_unfinished_events", "Events an in-memory broker holds, accepted and not yet final (what switchyard.dev/max-in-flight bounds).", labels, nil),
		depth:      depth,
	})
}

func (c *queueDepthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.unfinished }

func (c *queueDepthCollector) Collect(ch chan<- prometheus.Metric) {
	for _, q := range c.depth() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(q.Depth), q.Namespace, q.Broker)
		if q.Unfinished >= 0 {
			ch <- prometheus.MustNewConstMetric(c.unfinished, prometheus.GaugeValue, float64(q.Unfinished), q.Namespace, q.Broker)
		}
	}
}
