package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/metrics"
	"github.com/switchyard-events/switchyard/router/secret"
	"github.com/switchyard-events/switchyard/router/senderauth"
	"github.com/switchyard-events/switchyard/router/tlsfiles"
	"gopkg.in/yaml.v3"
)

// Annotations Switchyard reads.
const (
	AnnotationBrokerClass   = "eventing.knative.dev/broker.class"
	AnnotationExternalTopic = "kafka.eventing.knative.dev/external.topic"
	AnnotationDeliveryOrder = "kafka.eventing.knative.dev/delivery.order"
	AnnotationConcurrency   = "switchyard.dev/concurrency"
	AnnotationRateLimit     = "switchyard.dev/rate-limit"
	AnnotationMaxInFlight   = "switchyard.dev/max-in-flight"
	// AnnotationDedupWindow on a broker refuses, for that long, an event whose source and id it
	// accepted already (docs/kafka-isolation.md#duplicates-refused-at-the-door-item-6).
	AnnotationDedupWindow = "switchyard.dev/dedup-window"
	// AnnotationPaused "true" holds a trigger's deliveries without deleting it (docs/admin-api.md#pause-and-resume).
	AnnotationPaused = "switchyard.dev/paused"
	// AnnotationStartFrom says where a trigger new to a Kafka-class broker starts reading its
	// topic: latest (Knative's default), earliest, or an RFC 3339 time (docs/kafka.md#where-a-new-trigger-starts).
	AnnotationStartFrom = "switchyard.dev/start-from"
	// AnnotationCircuitBreaker stops a trigger's deliveries for a cool-down after its subscriber
	// failed that many attempts in a row: "failures=5,cooldown=30s" (docs/config.md#circuit-breaker).
	AnnotationCircuitBreaker = "switchyard.dev/circuit-breaker"
	// AnnotationArchiveRetention keeps an in-memory broker's accepted events that long, and
	// AnnotationArchiveFilter (CESQL) narrows what is kept or replayed (docs/archive.md).
	AnnotationArchiveRetention = "switchyard.dev/archive-retention"
	AnnotationArchiveFilter    = "switchyard.dev/archive-filter"
	// AnnotationTLSClientSecret names a Secret (tls.crt, tls.key) whose certificate a trigger
	// presents to its HTTPS subscriber (mTLS).
	AnnotationTLSClientSecret = "switchyard.dev/tls-client-secret"
)

// circuitBreaker parses switchyard.dev/circuit-breaker: "failures=N,cooldown=D", either part
// optional ("" or "on" takes both defaults: 5 failures, 30s).
func (l *loader) circuitBreaker(d *doc, v string) *CircuitBreaker {
	cb := &CircuitBreaker{Failures: DefaultBreakerFailures, Cooldown: DefaultBreakerCooldown}
	if v == "" || v == "on" {
		return cb
	}
	for _, part := range strings.Split(v, ",") {
		key, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch key {
		case "failures":
			n, err := strconv.Atoi(val)
			if err != nil || n < 1 {
				l.errAt(d, "metadata.annotations", "%s: failures must be a whole number of attempts from 1, got %q", AnnotationCircuitBreaker, val)
			}
			cb.Failures = n
		case "cooldown":
			c, err := time.ParseDuration(val)
			if err != nil || c <= 0 {
				l.errAt(d, "metadata.annotations", "%s: cooldown must be a duration above 0 (30s), got %q", AnnotationCircuitBreaker, val)
			}
			cb.Cooldown = c
		default:
			l.errAt(d, "metadata.annotations", "%s takes failures=N and cooldown=DURATION (failures=5,cooldown=30s), got %q", AnnotationCircuitBreaker, part)
		}
	}
	return cb
}

// startFrom parses a trigger's switchyard.dev/start-from. Only a Kafka-class broker has a
// history to start from: on an in-memory broker anything but latest is refused (replay from its
// archive instead, docs/archive.md).
func (l *loader) startFrom(d *doc, v string, b *brokerDoc) router.StartFrom {
	var from router.StartFrom
	switch v {
	case "", "latest":
		return from
	case "earliest":
		from.Earliest = true
	default:
		at, err := time.Parse(time.RFC3339, v)
		if err != nil {
			l.errAt(d, "metadata.annotations", "%s must be latest, earliest or an RFC 3339 time (2026-12-01T00:00:00Z), got %q", AnnotationStartFrom, v)
			return from
		}
		from.At = at
	}
	if b != nil && !kafkaClasses[b.m.Metadata.Annotations[AnnotationBrokerClass]] {
		l.errAt(d, "metadata.annotations", "%s: %s needs a Kafka-class broker, whose topic keeps the events to start from; an in-memory broker starts every trigger at latest (switchyard replay re-sends an archived broker's events)", AnnotationStartFrom, v)
	}
	return from
}

// maxDedupWindow bounds switchyard.dev/dedup-window: the keys remembered are bounded in count,
// and a day covers any producer's retries.
const maxDedupWindow = 24 * time.Hour

// Broker classes served from memory. Knative's own MT class is accepted so that its manifests work
// unchanged; Switchyard is our class name.
var memoryClasses = map[string]bool{"": true, "MTChannelBasedBroker": true, "Switchyard": true}

