package kafka

import (
	"slices"
	"strings"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/kafkaclient"
	"github.com/switchyard-events/switchyard/router/secret"
)

// Spec is the settings of the Kafka cluster Kafka-class brokers keep their events in: the kafka
// block of a SwitchyardConfig, with its defaults (DefaultSpec), the command line's
// --kafka-bootstrap-servers (Component.Override) and its checks (Component.Validate).
// docs/kafka.md describes each field.
type Spec struct {
	BootstrapServers []string `yaml:"bootstrapServers"`
	// Partitions and ReplicationFactor apply to the topics Switchyard creates.
	Partitions        int32 `yaml:"partitions"`
	ReplicationFactor int16 `yaml:"replicationFactor"`
	// PartitionWindowBytes bounds the bytes of a claimed partition's records read and not yet
	// final (beside its 10,000 records): what a pod holds is at most this times the partitions it
	// claims.
	PartitionWindowBytes int64    `yaml:"partitionWindowBytes"`
	TLS                  *TLSSpec `yaml:"tls"`
	SASL                 *struct {
		Mechanism string       `yaml:"mechanism"`
		User      *secret.Spec `yaml:"user"`
		Password  *secret.Spec `yaml:"password"`
	} `yaml:"sasl"`
}

// TLSSpec is TLS to the cluster: a CA (else the system's roots) and a client certificate.
type TLSSpec struct {
	CA                 *secret.Spec `yaml:"ca"`
	Cert               *secret.Spec `yaml:"cert"`
	Key                *secret.Spec `yaml:"key"`
	ServerName         string       `yaml:"serverName"`
	InsecureSkipVerify bool         `yaml:"insecureSkipVerify"`
}

// DefaultSpec is the cluster's settings before the configuration says anything.
func DefaultSpec() *Spec {
	return &Spec{Partitions: config.DefaultKafkaPartitions, ReplicationFactor: config.DefaultKafkaReplicationFactor, PartitionWindowBytes: DefaultWindowBytes}
}

// Component registers the cluster's settings with the configuration loader.
type Component struct{}

// Path is the block's place in SwitchyardConfig's spec.
func (Component) Path() string { return config.KafkaComponentPath }

// NewSpec returns the defaults, to decode the block into.
func (Component) NewSpec() any { return DefaultSpec() }

// Override applies --kafka-bootstrap-servers, which gives Kafka-class brokers a cluster even when
// the configuration (plain Knative manifests) has no block of ours.
func (Component) Override(spec any, o *config.Overrides) bool {
	if len(o.KafkaBootstrapServers) == 0 {
		return false
	}
	spec.(*Spec).BootstrapServers = o.KafkaBootstrapServers
	return true
}

// Validate reports every problem of the settings. Secrets are checked for their form only: they
// are read at each connection, where the Secret is mounted.
func (Component) Validate(spec any, r config.Reporter) {
	s := spec.(*Spec)
	if len(s.BootstrapServers) == 0 {
		r.Errorf("bootstrapServers", "must name at least one Kafka broker (host:port)")
	}
	if s.Partitions <= 0 {
		r.Errorf("partitions", "must be positive, got %d", s.Partitions)
	}
	if s.ReplicationFactor <= 0 {
		r.Errorf("replicationFactor", "must be positive, got %d", s.ReplicationFactor)
	}
	if s.PartitionWindowBytes < 1<<20 {
		r.Errorf("partitionWindowBytes", "must be at least 1048576 (1 MiB), got %d", s.PartitionWindowBytes)
	}
	check := func(field string, sec *secret.Spec) {
		if sec == nil {
			return
		}
		if sub, problem := sec.Check(); problem != "" {
			r.Errorf(strings.TrimSuffix(field+"."+sub, "."), "%s", problem)
		}
	}
	if t := s.TLS; t != nil {
		if (t.Cert == nil) != (t.Key == nil) {
			r.Errorf("tls", "cert and key go together")
		}
		check("tls.ca", t.CA)
		check("tls.cert", t.Cert)
		check("tls.key", t.Key)
	}
	if a := s.SASL; a != nil {
		if a.Mechanism != "" && !slices.Contains(kafkaclient.Mechanisms, a.Mechanism) {
			r.Errorf("sasl.mechanism", "must be one of %s, got %q", strings.Join(kafkaclient.Mechanisms, ", "), a.Mechanism)
		}
		if a.User == nil || a.Password == nil {
			r.Errorf("sasl", "needs user and password")
		}
		check("sasl.user", a.User)
		check("sasl.password", a.Password)
	}
}

// Security is the client's security from valid settings.
func (s *Spec) Security() kafkaclient.Security {
	var out kafkaclient.Security
	ref := func(sec *secret.Spec) secret.Ref {
		if sec == nil {
			return secret.Ref{}
		}
		return sec.Ref()
	}
	if t := s.TLS; t != nil {
		out.TLS = &kafkaclient.TLS{CA: ref(t.CA), Cert: ref(t.Cert), Key: ref(t.Key), ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
	}
	if a := s.SASL; a != nil {
		out.SASL = &kafkaclient.SASL{Mechanism: a.Mechanism, User: ref(a.User), Password: ref(a.Password)}
		if out.SASL.Mechanism == "" {
			out.SASL.Mechanism = "PLAIN"
		}
	}
	return out
}

// LogConfig is the configuration of a Kafka-class broker's log on this cluster.
func (s *Spec) LogConfig(b *config.Broker, secretsDir string, logger *zap.Logger) Config {
	c := Config{Brokers: s.BootstrapServers, Topic: b.Topic, Group: "switchyard-broker-" + b.Ref.Namespace + "-" + b.Ref.Name,
		Partitions: s.Partitions, ReplicationFactor: s.ReplicationFactor, WindowBytes: s.PartitionWindowBytes, Security: s.Security(), SecretsDir: secretsDir, Logger: logger}
	if b.Partitions > 0 {
		c.Partitions = b.Partitions
	}
	if b.ReplicationFactor > 0 {
		c.ReplicationFactor = b.ReplicationFactor
	}
	return c
}

var _ config.Component = Component{}
