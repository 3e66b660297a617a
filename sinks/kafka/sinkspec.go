package kafka

import (
	"fmt"
	"net"
	"regexp"
	"strconv"

	"github.com/switchyard-events/switchyard/router/config"
)

// SinkSpec is a KafkaSink's spec as Knative writes it (eventing.knative.dev/v1alpha1, the CRD
// kafkasinks.eventing.knative.dev of eventing-kafka-broker): the topic an event becomes a record
// of, and how. docs/kafka-sink.md describes each field.
type SinkSpec struct {
	Topic string `yaml:"topic"`
	// BootstrapServers, when set, is the sink's own cluster; otherwise it writes to the cluster of
	// Kafka-class brokers (spec.kafka), with that cluster's TLS and SASL.
	BootstrapServers []string `yaml:"bootstrapServers"`
	// ContentMode is binary (the default, as in Knative) or structured.
	ContentMode string `yaml:"contentMode"`
	// NumPartitions and ReplicationFactor, both set, let the sink create its topic when missing;
	// otherwise the topic must exist (Knative's rule: a topic it did not create is external).
	NumPartitions     *int32    `yaml:"numPartitions"`
	ReplicationFactor *int16    `yaml:"replicationFactor"`
	Auth              *SinkAuth `yaml:"auth"`
}

// SinkAuth names the Secret holding the sink's TLS and SASL settings, Knative's way:
// auth: {secret: {ref: {name: NAME}}} (sink.go's secretSecurity reads it).
type SinkAuth struct {
	Secret *struct {
		Ref *struct {
			Name string `yaml:"name"`
		} `yaml:"ref"`
	} `yaml:"secret"`
}

// The content modes of the CloudEvents Kafka binding.
const (
	ModeBinary     = "binary"
	ModeStructured = "structured"
)

// SinkKind registers KafkaSink with the configuration loader (cmd/switchyard's list of kinds).
type SinkKind struct{}

// SinkAPIVersion is the apiVersion Knative's KafkaSink CRD serves.
const SinkAPIVersion = "eventing.knative.dev/v1alpha1"

func (SinkKind) APIVersion() string { return SinkAPIVersion }
func (SinkKind) Kind() string       { return "KafkaSink" }
func (SinkKind) NewSpec() any       { return &SinkSpec{ContentMode: ModeBinary} }

// SinkPathPrefix starts the ingress paths of KafkaSinks: {prefix}{namespace}/{name}.
const SinkPathPrefix = "/sinks/kafka/"

// Path is where the ingress takes events for KafkaSink namespace/name.
func (SinkKind) Path(namespace, name string) string { return SinkPathPrefix + namespace + "/" + name }

// legalTopic is what Kafka takes as a topic name.
var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// secretName is what may name the auth Secret: it becomes a folder under the secrets directory,
// so one path element and no more. (Knative's docs name theirs my_secret, which Kubernetes would
// refuse but a folder takes; the docs' manifest validates as written.)
var secretName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,252}$`)

// Validate checks what can be checked without Kafka; whether the topic exists (or can be made) is
// checked when the sink connects, and its events are answered 503 until it does.
func (SinkKind) Validate(spec any, components map[string]any, r config.Reporter) {
	s := spec.(*SinkSpec)
	switch {
	case s.Topic == "":
		r.Errorf("topic", "must be set: the Kafka topic the events are written to")
	case !legalTopic.MatchString(s.Topic) || s.Topic == "." || s.Topic == "..":
		r.Errorf("topic", "%q is not a Kafka topic name (up to 249 letters, digits, '.', '_' and '-')", s.Topic)
	}
	if len(s.BootstrapServers) == 0 && components[config.KafkaComponentPath] == nil {
		r.Errorf("bootstrapServers", "must name at least one Kafka broker (host:port), or configure the cluster of Kafka-class brokers (spec.kafka in a SwitchyardConfig, or --kafka-bootstrap-servers) for the sink to write to")
	}
	for i, hp := range s.BootstrapServers {
		host, port, err := net.SplitHostPort(hp)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
			r.Errorf(fmt.Sprintf("bootstrapServers[%d]", i), "%q is not host:port", hp)
		}
	}
	if s.ContentMode != ModeBinary && s.ContentMode != ModeStructured {
		r.Errorf("contentMode", "must be binary or structured, got %q", s.ContentMode)
	}
	if s.NumPartitions != nil && *s.NumPartitions <= 0 {
		r.Errorf("numPartitions", "must be positive, got %d", *s.NumPartitions)
	}
	if s.ReplicationFactor != nil && *s.ReplicationFactor <= 0 {
		r.Errorf("replicationFactor", "must be positive, got %d", *s.ReplicationFactor)
	}
	if (s.NumPartitions == nil) != (s.ReplicationFactor == nil) {
		// Knative creates the topic only when both are given; one alone would be silently ignored.
		field := "numPartitions"
		if s.NumPartitions == nil {
			field = "replicationFactor"
		}
		r.Errorf(field, "numPartitions and replicationFactor go together: both to have the sink create its topic, neither for a topic that exists")
	}
	if a := s.Auth; a != nil {
		switch {
		case a.Secret == nil || a.Secret.Ref == nil:
			r.Errorf("auth", "must name a Secret: auth: {secret: {ref: {name: ...}}}")
		case a.Secret.Ref.Name == "":
			r.Errorf("auth.secret.ref.name", "must be set")
		case !secretName.MatchString(a.Secret.Ref.Name):
			r.Errorf("auth.secret.ref.name", "%q is not a Secret name (letters, digits, '-', '_' and '.', up to 253)", a.Secret.Ref.Name)
		}
	}
}

// secret is the name of the sink's auth Secret, "" when it has none.
func (s *SinkSpec) secret() string {
	if a := s.Auth; a != nil && a.Secret != nil && a.Secret.Ref != nil {
		return a.Secret.Ref.Name
	}
	return ""
}

var _ config.KindComponent = SinkKind{}