var (
	attributeName = regexp.MustCompile(`^[a-z][a-z0-9]*$`)
	objectName    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// compile validates everything parsed and builds the Config, or returns every error found.
func (l *loader) compile(files []string) (*Config, error) {
	kafkaConfigs := l.readKafkaBrokerConfigs()
	cfg := &Config{Files: files, Skipped: l.skipped}
	l.destTLS = map[string]*destTLSDoc{}
	defaults := l.compileSettings(&cfg.Settings)
	cfg.Components = l.compileComponents()
	l.compileObjects(cfg)
	if len(l.settings) > 0 {
		cfg.Auth = l.compileAuth(l.settings[0].d, l.settings[0].m.Spec.Ingress.Auth)
	}

	brokers := map[router.BrokerRef]*brokerDoc{}
	for i := range l.brokers {
		b := &l.brokers[i]
		ref, ok := l.objectRef(b.d, &b.m.Metadata)
		if !ok {
			continue
		}
		if prev, dup := brokers[ref]; dup {
			l.errAt(b.d, "metadata.name", "broker %s is defined twice (first at %s:%d)", ref, prev.d.file, prev.d.line(""))
			continue
		}
		brokers[ref] = b
		class := b.m.Metadata.Annotations[AnnotationBrokerClass]
		if kafkaClasses[class] {
			class = "Kafka"
		}
		topic := ""
		switch {
		case class == "Kafka":
			if cfg.Components[KafkaComponentPath] == nil && !l.routingOnly {
				l.errAt(b.d, "metadata.annotations", "broker class Kafka needs a Kafka cluster: set spec.kafka.bootstrapServers in a SwitchyardConfig, or --kafka-bootstrap-servers")
			}
			topic = "knative-broker-" + ref.Namespace + "-" + ref.Name
			if t := b.m.Metadata.Annotations[AnnotationExternalTopic]; t != "" {
				topic = t
			}
		case !memoryClasses[class]:
			l.errAt(b.d, "metadata.annotations", "unknown broker class %q (Switchyard serves Switchyard, MTChannelBasedBroker, Kafka and KafkaNamespaced)", class)
		}
		if _, ok := b.m.Metadata.Annotations[AnnotationExternalTopic]; ok && class != "Kafka" {
			l.errAt(b.d, "metadata.annotations", "%s applies to Kafka-class brokers only", AnnotationExternalTopic)
		}
		maxInFlight := cfg.Settings.MaxInFlight
		if v, ok := b.m.Metadata.Annotations[AnnotationMaxInFlight]; ok {
			n, err := strconv.Atoi(v)
			switch {
			case err != nil || n < 0:
				l.errAt(b.d, "metadata.annotations", "%s must be a whole number of events (0 for no limit), got %q", AnnotationMaxInFlight, v)
			case class == "Kafka":
				l.errAt(b.d, "metadata.annotations", "%s applies to in-memory brokers only (a Kafka-class broker's producers are acknowledged by Kafka)", AnnotationMaxInFlight)
			default:
				maxInFlight = n
			}
		}
		var dedupWindow time.Duration
		if v, ok := b.m.Metadata.Annotations[AnnotationDedupWindow]; ok {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 || d > maxDedupWindow {
				l.errAt(b.d, "metadata.annotations", "%s must be a duration above 0 and up to %s (e.g. 5m), got %q", AnnotationDedupWindow, maxDedupWindow, v)
			}
			dedupWindow = d
		}
		l.parseDelivery(b.d, "spec.delivery", b.m.Spec.Delivery, ref.Namespace, &cfg.Settings, true)
		kc := kafkaConfigs[b]
		cfg.Brokers = append(cfg.Brokers, &Broker{Ref: ref, Class: class, Topic: topic, MaxInFlight: maxInFlight, DedupWindow: dedupWindow,
			Partitions: kc.partitions, ReplicationFactor: kc.replication,
			Archive: l.compileArchive(b.d, b.m.Metadata.Annotations, class == "Kafka", cfg), File: b.d.file, Line: b.d.line("")})
	}

	triggers := map[router.TriggerRef]*triggerDoc{}
	for i := range l.triggers {
		t := &l.triggers[i]
		bref, ok := l.objectRef(t.d, &t.m.Metadata)
		if !ok {
			continue
		}
		ref := router.TriggerRef(bref)
		if prev, dup := triggers[ref]; dup {
			l.errAt(t.d, "metadata.name", "trigger %s is defined twice (first at %s:%d)", ref, prev.d.file, prev.d.line(""))
			continue
		}
		triggers[ref] = t
		if tr := l.compileTrigger(t, ref, brokers, defaults, &cfg.Settings); tr != nil {
			cfg.Triggers = append(cfg.Triggers, tr)
		}
	}

	l.compileFlows(cfg, brokers, defaults)
	cfg.Webhooks = l.compileWebhooks(brokers, &cfg.Settings)
	cfg.KafkaSources = l.compileKafkaSources(brokers, &cfg.Settings)
	cfg.PingSources = l.compilePingSources(brokers, &cfg.Settings)
	auth := senderauth.New(cfg.Auth)
	for _, w := range cfg.Webhooks {
		if b := w.Sink.Broker; b != nil && auth.Protects(*b) {
			// Not an error: a webhook's own signature check is what vouches for its events.
			cfg.Warnings = append(cfg.Warnings, &Error{File: w.File, Line: w.Line, Path: "spec.sink",
				Msg: fmt.Sprintf("webhook source %s/%s publishes into broker %s, which spec.ingress.auth protects: its events are vouched for by the webhook's %s verification, not by the broker's policy", w.Namespace, w.Name, b, w.Provider)})
		}
	}

	if len(l.destTLS) > 0 {
		cfg.DestinationTLS = make(map[string]DestinationTLS, len(l.destTLS))
		for u, e := range l.destTLS {
			cfg.DestinationTLS[u] = e.tls
		}
	}
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool {
			if l.errs[i].File != l.errs[j].File {
				return l.errs[i].File < l.errs[j].File
			}
			return l.errs[i].Line < l.errs[j].Line
		})
		return nil, l.errs
	}
	return cfg, nil
}

// uniqueRef is objectRef for the documents of one kind: a second document of the same name is an
// error at the second (seen remembers the names so far).
func (l *loader) uniqueRef(d *doc, m *objectMeta, kind string, seen map[router.BrokerRef]bool) (router.BrokerRef, bool) {
	ref, ok := l.objectRef(d, m)
	if !ok {
		return ref, false
	}
	if seen[ref] {
		l.errAt(d, "metadata.name", "%s %s is defined twice", kind, ref)
		return ref, false
	}
	seen[ref] = true
	return ref, true
}

func (l *loader) objectRef(d *doc, m *objectMeta) (router.BrokerRef, bool) {
	ok := true
	if m.Name == "" {
		l.errAt(d, "metadata.name", "must be set")
		ok = false
	} else if len(m.Name) > 253 || !objectName.MatchString(m.Name) {
		l.errAt(d, "metadata.name", "%q is not a valid name (lower-case letters, digits, '-' and '.')", m.Name)
		ok = false
	}
	ns := m.Namespace
	if ns == "" {
		ns = "default"
	} else if len(ns) > 63 || !objectName.MatchString(ns) || strings.Contains(ns, ".") {
		l.errAt(d, "metadata.namespace", "%q is not a valid namespace", ns)
		ok = false
	}
	return router.BrokerRef{Namespace: ns, Name: m.Name}, ok
}

