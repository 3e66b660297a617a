package config

import "gopkg.in/yaml.v3"

// The YAML shapes of the documents Switchyard reads. Field names and nesting follow Knative's API
// exactly, so its manifests decode unchanged; every field is checked for being known before it is
// decoded (strict.go).

type typeMeta struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
}

// objectMeta accepts what kubectl and GitOps tools leave in a manifest; only name, namespace and
// annotations mean anything to Switchyard.
type objectMeta struct {
	Name              string            `yaml:"name"`
	Namespace         string            `yaml:"namespace"`
	Labels            map[string]string `yaml:"labels"`
	Annotations       map[string]string `yaml:"annotations"`
	UID               string            `yaml:"uid"`
	ResourceVersion   string            `yaml:"resourceVersion"`
	Generation        int64             `yaml:"generation"`
	GenerateName      string            `yaml:"generateName"`
	CreationTimestamp yaml.Node         `yaml:"creationTimestamp"`
	Finalizers        []string          `yaml:"finalizers"`
	OwnerReferences   yaml.Node         `yaml:"ownerReferences"`
	ManagedFields     yaml.Node         `yaml:"managedFields"`
}

type brokerManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     brokerSpec `yaml:"spec"`
	// Status is output of a Kubernetes controller; kept in exported manifests, ignored here.
	Status yaml.Node `yaml:"status"`
}

type brokerSpec struct {
	// Config names the ConfigMap a Knative broker class reads its settings from; Switchyard takes
	// those settings from its own SwitchyardConfig instead.
	Config   *kReference   `yaml:"config"`
	Delivery *deliverySpec `yaml:"delivery"`
}

type triggerManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta  `yaml:"metadata"`
	Spec     triggerSpec `yaml:"spec"`
	Status   yaml.Node   `yaml:"status"`
}

type triggerSpec struct {
	Broker     string         `yaml:"broker"`
	Filter     *triggerFilter `yaml:"filter"`
	Filters    []filterSpec   `yaml:"filters"`
	Subscriber *destination   `yaml:"subscriber"`
	Delivery   *deliverySpec  `yaml:"delivery"`
}

type triggerFilter struct {
	Attributes map[string]string `yaml:"attributes"`
}

// filterSpec is one object of a trigger's filters array: exactly one dialect is set.
type filterSpec struct {
	Exact  map[string]string `yaml:"exact"`
	Prefix map[string]string `yaml:"prefix"`
	Suffix map[string]string `yaml:"suffix"`
	All    []filterSpec      `yaml:"all"`
	Any    []filterSpec      `yaml:"any"`
	Not    *filterSpec       `yaml:"not"`
	CESQL  *string           `yaml:"cesql"`
}

type destination struct {
	Ref      *kReference `yaml:"ref"`
	URI      string      `yaml:"uri"`
	CACerts  *string     `yaml:"CACerts"`
	Audience *string     `yaml:"audience"`
}

type kReference struct {
	Kind       string `yaml:"kind"`
	Namespace  string `yaml:"namespace"`
	Name       string `yaml:"name"`
	APIVersion string `yaml:"apiVersion"`
	Group      string `yaml:"group"`
	Address    string `yaml:"address"`
}

// deliverySpec is Knative's DeliverySpec. Durations are ISO 8601 (PT0.2S).
type deliverySpec struct {
	DeadLetterSink *destination `yaml:"deadLetterSink"`
	Retry          *int32       `yaml:"retry"`
	BackoffPolicy  *string      `yaml:"backoffPolicy"`
	BackoffDelay   *string      `yaml:"backoffDelay"`
	Timeout        *string      `yaml:"timeout"`
	RetryAfterMax  *string      `yaml:"retryAfterMax"`
	// BackoffMax caps the backoff's waits (Knative 1.22, alpha: knative/eventing#9278).
	BackoffMax *string `yaml:"backoffMax"`
	Format     *string `yaml:"format"`
}

// settingsManifest is switchyard.dev/v1alpha1 SwitchyardConfig: the router's own settings. At most
// one per configuration; command-line flags override it.
type settingsManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta   `yaml:"metadata"`
	Spec     settingsSpec `yaml:"spec"`
}

