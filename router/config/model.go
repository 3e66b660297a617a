package config

import (
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/filter"
	"github.com/switchyard-events/switchyard/router/kafkaclient"
	"github.com/switchyard-events/switchyard/router/secret"
	"github.com/switchyard-events/switchyard/router/senderauth"
)

// Config is a loaded, validated configuration: what the router runs. It is immutable once Load
// returns it.
type Config struct {
	Settings Settings
	Brokers  []*Broker
	Triggers []*Trigger
	// Auth are the sender-authentication policies, secrets read.
	Auth []senderauth.Policy
	// Webhooks are the webhook sources (WebhookSource and GitHubSource manifests).
	Webhooks []*WebhookSource
	// KafkaSources are Knative KafkaSource manifests.
	KafkaSources []*KafkaSource
	// PingSources are Knative PingSource manifests.
	PingSources []*PingSource
	// Files are the files read, in the order read.
	Files []string
	// Warnings are things worth knowing that are not errors, each at its file and line.
	Warnings []*Error
	// Skipped are the documents Switchyard does not serve and leaves to Knative or Kubernetes
	// (see kinds.go): listed by validate, logged by serve.
	Skipped []Skipped
	// Objects are the documents of the registered KindComponents, by kind (CassandraSink).
	Objects map[string][]*Object
	// Components are the registered components' settings (Sources.Components), by path:
	// a pointer to the spec the component's NewSpec made, or absent when not configured.
	Components map[string]any
	// DestinationTLS is what HTTPS destinations (subscribers, dead-letter and webhook sinks) trust
	// and present beyond the defaults, by destination URL.
	DestinationTLS map[string]DestinationTLS
}

// Settings are the router's own settings, from SwitchyardConfig or defaults.
type Settings struct {
	Addr      string
	AdminAddr string
	// IngressTLS and AdminTLS, when set, make those listeners serve HTTPS.
	IngressTLS, AdminTLS *ListenerTLS
	// AdminAuth, when set, protects the admin API; nil leaves it open (it listens on loopback
	// by default).
	AdminAuth *AdminAuth
	// AdminTraceURL links the console's trace ids to a trace viewer ({traceId} replaced); "" shows ids.
	AdminTraceURL string
	MaxBodyBytes  int64
	// MaxResponseHeaderBytes bounds the head of a subscriber's (or sink's) response.
	MaxResponseHeaderBytes int64
	// MaxReplyBytesInFlight bounds the subscribers' reply bodies being read at once.
	MaxReplyBytesInFlight int64
	// MaxBodyBytesInFlight bounds the request bodies being received at once.
	MaxBodyBytesInFlight int64
	// MaxUnfinishedBytes bounds the memory of events in-memory brokers hold, accepted and not final.
	MaxUnfinishedBytes int64
	// Timeouts of the ingress listener (and, for reads, of the admin listener).
	ReadHeaderTimeout, ReadTimeout, IdleTimeout time.Duration
	QueueSize                                   int
	// MaxInFlight is the default max-in-flight of in-memory brokers (0: none); MaxInFlightWait is
	// how long a producer waits for room under it.
	MaxInFlight     int
	MaxInFlightWait time.Duration
	MaxTTL          int32
	// MaxRepliesPerEvent bounds the events one accepted event's replies may add, transitively.
	MaxRepliesPerEvent int32
	ClusterDomain      string
	// TriggerConcurrency and TriggerPending are the per-trigger defaults.
	TriggerConcurrency int
	TriggerPending     int
	// TriggerPendingWait is how long a broker's dispatch waits for room in an unordered trigger's
	// full backlog before recording the event as failed there.
	TriggerPendingWait time.Duration
	MaxOutcomes        int
	// MaxResultEventBytes bounds the event bytes the in-memory result store keeps.
	MaxResultEventBytes int64
	// MaxResultOutcomeBytes bounds the bytes of the outcome records the in-memory result store keeps.
	MaxResultOutcomeBytes int64
	// MaxEventTypes bounds the distinct event_type metric label values per broker.
	MaxEventTypes  int
	ShutdownGrace  time.Duration
	ReloadInterval time.Duration
	LogFormat      string
	LogLevel       string
}

// DestinationTLS is a destination's TLS beyond the system's roots: Knative's CACerts, and the
// client certificate a trigger presents (switchyard.dev/tls-client-secret).
type DestinationTLS struct {
	CAPEM []byte
	// ClientSecret names a Secret with tls.crt and tls.key under the secrets directory.
	ClientSecret string
}

// ListenerTLS are a listener's TLS files; nil serves plain HTTP.
type ListenerTLS struct {
	CertFile, KeyFile string
	// ClientCAFile verifies client certificates; ClientAuth is "require" (default with a CA) or
	// "verify-if-given".
	ClientCAFile, ClientAuth string
}