// compileSettings fills s from the SwitchyardConfig document (or defaults) and returns the
// delivery defaults it sets.
func (l *loader) compileSettings(s *Settings) deliveryFields {
	*s = Settings{
		Addr: DefaultAddr, AdminAddr: DefaultAdminAddr, MaxBodyBytes: DefaultMaxBodyBytes, MaxResponseHeaderBytes: delivery.DefaultMaxResponseHeaderBytes,
		MaxReplyBytesInFlight: delivery.DefaultMaxReplyBytesInFlight,
		MaxBodyBytesInFlight:  DefaultMaxBodyBytesInFlight, MaxUnfinishedBytes: DefaultMaxUnfinishedBytes,
		MaxResultEventBytes: DefaultMaxResultEventBytes, MaxResultOutcomeBytes: DefaultMaxResultOutcomeBytes, ReadHeaderTimeout: DefaultReadHeaderTimeout, ReadTimeout: DefaultReadTimeout, IdleTimeout: DefaultIdleTimeout,
		QueueSize: DefaultQueueSize, MaxInFlightWait: DefaultMaxInFlightWait, MaxTTL: DefaultMaxTTL, MaxRepliesPerEvent: DefaultMaxRepliesPerEvent, ClusterDomain: DefaultClusterDomain,
		TriggerConcurrency: DefaultTriggerConcurrency, TriggerPending: DefaultTriggerPending, TriggerPendingWait: DefaultTriggerPendingWait,
		MaxOutcomes: DefaultMaxOutcomes, MaxEventTypes: metrics.DefaultMaxEventTypes, ShutdownGrace: DefaultShutdownGrace,
		ReloadInterval: DefaultReloadInterval, LogFormat: "json", LogLevel: "info",
	}
	defer l.applyOverrides(s)
	if len(l.settings) == 0 {
		return deliveryFields{}
	}
	for _, extra := range l.settings[1:] {
		l.errAt(extra.d, "kind", "only one SwitchyardConfig is allowed (first at %s:%d)", l.settings[0].d.file, l.settings[0].d.line(""))
	}
	d, spec := l.settings[0].d, &l.settings[0].m.Spec
	setAddr := func(path, v string, dst *string) {
		if v == "" {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			l.errAt(d, path, "%q is not host:port (e.g. :8080 or 127.0.0.1:8080)", v)
			return
		}
		*dst = v
	}
	setAddr("spec.ingress.addr", spec.Ingress.Addr, &s.Addr)
	setAddr("spec.admin.addr", spec.Admin.Addr, &s.AdminAddr)
	s.IngressTLS = l.listenerTLS(d, "spec.ingress.tls", spec.Ingress.TLS)
	s.AdminTLS = l.listenerTLS(d, "spec.admin.tls", spec.Admin.TLS)
	if a := spec.Admin.Auth; a != nil {
		s.AdminAuth = l.compileAdminAuth(d, a.Readers, a.Operators)
	}
	if v := spec.Admin.TraceURL; v != "" {
		u, err := url.Parse(strings.ReplaceAll(v, "{traceId}", "0"))
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			l.errAt(d, "spec.admin.traceURL", "%q is not an http(s) URL", v)
		case !strings.Contains(v, "{traceId}"):
			l.errAt(d, "spec.admin.traceURL", "%q has no {traceId} to put the trace id in (e.g. http://jaeger:16686/trace/{traceId})", v)
		default:
			s.AdminTraceURL = v
		}
	}
	positive := func(path string, v *int, dst *int) { setPositive(l, d, path, v, dst) }
	positive64 := func(path string, v *int64, dst *int64) { setPositive(l, d, path, v, dst) }
	positive64("spec.ingress.maxBodyBytes", spec.Ingress.MaxBodyBytes, &s.MaxBodyBytes)
	positive64("spec.subscribers.maxResponseHeaderBytes", spec.Subscribers.MaxResponseHeaderBytes, &s.MaxResponseHeaderBytes)
	positive64("spec.subscribers.maxReplyBytesInFlight", spec.Subscribers.MaxReplyBytesInFlight, &s.MaxReplyBytesInFlight)
	positive64("spec.ingress.maxBodyBytesInFlight", spec.Ingress.MaxBodyBytesInFlight, &s.MaxBodyBytesInFlight)
	positive64("spec.ingress.maxUnfinishedBytes", spec.Ingress.MaxUnfinishedBytes, &s.MaxUnfinishedBytes)
	positive("spec.ingress.queueSize", spec.Ingress.QueueSize, &s.QueueSize)
	if v := spec.Ingress.MaxInFlight; v != nil {
		if *v < 0 {
			l.errAt(d, "spec.ingress.maxInFlight", "must be 0 (no limit) or positive, got %d", *v)
		} else {
			s.MaxInFlight = *v
		}
	}
	if v := spec.Ingress.MaxRepliesPerEvent; v != nil {
		if *v < 0 {
			l.errAt(d, "spec.ingress.maxRepliesPerEvent", "must be 0 (no replies are published) or positive, got %d", *v)
		} else {
			s.MaxRepliesPerEvent = *v
		}
	}
	if v := spec.Ingress.MaxTTL; v != nil {
		if *v <= 0 {
			l.errAt(d, "spec.ingress.maxTTL", "must be positive, got %d", *v)
		} else {
			s.MaxTTL = *v
		}
	}
	positive("spec.triggers.concurrency", spec.Triggers.Concurrency, &s.TriggerConcurrency)
	positive("spec.triggers.pending", spec.Triggers.Pending, &s.TriggerPending)
	positive("spec.results.memory.maxOutcomes", spec.Results.Memory.MaxOutcomes, &s.MaxOutcomes)
	positive64("spec.results.memory.maxEventBytes", spec.Results.Memory.MaxEventBytes, &s.MaxResultEventBytes)
	positive64("spec.results.memory.maxOutcomeBytes", spec.Results.Memory.MaxOutcomeBytes, &s.MaxResultOutcomeBytes)
	positive("spec.metrics.maxEventTypes", spec.Metrics.MaxEventTypes, &s.MaxEventTypes)
	if spec.ClusterDomain != "" {
		s.ClusterDomain = spec.ClusterDomain
	}
	goDuration := func(path, v string, dst *time.Duration) {
		if v == "" {
			return
		}
		dur, err := time.ParseDuration(v)
		if err != nil || dur <= 0 {
			l.errAt(d, path, "%q is not a positive duration such as 30s or 1m", v)
			return
		}
		*dst = dur
	}
	goDuration("spec.ingress.maxInFlightWait", spec.Ingress.MaxInFlightWait, &s.MaxInFlightWait)
	goDuration("spec.ingress.readHeaderTimeout", spec.Ingress.ReadHeaderTimeout, &s.ReadHeaderTimeout)
	goDuration("spec.ingress.readTimeout", spec.Ingress.ReadTimeout, &s.ReadTimeout)
	goDuration("spec.ingress.idleTimeout", spec.Ingress.IdleTimeout, &s.IdleTimeout)
	goDuration("spec.shutdownGracePeriod", spec.ShutdownGracePeriod, &s.ShutdownGrace)
	goDuration("spec.triggers.pendingWait", spec.Triggers.PendingWait, &s.TriggerPendingWait)
	goDuration("spec.reloadInterval", spec.ReloadInterval, &s.ReloadInterval)
	switch spec.Log.Format {
	case "":
	case "json", "console":
		s.LogFormat = spec.Log.Format
	default:
		l.errAt(d, "spec.log.format", "%q is not json or console", spec.Log.Format)
	}
	switch spec.Log.Level {
	case "":
	case "debug", "info", "warn", "error":
		s.LogLevel = spec.Log.Level
	default:
		l.errAt(d, "spec.log.level", "%q is not debug, info, warn or error", spec.Log.Level)
	}
	return l.parseDelivery(d, "spec.delivery", spec.Delivery, "default", s, true)
}