type settingsSpec struct {
	Ingress struct {
		// Addr is the broker ingress listener, host:port.
		Addr string `yaml:"addr"`
		// MaxBodyBytes bounds a request body; larger ones get 413.
		MaxBodyBytes *int64 `yaml:"maxBodyBytes"`
		// MaxBodyBytesInFlight bounds the bytes of request bodies being received at once, by
		// broker ingress and webhook sources together; past it requests get 503.
		MaxBodyBytesInFlight *int64 `yaml:"maxBodyBytesInFlight"`
		// ReadHeaderTimeout, ReadTimeout (head and body) and IdleTimeout (between requests on a
		// kept connection) are Go durations.
		ReadHeaderTimeout string `yaml:"readHeaderTimeout"`
		ReadTimeout       string `yaml:"readTimeout"`
		IdleTimeout       string `yaml:"idleTimeout"`
		// QueueSize bounds each in-memory broker's queue; a full queue answers 429.
		QueueSize *int `yaml:"queueSize"`
		// MaxUnfinishedBytes bounds the memory of the events all in-memory brokers hold,
		// accepted and not yet final (queued, being delivered, waiting to retry); past it 429.
		MaxUnfinishedBytes *int64 `yaml:"maxUnfinishedBytes"`
		// MaxInFlight bounds each in-memory broker's unfinished events (accepted, not yet
		// delivered, dead-lettered or failed); a producer waits for room up to MaxInFlightWait,
		// then gets 429. 0 or absent: no bound but the queue's. The annotation
		// switchyard.dev/max-in-flight overrides it per broker.
		MaxInFlight     *int   `yaml:"maxInFlight"`
		MaxInFlightWait string `yaml:"maxInFlightWait"`
		// MaxTTL is the knativebrokerttl given to events that carry none, and the most any may carry.
		MaxTTL *int32 `yaml:"maxTTL"`
		// MaxRepliesPerEvent bounds how many events the replies to one accepted event (and the
		// replies to those, and so on) may add to its broker; further replies are dropped.
		MaxRepliesPerEvent *int32 `yaml:"maxRepliesPerEvent"`
		// Auth lists sender-authentication policies; brokers no policy names are open.
		Auth []authSpec `yaml:"auth"`
		// TLS makes the ingress listener (brokers and webhooks) serve HTTPS.
		TLS *listenerTLSSpec `yaml:"tls"`
	} `yaml:"ingress"`
	Admin struct {
		Addr string `yaml:"addr"`
		// TLS makes the admin listener serve HTTPS.
		TLS *listenerTLSSpec `yaml:"tls"`
		// Auth, when set, requires bearer credentials on the admin API (/v1/...): readers may
		// read, operators may also redrive. /healthz, /readyz and /metrics stay open.
		Auth *struct {
			Readers   *credentialsSpec `yaml:"readers"`
			Operators *credentialsSpec `yaml:"operators"`
		} `yaml:"auth"`
		// TraceURL links the console's trace ids to a trace viewer: {traceId} is replaced.
		TraceURL string `yaml:"traceURL"`
	} `yaml:"admin"`
	// Delivery is the default for triggers whose broker and trigger leave a field unset.
	Delivery *deliverySpec `yaml:"delivery"`
	// Subscribers bounds what is read from subscribers, dead-letter sinks and URI sinks.
	Subscribers struct {
		// MaxResponseHeaderBytes bounds a response's status line and headers (default 64 KiB).
		MaxResponseHeaderBytes *int64 `yaml:"maxResponseHeaderBytes"`
		// MaxReplyBytesInFlight bounds the reply bodies being read at once (default 64 MiB);
		// an attempt whose reply does not fit fails and is retried.
		MaxReplyBytesInFlight *int64 `yaml:"maxReplyBytesInFlight"`
	} `yaml:"subscribers"`
	Triggers struct {
		// Concurrency bounds the deliveries in flight per trigger (annotation switchyard.dev/concurrency
		// overrides it per trigger).
		Concurrency *int `yaml:"concurrency"`
		// Pending bounds the events waiting for a trigger's free delivery slot before the broker's
		// dispatch waits for that trigger.
		Pending *int `yaml:"pending"`
		// PendingWait is how long the dispatch waits for room in an unordered trigger's full
		// backlog; then the event is recorded as failed there and the trigger counts as behind
		// (later events fail at once) until half its backlog is free again.
		PendingWait string `yaml:"pendingWait"`
	} `yaml:"triggers"`
	// ClusterDomain completes subscriber refs to Services: http://{name}.{namespace}.svc.{domain}.
	ClusterDomain string `yaml:"clusterDomain"`
	Results       struct {
		Memory struct {
			// MaxOutcomes bounds the in-memory result history; the oldest are forgotten first.
			MaxOutcomes *int `yaml:"maxOutcomes"`
			// MaxEventBytes bounds the bytes of the events kept with failed outcomes for
			// redrive; past it the oldest lose their event.
			MaxEventBytes *int64 `yaml:"maxEventBytes"`
			// MaxOutcomeBytes bounds the bytes of the outcome records themselves (ids, sources,
			// types, errors: producers choose their lengths); past it the oldest are forgotten.
			MaxOutcomeBytes *int64 `yaml:"maxOutcomeBytes"`
		} `yaml:"memory"`
		// cassandra is the Cassandra result store's block (sinks/cassandra), taken out before
		// this struct is decoded: see Component.
	} `yaml:"results"`
	// kafka is the Kafka cluster's block (sinks/kafka), taken out before this struct is
	// decoded: see Component.
	// ShutdownGracePeriod is how long SIGTERM waits for in-flight deliveries (Go duration, 30s).
	ShutdownGracePeriod string `yaml:"shutdownGracePeriod"`
	// ReloadInterval is how often configuration files are checked for changes (Go duration, 2s).
	ReloadInterval string `yaml:"reloadInterval"`
	Metrics        struct {
		// MaxEventTypes bounds the distinct event_type label values per broker (default 100);
		// events of further types are counted under "(other)".
		MaxEventTypes *int `yaml:"maxEventTypes"`
	} `yaml:"metrics"`
	Log struct {
		Format string `yaml:"format"` // json or console
		Level  string `yaml:"level"`  // debug, info, warn, error
	} `yaml:"log"`
}