// Overrides are the settings a command line (or its SWITCHYARD_* variables) may give; a nil or
// empty field leaves the configuration's value. See Sources.Overrides.
type Overrides struct {
	Addr, AdminAddr     *string
	ShutdownGrace       *time.Duration
	LogFormat, LogLevel *string
	// KafkaBootstrapServers turns on (or repoints) the cluster of Kafka-class brokers;
	// CassandraHosts turns on (or repoints) the Cassandra result store.
	KafkaBootstrapServers []string
	CassandraHosts        []string
}

// AdminAuth are the credentials of the admin API's two roles. A nil role has no members.
type AdminAuth struct {
	// Readers may read (GET); Operators may also act (redrive).
	Readers, Operators *senderauth.Policy
}

// Archive is what a broker keeps of its accepted events.
type Archive struct {
	// Retention is how long an archived event is kept (in-memory brokers).
	Retention time.Duration
	// Filter, when set, keeps (in memory) or replays (Kafka) only the events it matches.
	Filter filter.Filter
}

// CassandraComponentPath is the SwitchyardConfig block of the Cassandra result store
// (sinks/cassandra's component): an in-memory broker's archive needs it.
const CassandraComponentPath = "results.cassandra"

// KafkaComponentPath is the SwitchyardConfig block of the Kafka cluster of Kafka-class brokers
// (sinks/kafka's component): a Kafka-class broker needs it configured.
const KafkaComponentPath = "kafka"

// The Kafka client's security settings (router/kafkaclient), as KafkaSources write them.
type (
	KafkaSecurity = kafkaclient.Security
	KafkaTLS      = kafkaclient.TLS
	KafkaSASL     = kafkaclient.SASL
)

// KafkaSASLMechanisms are the SASL mechanisms Switchyard speaks.
var KafkaSASLMechanisms = kafkaclient.Mechanisms

// Defaults of Settings and of delivery, used where the configuration says nothing.
const (
	DefaultAddr = ":8080"
	// DefaultAdminAddr is loopback: the admin API shows events and can redrive them, so it is
	// reachable from elsewhere only when configured so (the Helm chart binds :9090 for probes).
	DefaultAdminAddr            = "127.0.0.1:9090"
	DefaultMaxBodyBytes         = 4 << 20
	DefaultMaxBodyBytesInFlight = 64 << 20
	DefaultMaxUnfinishedBytes   = 256 << 20
	DefaultMaxResultEventBytes  = 64 << 20
	// DefaultMaxResultOutcomeBytes: 100,000 records of ordinary events take about 30 MiB, so the
	// count bound comes first for them.
	DefaultMaxResultOutcomeBytes = 128 << 20
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultReadTimeout           = 30 * time.Second
	DefaultIdleTimeout           = 120 * time.Second
	DefaultQueueSize             = 10000
	DefaultMaxInFlightWait       = time.Second
	DefaultMaxTTL                = 255
	// The topics Switchyard creates for Kafka-class brokers.
	DefaultKafkaPartitions        = 10
	DefaultKafkaReplicationFactor = 1
	DefaultMaxRepliesPerEvent     = 1000
	DefaultClusterDomain          = "cluster.local"
	DefaultTriggerConcurrency     = 64
	DefaultTriggerPending         = 256
	// DefaultTriggerPendingWait is how long the dispatch waits for a full trigger's backlog.
	DefaultTriggerPendingWait = time.Second
	DefaultMaxOutcomes        = 100000
	DefaultShutdownGrace      = 30 * time.Second
	DefaultReloadInterval     = 2 * time.Second
	DefaultRetry              = 10
	DefaultBackoffDelay       = 200 * time.Millisecond
	DefaultTimeout            = 30 * time.Second
)

// CircuitBreaker is a trigger's breaker: Failures attempts in a row failing open it for Cooldown,
// then one attempt probes the subscriber.
type CircuitBreaker struct {
	Failures int
	Cooldown time.Duration
}

// The circuit breaker's defaults.
const (
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 30 * time.Second
)

// Broker is one configured broker.
type Broker struct {
	Ref router.BrokerRef
	// Class is the value of eventing.knative.dev/broker.class, "" when absent.
	Class string
	// Topic is the Kafka topic of a Kafka-class broker: knative-broker-{namespace}-{name}, or the
	// kafka.eventing.knative.dev/external.topic annotation; a KafkaChannel flow's brokers use
	// knative-messaging-kafka.{namespace}.{name}.
	Topic string
	// Partitions and ReplicationFactor, when above 0, size the topic if Switchyard creates it
	// (a KafkaChannel's numPartitions and replicationFactor); 0 takes spec.kafka's.
	Partitions        int32
	ReplicationFactor int16
	// MaxInFlight bounds an in-memory broker's unfinished events (0: only the queue bounds them).
	MaxInFlight int
	// DedupWindow, when above 0, refuses for that long an event whose source and id the broker
	// accepted already (switchyard.dev/dedup-window): answered 202, not appended again.
	DedupWindow time.Duration
	// Archive, when set, keeps the broker's accepted events for replay (docs/archive.md): an
	// in-memory broker's in Cassandra; a Kafka-class broker's topic is its archive, and only
	// Filter applies.
	Archive *Archive
	// File and Line locate the manifest.
	File string
	Line int
}