func (l *loader) compileTrigger(t *triggerDoc, ref router.TriggerRef, brokers map[router.BrokerRef]*brokerDoc, defaults deliveryFields, s *Settings) *Trigger {
	before := len(l.errs)
	spec := &t.m.Spec
	tr := &Trigger{Ref: ref, File: t.d.file, Line: t.d.line(""), Concurrency: s.TriggerConcurrency, Pending: s.TriggerPending, PendingWait: s.TriggerPendingWait}

	var brokerDelivery deliveryFields
	if spec.Broker == "" {
		l.errAt(t.d, "spec.broker", "must name the trigger's broker")
	} else {
		tr.Broker = router.BrokerRef{Namespace: ref.Namespace, Name: spec.Broker}
		if b, ok := brokers[tr.Broker]; !ok {
			l.errAt(t.d, "spec.broker", "broker %s is not defined in this configuration", tr.Broker)
		} else {
			brokerDelivery = l.parseDelivery(b.d, "spec.delivery", b.m.Spec.Delivery, tr.Broker.Namespace, s, false)
		}
	}

	// A non-empty filters wins over filter, as in Knative.
	switch {
	case len(spec.Filters) > 0:
		children := make([]filter.Filter, 0, len(spec.Filters))
		for i := range spec.Filters {
			if f := l.compileFilter(t.d, fmt.Sprintf("spec.filters[%d]", i), &spec.Filters[i]); f != nil {
				children = append(children, f)
			}
		}
		tr.Filter = filter.All(children...)
	case spec.Filter != nil && len(spec.Filter.Attributes) > 0:
		for k := range spec.Filter.Attributes {
			if !attributeName.MatchString(k) {
				l.errAt(t.d, "spec.filter.attributes."+k, "attribute names are lower-case letters and digits, starting with a letter")
			}
		}
		tr.Filter = filter.Attributes(spec.Filter.Attributes)
	default:
		tr.Filter = filter.All()
	}

	if spec.Subscriber == nil {
		l.errAt(t.d, "spec.subscriber", "must be set (uri, or ref to a Service)")
	} else {
		tr.Subscriber = l.resolveDestination(t.d, "spec.subscriber", spec.Subscriber, ref.Namespace, s)
	}
	if name, ok := t.m.Metadata.Annotations[AnnotationTLSClientSecret]; ok {
		switch {
		case !objectName.MatchString(name):
			l.errAt(t.d, "metadata.annotations", "%s must name a Secret (with tls.crt and tls.key), got %q", AnnotationTLSClientSecret, name)
		case tr.Subscriber != "" && !strings.HasPrefix(tr.Subscriber, "https://"):
			l.errAt(t.d, "metadata.annotations", "%s needs an https subscriber, got %s", AnnotationTLSClientSecret, router.RedactURL(tr.Subscriber))
		case tr.Subscriber != "":
			l.addDestinationTLS(t.d, "metadata.annotations", tr.Subscriber, nil, name)
		}
	}
	own := l.parseDelivery(t.d, "spec.delivery", spec.Delivery, ref.Namespace, s, true)
	tr.Delivery = resolvePolicy(defaults, brokerDelivery, own)

	ann := t.m.Metadata.Annotations
	switch ann[AnnotationPaused] {
	case "", "false":
	case "true":
		tr.Paused = true
	default:
		l.errAt(t.d, "metadata.annotations", "%s must be \"true\" or \"false\", got %q", AnnotationPaused, ann[AnnotationPaused])
	}
	if v, ok := ann[AnnotationCircuitBreaker]; ok {
		tr.CircuitBreaker = l.circuitBreaker(t.d, v)
	}
	if v, ok := ann[AnnotationStartFrom]; ok {
		tr.StartFrom = l.startFrom(t.d, v, brokers[tr.Broker])
	}
	switch ann[AnnotationDeliveryOrder] {
	case "", "unordered":
	case "ordered":
		tr.Ordered = true
	default:
		l.errAt(t.d, "metadata.annotations", "%s must be ordered or unordered, got %q", AnnotationDeliveryOrder, ann[AnnotationDeliveryOrder])
	}
	if v, ok := ann[AnnotationConcurrency]; ok {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n <= 0:
			l.errAt(t.d, "metadata.annotations", "%s must be a positive integer, got %q", AnnotationConcurrency, v)
		default:
			tr.Concurrency = n
		}
	}
	if v, ok := ann[AnnotationRateLimit]; ok {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r <= 0 {
			l.errAt(t.d, "metadata.annotations", "%s must be a positive number of events per second, got %q", AnnotationRateLimit, v)
		} else {
			tr.RateLimit = r
		}
	}
	if len(l.errs) > before {
		return nil
	}
	return tr
}