// listenerTLSSpec are a listener's PEM files, read again when they change.
type listenerTLSSpec struct {
	CertFile     string `yaml:"certFile"`
	KeyFile      string `yaml:"keyFile"`
	ClientCAFile string `yaml:"clientCAFile"`
	// ClientAuth is require (the default with a clientCAFile) or verify-if-given.
	ClientAuth string `yaml:"clientAuth"`
}

// authSpec protects brokers with bearer tokens and/or JWTs.
type authSpec struct {
	// Brokers are "namespace/name" or "namespace/*".
	Brokers         []string `yaml:"brokers"`
	credentialsSpec `yaml:",inline"`
}

// credentialsSpec is what bearer credentials are accepted: static tokens and/or JWTs.
type credentialsSpec struct {
	Tokens []secretValue `yaml:"tokens"`
	JWT    *struct {
		Issuer        string       `yaml:"issuer"`
		Audiences     []string     `yaml:"audiences"`
		Subjects      []string     `yaml:"subjects"`
		HMACSecret    *secretValue `yaml:"hmacSecret"`
		PublicKeyFile string       `yaml:"publicKeyFile"`
		// JWKSFile, JWKSURL or OIDCDiscovery (the issuer's jwks_uri) give a key set picked by
		// the token's kid and refreshed as keys rotate.
		JWKSFile      string `yaml:"jwksFile"`
		JWKSURL       string `yaml:"jwksURL"`
		OIDCDiscovery bool   `yaml:"oidcDiscovery"`
		// CAFile verifies the key set's HTTPS server; BearerTokenFile is sent to it (the
		// Kubernetes API server asks discovery requests for a service account's token).
		CAFile          string `yaml:"caFile"`
		BearerTokenFile string `yaml:"bearerTokenFile"`
		// MaxTokenAge bounds a token's lifetime (Go duration, default 24h).
		MaxTokenAge string `yaml:"maxTokenAge"`
	} `yaml:"jwt"`
}

// secretValue names where a secret is read from, never the secret itself.
type secretValue struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// webhookSourceManifest is switchyard.dev/v1alpha1 WebhookSource: one webhook endpoint, served at
// POST /webhooks/{namespace}/{name}.
type webhookSourceManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta        `yaml:"metadata"`
	Spec     webhookSourceSpec `yaml:"spec"`
	Status   yaml.Node         `yaml:"status"`
}

type webhookSourceSpec struct {
	// Provider is github, gitlab, stripe, slack, standardwebhooks or generic.
	Provider string `yaml:"provider"`
	// Secrets verify signatures; several may be valid at once, for rotation.
	Secrets []secretRef  `yaml:"secrets"`
	Sink    *destination `yaml:"sink"`
	// DeduplicationWindow is how long a provider delivery id is remembered (Go duration, 10m).
	DeduplicationWindow string `yaml:"deduplicationWindow"`
	// TimestampTolerance bounds the age of signed timestamps (Go duration; 5m, Stripe 300s).
	TimestampTolerance string `yaml:"timestampTolerance"`
	// Source overrides the CloudEvents source attribute.
	Source      string       `yaml:"source"`
	CEOverrides *ceOverrides `yaml:"ceOverrides"`
	Generic     *genericSpec `yaml:"generic"`
}