// Trigger is one configured trigger, resolved: its filter compiled, its subscriber a URL, its
// delivery merged from defaults, broker and trigger.
type Trigger struct {
	Ref        router.TriggerRef
	Broker     router.BrokerRef
	Filter     filter.Filter
	Subscriber string
	Delivery   delivery.Policy
	// Ordered delivers each event after the final outcome of the earlier ones with its partition
	// key (the partitionkey extension; events without one share a key): one key's retries hold
	// back no other key.
	Ordered bool
	// Paused holds the trigger's deliveries (switchyard.dev/paused): its events wait, in its
	// bounded backlog in memory, in its park topic on a Kafka-class broker.
	Paused bool
	// CircuitBreaker, when set, stops the trigger's deliveries for a cool-down after its
	// subscriber failed that many attempts in a row (switchyard.dev/circuit-breaker).
	CircuitBreaker *CircuitBreaker
	// StartFrom is where the trigger starts reading its Kafka-class broker's topic the first time
	// it is seen there (switchyard.dev/start-from); the zero value is latest.
	StartFrom router.StartFrom
	// Concurrency bounds the trigger's deliveries in flight (per partition, one per key, when
	// Ordered).
	Concurrency int
	// Pending bounds events waiting for a free delivery slot; PendingWait is how long the dispatch
	// waits for room when they are all taken (unordered triggers).
	Pending     int
	PendingWait time.Duration
	// RateLimit is the most events per second started towards the subscriber; 0 is unlimited.
	RateLimit float64
	// Reply, when set, is where the subscriber's replies go instead of back into the trigger's
	// broker: the triggers of Sequences and Parallels (flows.go) send them on to the next step.
	Reply *ReplyTo
	File  string
	Line  int
}

// ReplyTo is where a flow's trigger sends its subscriber's replies: exactly one field is set.
type ReplyTo struct {
	// Broker is a broker of this configuration, the reply published into it in process.
	Broker *router.BrokerRef
	// URI is delivered to under the trigger's delivery policy.
	URI string
	// Discard drops replies: Knative's Sequence without spec.reply ends at its last step.
	Discard bool
}

// WebhookSource is one webhook endpoint, served at POST /webhooks/{namespace}/{name}.
type WebhookSource struct {
	Namespace, Name string
	// Provider is github, gitlab, stripe, slack, standardwebhooks or generic.
	Provider string
	// Secrets are where the verification secrets are read; any of them may match.
	Secrets []SecretRef
	Sink    Sink
	// DedupWindow is how long delivery ids are remembered; 0 turns deduplication off.
	DedupWindow time.Duration
	// Tolerance bounds the age of signed timestamps (Stripe, Slack, Standard Webhooks).
	Tolerance time.Duration
	// Source overrides the CloudEvents source; Extensions are added to every event.
	Source     string
	Extensions map[string]string
	// GitHubEventTypes, when set (GitHubSource), lists the event kinds routed; others are ignored.
	GitHubEventTypes []string
	// GitHubRepository is GitHubSource's ownerAndRepository.
	GitHubRepository string
	Generic          *GenericWebhook
	File             string
	Line             int
}

// SecretRef is where a secret lives: a key of a Kubernetes Secret mounted under --secrets-dir
// ({dir}/{Name}/{Key}), a file, or an environment variable (package secret reads it).
type SecretRef = secret.Ref

// Sink is where a source delivers: a broker of this configuration, or a URI.
type Sink = router.Sink

// GenericWebhook configures the generic provider.
type GenericWebhook struct {
	// Verification is hmac, bearer or none.
	Verification                            string
	HMACHeader, HMACAlgorithm, HMACEncoding string
	HMACPrefix                              string
	BearerHeader                            string
	Type, Source, Subject, ID               FieldRule
}

// FieldRule takes a value from a header, a dotted JSON path, or a constant.
type FieldRule struct{ Header, JSON, Value string }

// KafkaSource reads topics and turns their records into CloudEvents.
type KafkaSource struct {
	Namespace, Name  string
	BootstrapServers []string
	Topics           []string
	// Group is the consumer group (spec.consumerGroup, or knative-kafka-source-{ns}-{name}).
	Group string
	// FromLatest starts a new group at the newest records (initialOffset: latest, the default as
	// in Knative); false starts at the oldest (earliest).
	FromLatest bool
	Sink       Sink
	Extensions map[string]string
	Security   KafkaSecurity
	// Delivery is spec.delivery (retry, backoff, timeout, deadLetterSink); nil without one: a
	// sink that pushes back is then retried until it takes the event.
	Delivery *delivery.Policy
}