// compileFilter compiles one object of a filters array, which must use exactly one dialect.
func (l *loader) compileFilter(d *doc, path string, f *filterSpec) filter.Filter {
	var set []string
	if f.Exact != nil {
		set = append(set, "exact")
	}
	if f.Prefix != nil {
		set = append(set, "prefix")
	}
	if f.Suffix != nil {
		set = append(set, "suffix")
	}
	if f.All != nil {
		set = append(set, "all")
	}
	if f.Any != nil {
		set = append(set, "any")
	}
	if f.Not != nil {
		set = append(set, "not")
	}
	if f.CESQL != nil {
		set = append(set, "cesql")
	}
	switch len(set) {
	case 0:
		l.errAt(d, path, "empty filter: set exactly one of exact, prefix, suffix, all, any, not, cesql")
		return nil
	case 1:
	default:
		l.errAt(d, path, "sets %s: a filter object takes exactly one dialect", strings.Join(set, " and "))
		return nil
	}
	compare := func(dialect string, m map[string]string, build func(map[string]string) filter.Filter) filter.Filter {
		p := path + "." + dialect
		if len(m) == 0 {
			l.errAt(d, p, "must name at least one attribute")
			return nil
		}
		ok := true
		for k, v := range m {
			if !attributeName.MatchString(k) {
				l.errAt(d, p+"."+k, "attribute names are lower-case letters and digits, starting with a letter")
				ok = false
			}
			if v == "" {
				l.errAt(d, p+"."+k, "value must not be empty")
				ok = false
			}
		}
		if !ok {
			return nil
		}
		return build(m)
	}
	children := func(dialect string, specs []filterSpec) []filter.Filter {
		if len(specs) == 0 {
			l.errAt(d, path+"."+dialect, "must hold at least one filter")
			return nil
		}
		out := make([]filter.Filter, 0, len(specs))
		for i := range specs {
			if c := l.compileFilter(d, fmt.Sprintf("%s.%s[%d]", path, dialect, i), &specs[i]); c != nil {
				out = append(out, c)
			}
		}
		if len(out) != len(specs) {
			return nil
		}
		return out
	}
	switch set[0] {
	case "exact":
		return compare("exact", f.Exact, filter.Exact)
	case "prefix":
		return compare("prefix", f.Prefix, filter.Prefix)
	case "suffix":
		return compare("suffix", f.Suffix, filter.Suffix)
	case "all":
		if c := children("all", f.All); c != nil {
			return filter.All(c...)
		}
	case "any":
		if c := children("any", f.Any); c != nil {
			return filter.Any(c...)
		}
	case "not":
		if c := l.compileFilter(d, path+".not", f.Not); c != nil {
			return filter.Not(c)
		}
	case "cesql":
		if strings.TrimSpace(*f.CESQL) == "" {
			l.errAt(d, path+".cesql", "expression must not be empty")
			return nil
		}
		c, err := filter.CESQL(*f.CESQL)
		if err != nil {
			l.errAt(d, path+".cesql", "%v", err)
			return nil
		}
		return c
	}
	return nil
}

// resolveDestination turns a Knative Destination into a URL.
func (l *loader) resolveDestination(d *doc, path string, dst *destination, namespace string, s *Settings) string {
	u := l.resolveDestinationURL(d, path, dst, namespace, s)
	if u != "" && dst.CACerts != nil {
		if err := tlsfiles.CheckCAPEM([]byte(*dst.CACerts)); err != nil {
			l.errAt(d, path+".CACerts", "%v", err)
		} else if !strings.HasPrefix(u, "https://") {
			l.errAt(d, path+".CACerts", "applies to https destinations, not %s", router.RedactURL(u))
		} else {
			l.addDestinationTLS(d, path+".CACerts", u, []byte(*dst.CACerts), "")
		}
	}
	return u
}

// destTLSDoc is what one destination URL trusts and presents, and where that was said first.
type destTLSDoc struct {
	tls      DestinationTLS
	caAt     string // file:line of the CACerts, "" when none
	secretAt string
}

// addDestinationTLS records CA certificates or a client Secret for destination u. TLS applies per
// URL (a connection to it is one TLS session), so two places giving the same URL different CAs or
// Secrets are a conflict, reported at the second.
func (l *loader) addDestinationTLS(d *doc, path, u string, ca []byte, secret string) {
	at := fmt.Sprintf("%s:%d", d.file, d.line(path))
	e := l.destTLS[u]
	if e == nil {
		e = &destTLSDoc{}
		l.destTLS[u] = e
	}
	if ca != nil {
		if e.caAt != "" && !bytes.Equal(e.tls.CAPEM, ca) {
			l.errAt(d, path, "%s has other CACerts at %s: one destination URL has one set of CA certificates", router.RedactURL(u), e.caAt)
			return
		}
		e.tls.CAPEM, e.caAt = ca, at
	}
	if secret != "" {
		if e.secretAt != "" && e.tls.ClientSecret != secret {
			l.errAt(d, path, "%s presents Secret %s at %s: one destination URL presents one client certificate", router.RedactURL(u), e.tls.ClientSecret, e.secretAt)
			return
		}
		e.tls.ClientSecret, e.secretAt = secret, at
	}
}