// secretRef names a secret: a Kubernetes Secret key mounted under --secrets-dir, a file, or an
// environment variable.
type secretRef struct {
	SecretKeyRef *secretKeySelector `yaml:"secretKeyRef"`
	File         string             `yaml:"file"`
	Env          string             `yaml:"env"`
}

type secretKeySelector struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional *bool  `yaml:"optional"`
}

type ceOverrides struct {
	Extensions map[string]string `yaml:"extensions"`
}

type genericSpec struct {
	// Verification is hmac, bearer or none (none must be said explicitly).
	Verification string `yaml:"verification"`
	HMAC         *struct {
		Header    string `yaml:"header"`
		Algorithm string `yaml:"algorithm"` // sha1, sha256 (default), sha512
		Encoding  string `yaml:"encoding"`  // hex (default) or base64
		Prefix    string `yaml:"prefix"`    // e.g. "sha256="
	} `yaml:"hmac"`
	Bearer *struct {
		Header string `yaml:"header"` // default Authorization
	} `yaml:"bearer"`
	Type    *fieldRule `yaml:"type"`
	Source  *fieldRule `yaml:"source"`
	Subject *fieldRule `yaml:"subject"`
	ID      *fieldRule `yaml:"id"`
}

// fieldRule takes a CloudEvents attribute from a header, a JSON field (dotted path) or a fixed
// value, in that order of preference when several are set.
type fieldRule struct {
	Header string `yaml:"header"`
	JSON   string `yaml:"json"`
	Value  string `yaml:"value"`
}

// gitHubSourceManifest is Knative's sources.knative.dev/v1alpha1 GitHubSource, as users have it.
type gitHubSourceManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta       `yaml:"metadata"`
	Spec     gitHubSourceSpec `yaml:"spec"`
	Status   yaml.Node        `yaml:"status"`
}

type gitHubSourceSpec struct {
	ServiceAccountName string       `yaml:"serviceAccountName"`
	OwnerAndRepository string       `yaml:"ownerAndRepository"`
	EventTypes         []string     `yaml:"eventTypes"`
	AccessToken        secretValueK `yaml:"accessToken"`
	SecretToken        secretValueK `yaml:"secretToken"`
	GitHubAPIURL       string       `yaml:"githubAPIURL"`
	Secure             *bool        `yaml:"secure"`
	Sink               *destination `yaml:"sink"`
	CEOverrides        *ceOverrides `yaml:"ceOverrides"`
}

type secretValueK struct {
	SecretKeyRef *secretKeySelector `yaml:"secretKeyRef"`
}

// kafkaSourceManifest is Knative's sources.knative.dev/v1beta1 KafkaSource, as users have it.
type kafkaSourceManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta      `yaml:"metadata"`
	Spec     kafkaSourceSpec `yaml:"spec"`
	Status   yaml.Node       `yaml:"status"`
}

type kafkaSourceSpec struct {
	BootstrapServers []string      `yaml:"bootstrapServers"`
	Topics           []string      `yaml:"topics"`
	ConsumerGroup    string        `yaml:"consumerGroup"`
	InitialOffset    string        `yaml:"initialOffset"`
	Consumers        *int32        `yaml:"consumers"`
	Ordering         string        `yaml:"ordering"`
	Net              *kafkaNet     `yaml:"net"`
	Sink             *destination  `yaml:"sink"`
	CEOverrides      *ceOverrides  `yaml:"ceOverrides"`
	Delivery         *deliverySpec `yaml:"delivery"`
}

// kafkaNet is KafkaSource's net block: every value a key of a Kubernetes Secret.
type kafkaNet struct {
	SASL *struct {
		Enable bool         `yaml:"enable"`
		User   secretValueK `yaml:"user"`
		Pass   secretValueK `yaml:"password"`
		Type   secretValueK `yaml:"type"`
	} `yaml:"sasl"`
	TLS *struct {
		Enable bool         `yaml:"enable"`
		Cert   secretValueK `yaml:"cert"`
		Key    secretValueK `yaml:"key"`
		CACert secretValueK `yaml:"caCert"`
	} `yaml:"tls"`
}