func (l *loader) resolveDestinationURL(d *doc, path string, dst *destination, namespace string, s *Settings) string {
	if dst.Audience != nil {
		l.errAt(d, path+".audience", "OIDC audiences are not supported yet")
	}
	var base *url.URL
	if r := dst.Ref; r != nil {
		ns := r.Namespace
		if ns == "" {
			ns = namespace
		}
		switch {
		case r.Name == "":
			l.errAt(d, path+".ref.name", "must be set")
			return ""
		case r.Address != "":
			l.errAt(d, path+".ref.address", "named addresses of Addressables are not supported; use uri")
			return ""
		case l.resolveRef != nil:
			addr, err := l.resolveRef(ObjectRef{APIVersion: r.APIVersion, Kind: r.Kind, Namespace: ns, Name: r.Name})
			if err != nil {
				l.errAt(d, path+".ref", "%v", err)
				return ""
			}
			if base, err = url.Parse(addr); err != nil || !base.IsAbs() {
				l.errAt(d, path+".ref", "%s %s/%s has no usable address (%q)", r.Kind, ns, r.Name, addr)
				return ""
			}
		case r.Kind == "Broker" && r.APIVersion == knativeEventingV1:
			// A Broker of this configuration (Knative's bookstore sends a trigger's events on to
			// another broker): its address is this router's own ingress.
			if !l.hasBroker(ns, r.Name) {
				l.errAt(d, path+".ref", "Broker %s/%s is not in this configuration: define it, or use the uri of the broker that serves it", ns, r.Name)
				return ""
			}
			base = selfIngressURL(s, ns, r.Name)
		case l.kindRef(r, ns) != nil:
			// An object a component serves on this router's ingress (a CassandraSink).
			base = selfIngressURL(s, "", "")
			base.Path = l.kindRef(r, ns).Path(ns, r.Name)
		case l.kindFor(typeMeta{APIVersion: r.APIVersion, Kind: r.Kind}) != nil && l.routingOnly:
			// A dry run's candidate reads no such objects, and needs only the address to compare routes.
			base = selfIngressURL(s, "", "")
			base.Path = l.kindFor(typeMeta{APIVersion: r.APIVersion, Kind: r.Kind}).Path(ns, r.Name)
		case l.kindFor(typeMeta{APIVersion: r.APIVersion, Kind: r.Kind}) != nil:
			l.errAt(d, path+".ref", "%s %s/%s is not in this configuration: define it, or use the uri of what serves it", r.Kind, ns, r.Name)
			return ""
		case r.APIVersion == flowsV1 && flowEntry(r.Kind, r.Name) != "":
			// A Sequence or Parallel of this configuration: its address is its first broker's.
			if !l.hasFlow(r.Kind, ns, r.Name) {
				l.errAt(d, path+".ref", "%s %s/%s is not in this configuration: define it, or use the uri of what serves it", r.Kind, ns, r.Name)
				return ""
			}
			base = selfIngressURL(s, ns, flowEntry(r.Kind, r.Name))
		case r.Kind == "Service" && (r.APIVersion == "v1" || r.APIVersion == "serving.knative.dev/v1"):
			scheme := "http"
			if dst.CACerts != nil {
				scheme = "https" // as Knative resolves a Service with CACerts
			}
			base = &url.URL{Scheme: scheme, Host: r.Name + "." + ns + ".svc." + s.ClusterDomain, Path: "/"}
		default:
			l.errAt(d, path+".ref", "cannot resolve a ref to %s %s outside Kubernetes: refs to v1 Service and serving.knative.dev/v1 Service are supported; use uri for anything else", r.APIVersion, r.Kind)
			return ""
		}
	}
	if dst.URI == "" {
		if base == nil {
			l.errAt(d, path, "set uri or ref")
			return ""
		}
		return base.String()
	}
	u, err := url.Parse(dst.URI)
	if err != nil {
		l.errAt(d, path+".uri", "%q is not a URL: %v", dst.URI, err)
		return ""
	}
	if base != nil {
		if u.IsAbs() {
			l.errAt(d, path+".uri", "must be relative to the ref (e.g. /path), got %q", dst.URI)
			return ""
		}
		return base.ResolveReference(u).String()
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		l.errAt(d, path+".uri", "must be an absolute http or https URL, got %q", dst.URI)
		return ""
	}
	return u.String()
}

// hasBroker reports whether the configuration defines Broker ns/name.
func (l *loader) hasBroker(ns, name string) bool {
	for i := range l.brokers {
		m := &l.brokers[i].m.Metadata
		bns := m.Namespace
		if bns == "" {
			bns = "default"
		}
		if bns == ns && m.Name == name {
			return true
		}
	}
	return false
}

// selfIngressURL is where this router takes Broker ns/name's events: its ingress address, the
// loopback when it listens on every interface, https when the ingress serves TLS.
func selfIngressURL(s *Settings, ns, name string) *url.URL {
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		host, port = "", "8080"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if s.IngressTLS != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port), Path: "/" + ns + "/" + name}
}

// deliveryFields is a parsed DeliverySpec: nil fields are unset, so layers merge field by field.
type deliveryFields struct {
	retry         *int
	backoff       *delivery.Backoff
	delay         *time.Duration
	timeout       *time.Duration
	retryAfterMax *time.Duration
	backoffMax    *time.Duration
	deadLetter    *string
	format        *delivery.Format
}

// parseDelivery parses spec; report is false when the same spec was already checked (a broker's
// delivery is read again for each of its triggers).
func (l *loader) parseDelivery(d *doc, path string, spec *deliverySpec, namespace string, s *Settings, report bool) deliveryFields {
	var out deliveryFields
	if spec == nil {
		return out
	}
	sink := l
	if !report {
		sink = &loader{}
	}
	if spec.Retry != nil {
		if *spec.Retry < 0 {
			sink.errAt(d, path+".retry", "must not be negative, got %d", *spec.Retry)
		} else {
			n := int(*spec.Retry)
			out.retry = &n
		}
	}
	if spec.BackoffPolicy != nil {
		var b delivery.Backoff
		switch *spec.BackoffPolicy {
		case "exponential":
			b = delivery.Exponential
		case "linear":
			b = delivery.Linear
		default:
			sink.errAt(d, path+".backoffPolicy", "must be exponential or linear, got %q", *spec.BackoffPolicy)
		}
		out.backoff = &b
	}
	iso := func(field string, v *string) *time.Duration {
		if v == nil {
			return nil
		}
		dur, err := parseISODuration(*v)
		if err != nil {
			sink.errAt(d, path+"."+field, "%v", err)
			return nil
		}
		return &dur
	}
	out.delay = iso("backoffDelay", spec.BackoffDelay)
	out.timeout = iso("timeout", spec.Timeout)
	if out.timeout != nil && *out.timeout == 0 {
		sink.errAt(d, path+".timeout", "must be longer than zero")
	}
	out.retryAfterMax = iso("retryAfterMax", spec.RetryAfterMax)
	out.backoffMax = iso("backoffMax", spec.BackoffMax)
	if out.backoffMax != nil && *out.backoffMax == 0 {
		sink.errAt(d, path+".backoffMax", "must be longer than zero")
	}
	if spec.Format != nil {
		var f delivery.Format
		switch *spec.Format {
		case "json":
			f = delivery.Structured
		case "binary":
			f = delivery.Binary
		default:
			sink.errAt(d, path+".format", "must be json or binary, got %q", *spec.Format)
		}
		out.format = &f
	}
	if spec.DeadLetterSink != nil {
		u := sink.resolveDestination(d, path+".deadLetterSink", spec.DeadLetterSink, namespace, s)
		out.deadLetter = &u
	}
	return out
}

// resolvePolicy merges delivery layers field by field, later layers winning, over the built-in
// defaults. (Knative's MT broker replaces the broker's whole block with the trigger's, so a trigger
// that sets only retry loses the broker's dead-letter sink; the Kafka broker merges, and so do we.)
func resolvePolicy(layers ...deliveryFields) delivery.Policy {
	p := delivery.Policy{Retry: DefaultRetry, Backoff: delivery.Exponential, Delay: DefaultBackoffDelay, Timeout: DefaultTimeout}
	for _, f := range layers {
		if f.retry != nil {
			p.Retry = *f.retry
		}
		if f.backoff != nil {
			p.Backoff = *f.backoff
		}
		if f.delay != nil {
			p.Delay = *f.delay
		}
		if f.timeout != nil {
			p.Timeout = *f.timeout
		}
		if f.retryAfterMax != nil {
			p.RetryAfterMax = *f.retryAfterMax
		}
		if f.backoffMax != nil {
			p.BackoffMax = *f.backoffMax
		}
		if f.deadLetter != nil {
			p.DeadLetterSink = *f.deadLetter
		}
		if f.format != nil {
			p.Format = *f.format
		}
	}
	return p
}

// compileAuth validates sender-authentication policies and reads their secrets. Errors name the
// file or variable, never its content.
func (l *loader) compileAuth(d *doc, specs []authSpec) []senderauth.Policy {
	var out []senderauth.Policy
	for i, a := range specs {
		path := fmt.Sprintf("spec.ingress.auth[%d]", i)
		p := senderauth.Policy{Brokers: a.Brokers}
		if len(a.Brokers) == 0 {
			l.errAt(d, path+".brokers", "must name at least one broker (namespace/name or namespace/*)")
		}
		for j, b := range a.Brokers {
			ns, name, ok := strings.Cut(b, "/")
			if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
				l.errAt(d, fmt.Sprintf("%s.brokers[%d]", path, j), "%q is not namespace/name or namespace/*", b)
			}
		}
		l.compileCredentials(d, path, &a.credentialsSpec, &p)
		out = append(out, p)
	}
	return out
}

// applyOverrides applies the command line's settings over the files' ones, checking them as the
// files' are; an error names the flag.
func (l *loader) applyOverrides(s *Settings) {
	o := l.overrides
	if o == nil {
		return
	}
	flag := &doc{file: "command line", root: &yaml.Node{}}
	addr := func(name string, v *string, dst *string) {
		if v == nil {
			return
		}
		if _, _, err := net.SplitHostPort(*v); err != nil {
			l.errAt(flag, "--"+name, "%q is not host:port (e.g. :8080 or 127.0.0.1:8080)", *v)
			return
		}
		*dst = *v
	}
	addr("addr", o.Addr, &s.Addr)
	addr("admin-addr", o.AdminAddr, &s.AdminAddr)
	if o.ShutdownGrace != nil {
		s.ShutdownGrace = *o.ShutdownGrace
	}
	if o.LogFormat != nil {
		switch *o.LogFormat {
		case "json", "console":
			s.LogFormat = *o.LogFormat
		default:
			l.errAt(flag, "--log-format", "%q is not json or console", *o.LogFormat)
		}
	}
	if o.LogLevel != nil {
		switch *o.LogLevel {
		case "debug", "info", "warn", "error":
			s.LogLevel = *o.LogLevel
		default:
			l.errAt(flag, "--log-level", "%q is not debug, info, warn or error", *o.LogLevel)
		}
	}
}

// setPositive sets *dst to *v when v is set, reporting a value that is not positive at path.
func setPositive[T int | int32 | int64](l *loader, d *doc, path string, v *T, dst *T) {
	if v == nil {
		return
	}
	if *v <= 0 {
		l.errAt(d, path, "must be positive, got %d", *v)
		return
	}
	*dst = *v
}

// listenerTLS checks a listener's TLS settings. The files are read when the listener starts (a
// Secret is mounted where serve runs, not always where validate does).
func (l *loader) listenerTLS(d *doc, path string, t *listenerTLSSpec) *ListenerTLS {
	if t == nil {
		return nil
	}
	if t.CertFile == "" || t.KeyFile == "" {
		l.errAt(d, path, "certFile and keyFile are both needed")
	}
	switch t.ClientAuth {
	case "", "require", "verify-if-given":
	default:
		l.errAt(d, path+".clientAuth", "%q is not require or verify-if-given", t.ClientAuth)
	}
	if t.ClientAuth != "" && t.ClientCAFile == "" {
		l.errAt(d, path+".clientAuth", "needs clientCAFile, the CA that issues client certificates")
	}
	return &ListenerTLS{CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, ClientAuth: t.ClientAuth}
}

// compileAdminAuth compiles spec.admin.auth: who may read the admin API, and who may also act.
func (l *loader) compileAdminAuth(d *doc, readers, operators *credentialsSpec) *AdminAuth {
	out := &AdminAuth{}
	if readers == nil && operators == nil {
		l.errAt(d, "spec.admin.auth", "set readers, operators, or both")
	}
	if readers != nil {
		out.Readers = &senderauth.Policy{}
		l.compileCredentials(d, "spec.admin.auth.readers", readers, out.Readers)
	}
	if operators != nil {
		out.Operators = &senderauth.Policy{}
		l.compileCredentials(d, "spec.admin.auth.operators", operators, out.Operators)
	}
	return out
}

// compileCredentials reads a's tokens and JWT settings into p.
func (l *loader) compileCredentials(d *doc, path string, a *credentialsSpec, p *senderauth.Policy) {
	for j := range a.Tokens {
		tp := fmt.Sprintf("%s.tokens[%d]", path, j)
		if f := a.Tokens[j].File; f != "" && a.Tokens[j].Env == "" {
			// Read again whenever the file changes: a revoked token stops working at once.
			ref := secret.Ref{File: f}
			if _, err := ref.Read(""); err != nil {
				l.errAt(d, tp+".file", "%v", err)
				continue
			}
			p.TokenFiles = append(p.TokenFiles, secret.Watch(ref, ""))
			continue
		}
		if v, ok := l.readSecret(d, tp, &a.Tokens[j]); ok {
			p.Tokens = append(p.Tokens, v)
		}
	}
	if j := a.JWT; j != nil {
		p.JWT = &senderauth.JWT{Issuer: j.Issuer, Audiences: j.Audiences, Subjects: j.Subjects}
		if j.MaxTokenAge != "" {
			if age, err := time.ParseDuration(j.MaxTokenAge); err != nil || age <= 0 {
				l.errAt(d, path+".jwt.maxTokenAge", "%q is not a positive duration such as 1h", j.MaxTokenAge)
			} else {
				p.JWT.MaxAge = age
			}
		}
		sources := 0
		for _, set := range []bool{j.HMACSecret != nil, j.PublicKeyFile != "", j.JWKSFile != "", j.JWKSURL != "", j.OIDCDiscovery} {
			if set {
				sources++
			}
		}
		if j.HMACSecret == nil && sources > 0 && len(j.Audiences) == 0 {
			// Public keys verify every token their issuer signs, for any service: without an
			// audience, any token of that issuer (any service account's) would do.
			l.errAt(d, path+".jwt.audiences", "must name at least one audience when tokens are verified with public keys: otherwise any token of the issuer is accepted")
		}
		switch {
		case sources > 1:
			l.errAt(d, path+".jwt", "set one of hmacSecret, publicKeyFile, jwksFile, jwksURL or oidcDiscovery")
		case j.JWKSFile != "" || j.JWKSURL != "" || j.OIDCDiscovery:
			if j.OIDCDiscovery && j.Issuer == "" {
				l.errAt(d, path+".jwt.issuer", "oidcDiscovery needs the issuer whose /.well-known/openid-configuration to read")
				break
			}
			issuer := ""
			if j.OIDCDiscovery {
				issuer = j.Issuer
			}
			ks, err := senderauth.NewKeySet(senderauth.KeySetOptions{File: j.JWKSFile, URL: j.JWKSURL, Issuer: issuer, CAFile: j.CAFile, BearerTokenFile: j.BearerTokenFile})
			if err != nil {
				l.errAt(d, path+".jwt", "%v", err)
				break
			}
			p.JWT.Keys = ks
		case j.HMACSecret != nil:
			if v, ok := l.readSecret(d, path+".jwt.hmacSecret", j.HMACSecret); ok {
				p.JWT.Key = v
			}
		case j.PublicKeyFile != "":
			pemBytes, err := os.ReadFile(j.PublicKeyFile)
			if err != nil {
				l.errAt(d, path+".jwt.publicKeyFile", "cannot read %s: %v", j.PublicKeyFile, errors.Unwrap(err))
				break
			}
			key, err := senderauth.ParsePublicKey(pemBytes)
			if err != nil {
				l.errAt(d, path+".jwt.publicKeyFile", "%s: %v", j.PublicKeyFile, err)
				break
			}
			p.JWT.Key = key
		default:
			l.errAt(d, path+".jwt", "needs hmacSecret, publicKeyFile, jwksFile, jwksURL or oidcDiscovery to verify signatures")
		}
	}
	if len(a.Tokens) == 0 && a.JWT == nil {
		l.errAt(d, path, "set tokens, jwt, or both")
	}
}

// readSecret reads a secret from its file or environment variable.
func (l *loader) readSecret(d *doc, path string, s *secretValue) ([]byte, bool) {
	field := ".file"
	switch {
	case s.File != "" && s.Env != "":
		l.errAt(d, path, "set file or env, not both")
		return nil, false
	case s.Env != "":
		field = ".env"
	case s.File == "":
		l.errAt(d, path, "set file or env")
		return nil, false
	}
	v, err := secret.Ref{File: s.File, Env: s.Env}.Read("")
	if err != nil {
		l.errAt(d, path+field, "%v", err)
		return nil, false
	}
	return v, true
}

// compileArchive reads a broker's archive annotations: nil when it keeps no archive. A Kafka-class
// broker's topic is its archive: it takes a filter (for replays) but no retention.
func (l *loader) compileArchive(d *doc, ann map[string]string, kafkaClass bool, cfg *Config) *Archive {
	retention, hasRetention := ann[AnnotationArchiveRetention]
	expr, hasFilter := ann[AnnotationArchiveFilter]
	if !hasRetention && !hasFilter {
		return nil
	}
	a := &Archive{}
	if hasFilter {
		f, err := filter.CESQL(expr)
		if err != nil {
			l.errAt(d, "metadata.annotations", "%s: %v", AnnotationArchiveFilter, err)
		}
		a.Filter = f
	}
	switch {
	case kafkaClass && hasRetention:
		l.errAt(d, "metadata.annotations", "%s applies to in-memory brokers: a Kafka-class broker's topic is its archive, kept for the topic's retention.ms", AnnotationArchiveRetention)
	case kafkaClass:
		return a
	case !hasRetention:
		l.errAt(d, "metadata.annotations", "%s needs %s on an in-memory broker (how long to keep its events, e.g. 168h)", AnnotationArchiveFilter, AnnotationArchiveRetention)
	default:
		dur, err := time.ParseDuration(retention)
		if err != nil || dur < time.Hour {
			l.errAt(d, "metadata.annotations", "%s must be a duration of at least 1h (e.g. 168h), got %q", AnnotationArchiveRetention, retention)
		}
		a.Retention = dur
		if cfg.Components[CassandraComponentPath] == nil && !l.routingOnly {
			l.errAt(d, "metadata.annotations", "%s keeps the events in Cassandra: set spec.results.cassandra in a SwitchyardConfig, or --cassandra-hosts", AnnotationArchiveRetention)
		}
	}
	return a
}
