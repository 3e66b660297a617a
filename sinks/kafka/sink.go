package kafka

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router/cehttp"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/kafkaclient"
	"github.com/switchyard-events/switchyard/router/secret"
)

// Sinks serves the configuration's KafkaSinks on the ingress, at /sinks/kafka/{namespace}/{name}:
// each event POSTed there (by a trigger, a dead-letter delivery, a source or anyone) becomes a
// record of the sink's topic in the CloudEvents Kafka binding, and is answered 202 only once every
// in-sync replica has it (acks=all). Kafka unable to take it (down, slow, the topic missing) is
// 503, retried under the delivery policy; a record larger than the topic takes is 413 and a body
// that is not a CloudEvent 400, neither retried. docs/kafka-sink.md.
type Sinks struct {
	logger     *zap.Logger
	maxBody    func() int64
	secretsDir string
	records    *prometheus.CounterVec

	mu    sync.Mutex
	sinks map[string]*sink
}

// NewSinks returns Sinks with none configured; maxBody bounds a request's body (the ingress's
// spec.ingress.maxBodyBytes), auth Secrets are read under secretsDir, and the records are counted
// in reg.
func NewSinks(logger *zap.Logger, maxBody func() int64, secretsDir string, reg prometheus.Registerer) *Sinks {
	s := &Sinks{logger: logger.Named("kafka-sink"), maxBody: maxBody, secretsDir: secretsDir, sinks: map[string]*sink{},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "switchyard_kafka_sink_records_total",
			Help: "Events a KafkaSink was given, by result: written (acknowledged by every in-sync replica), rejected (not a CloudEvent, or larger than the topic takes: 4xx), failed (Kafka did not take it: 503)."},
			[]string{"namespace_name", "sink_name", "result"})}
	if reg != nil {
		reg.MustRegister(s.records)
	}
	return s
}

// OwnsSinkPath reports whether path is a KafkaSink's.
func OwnsSinkPath(path string) bool { return strings.HasPrefix(path, SinkPathPrefix) }

// Apply starts new sinks, restarts changed ones and stops removed ones; cluster is the cluster of
// Kafka-class brokers (spec.kafka), which a sink without bootstrapServers of its own writes to
// (nil: none).
func (s *Sinks) Apply(objects []*config.Object, cluster *Spec) {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]*sink{}
	for _, o := range objects {
		spec := o.Spec.(*SinkSpec)
		k := &sink{obj: o, spec: spec, secretsDir: s.secretsDir, records: s.records,
			logger: s.logger.With(zap.String("sink", o.Namespace+"/"+o.Name), zap.String("topic", spec.Topic))}
		if len(spec.BootstrapServers) == 0 {
			k.cluster = cluster // only a sink that uses it restarts when it changes
		}
		want[o.Namespace+"/"+o.Name] = k
	}
	for key, k := range s.sinks {
		// Where the manifest sits (file, line) is not a change of the sink: lines moving in an
		// edited file must not reconnect it.
		if w, ok := want[key]; !ok || !reflect.DeepEqual(w.spec, k.spec) || !reflect.DeepEqual(w.cluster, k.cluster) {
			go k.close() // it waits for its records in flight; nobody need wait for that
			delete(s.sinks, key)
		}
	}
	for key, k := range want {
		if s.sinks[key] != nil {
			continue
		}
		s.sinks[key] = k
		// Connect now, so that a sink that cannot work says why at start, not at its first event.
		go func() { _, _, _ = k.producerWithin(context.Background()) }()
	}
}

// Has reports whether the KafkaSink namespace/name is configured: the ingress's sender
// authentication answers for an unknown one as for an unknown broker.
func (s *Sinks) Has(namespace, name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sinks[namespace+"/"+name] != nil
}

// Close stops every sink.
func (s *Sinks) Close() {
	s.mu.Lock()
	sinks := s.sinks
	s.sinks = map[string]*sink{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, k := range sinks {
		wg.Add(1)
		go func() { defer wg.Done(); k.close() }()
	}
	wg.Wait()
}

func (s *Sinks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "a KafkaSink takes events by POST", http.StatusMethodNotAllowed)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, SinkPathPrefix)
	s.mu.Lock()
	k := s.sinks[key]
	s.mu.Unlock()
	if k == nil {
		http.Error(w, "no KafkaSink "+key+" is configured", http.StatusNotFound)
		return
	}
	body, ok := cehttp.ReadBody(w, r, s.maxBody())
	if !ok {
		return
	}
	events, err := cehttp.Decode(r.Header, body)
	if err != nil {
		k.count("rejected", 1)
		http.Error(w, "not a CloudEvent: "+err.Error(), http.StatusBadRequest)
		return
	}
	code, msg := k.write(r.Context(), events)
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if code >= 300 {
		http.Error(w, msg, code)
		return
	}
	w.WriteHeader(code)
}

// sink is one KafkaSink at work: a producer connected on first use (so that Kafka down at start
// is a 503 per event, not a failed start), shared by its requests.
type sink struct {
	obj        *config.Object
	spec       *SinkSpec
	cluster    *Spec
	secretsDir string
	logger     *zap.Logger
	records    *prometheus.CounterVec

	mu        sync.Mutex
	producer  sarama.SyncProducer
	maxRecord int          // the topic's max.message.bytes, read when the producer connects
	attempt   *attempt     // the connect under way, nil when none
	problem   string       // why the last connect failed, logged when it changes
	stopped   bool         // closed: no new producer, every request 503
	sending   sync.RWMutex // held (read) by every send: close waits for them before closing the producer
}

// attempt is one connect, whose outcome every request waiting on it shares: a Kafka that does not
// answer holds one connect, not one per request.
type attempt struct {
	done      chan struct{}
	producer  sarama.SyncProducer
	maxRecord int
	err       error
}

// sinkTimeout bounds a request's wait for Kafka, connect included: sarama's own bounds (network
// timeouts of 30 s, times its retries) would hold a trigger's delivery for minutes on a frozen
// broker, where a 503 lets it retry.
const sinkTimeout = 10 * time.Second

var errSinkStopped = errors.New("the KafkaSink was reconfigured or is stopping: send the event again")

func (k *sink) at(field string) string {
	return fmt.Sprintf("%s:%d: spec.%s", k.obj.File, k.obj.Line, field)
}

// producerWithin returns the producer, connecting it first when needed, or gives up when ctx ends.
func (k *sink) producerWithin(ctx context.Context) (sarama.SyncProducer, int, error) {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return nil, 0, errSinkStopped
	}
	if k.producer != nil {
		p, max := k.producer, k.maxRecord
		k.mu.Unlock()
		return p, max, nil
	}
	a := k.attempt
	if a == nil {
		a = &attempt{done: make(chan struct{})}
		k.attempt = a
		go k.connect(a)
	}
	k.mu.Unlock()
	select {
	case <-a.done:
		return a.producer, a.maxRecord, a.err
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("kafka did not answer a connect within %s", sinkTimeout)
	}
}

func (k *sink) connect(a *attempt) {
	p, max, err := k.dial()
	k.mu.Lock()
	k.attempt = nil
	if err == nil && k.stopped {
		go p.Close()
		p, err = nil, errSinkStopped
	}
	if err == nil {
		k.producer, k.maxRecord = p, max
		k.problem = ""
		k.logger.Info("KafkaSink ready", zap.Int("max_record_bytes", max))
	} else if err != errSinkStopped && err.Error() != k.problem {
		k.problem = err.Error()
		k.logger.Error("KafkaSink not ready: its events are answered 503 until it connects", zap.Error(err))
	}
	k.mu.Unlock()
	a.producer, a.maxRecord, a.err = p, max, err
	close(a.done)
}

// client is where the sink writes and how it authenticates: its own servers, or spec.kafka's
// (with that cluster's TLS and SASL unless the sink names a Secret of its own).
func (k *sink) client() ([]string, kafkaclient.Security, error) {
	servers := k.spec.BootstrapServers
	var sec kafkaclient.Security
	if len(servers) == 0 && k.cluster != nil {
		servers, sec = k.cluster.BootstrapServers, k.cluster.Security()
	}
	if len(servers) == 0 {
		return nil, sec, fmt.Errorf("%s: no Kafka to write to: set bootstrapServers, or spec.kafka in a SwitchyardConfig", k.at("bootstrapServers"))
	}
	if name := k.spec.secret(); name != "" {
		var err error
		if sec, err = secretSecurity(k.secretsDir, name); err != nil {
			return nil, sec, fmt.Errorf("%s: %v", k.at("auth.secret.ref.name"), err)
		}
	}
	return servers, sec, nil
}

// dial checks the topic (creating it when the spec sizes it), reads the largest record it takes,
// and connects the producer.
func (k *sink) dial() (sarama.SyncProducer, int, error) {
	servers, sec, err := k.client()
	if err != nil {
		return nil, 0, err
	}
	sc, err := kafkaclient.Config("switchyard-kafka-sink", sec, k.secretsDir)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %v", k.at("auth"), err)
	}
	kafkaclient.DurableProducer(sc) // a 202 is a record every in-sync replica has
	maxRecord, err := k.checkTopic(servers, sc)
	if err != nil {
		return nil, 0, err
	}
	sc.Producer.MaxMessageBytes = maxRecord
	p, err := sarama.NewSyncProducer(servers, sc)
	if err != nil {
		return nil, 0, fmt.Errorf("connecting a producer to %v: %w", servers, err)
	}
	return p, maxRecord, nil
}

// checkTopic makes sure the topic exists, as Knative's KafkaSink does: created when numPartitions
// and replicationFactor are given, else required to exist already (an external topic).
func (k *sink) checkTopic(servers []string, sc *sarama.Config) (int, error) {
	admin, err := sarama.NewClusterAdmin(servers, sc)
	if err != nil {
		return 0, fmt.Errorf("connecting to kafka %v: %w", servers, err)
	}
	defer admin.Close()
	topic := k.spec.Topic
	metas, err := admin.DescribeTopics([]string{topic})
	if err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", topic, err)
	}
	missing := len(metas) == 0 || errors.Is(metas[0].Err, sarama.ErrUnknownTopicOrPartition)
	switch {
	case missing && k.spec.NumPartitions != nil && k.spec.ReplicationFactor != nil:
		err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: *k.spec.NumPartitions, ReplicationFactor: *k.spec.ReplicationFactor}, false)
		var te *sarama.TopicError
		if err != nil && !(errors.As(err, &te) && te.Err == sarama.ErrTopicAlreadyExists) {
			return 0, fmt.Errorf("%s: creating topic %s: %w", k.at("numPartitions"), topic, err)
		}
		k.logger.Info("KafkaSink created its topic", zap.Int32("partitions", *k.spec.NumPartitions), zap.Int16("replication_factor", *k.spec.ReplicationFactor))
	case missing:
		return 0, fmt.Errorf("%s: topic %s does not exist on %v: create it, or set numPartitions and replicationFactor for the sink to create it", k.at("topic"), topic, servers)
	case metas[0].Err != sarama.ErrNoError:
		return 0, fmt.Errorf("%s: topic %s: %w", k.at("topic"), topic, metas[0].Err)
	}
	res, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"max.message.bytes"}}},
		sarama.DescribeConfigsOptions{})
	for _, r := range res {
		for _, e := range r.Configs {
			if n, perr := strconv.Atoi(e.Value); r.ErrorCode == sarama.ErrNoError && e.Name == "max.message.bytes" && perr == nil && n > 0 {
				return n, nil
			}
		}
	}
	k.logger.Warn("the topic's max.message.bytes could not be read: assuming Kafka's default", zap.Error(err))
	return defaultMaxRecord, nil
}

// write produces one record per event and returns the status to answer.
func (k *sink) write(ctx context.Context, events []*event.Event) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, sinkTimeout)
	defer cancel()
	p, maxRecord, err := k.producerWithin(ctx)
	if err != nil {
		k.count("failed", len(events))
		return http.StatusServiceUnavailable, "KafkaSink not ready: " + err.Error()
	}
	msgs := make([]*sarama.ProducerMessage, len(events))
	for i, e := range events {
		msg, err := k.record(ctx, e)
		if err != nil {
			k.count("rejected", len(events))
			return http.StatusBadRequest, err.Error()
		}
		// A record the topic can never take is the sender's to fix (413), not an outage to
		// retry (503) for ever.
		if size := msg.ByteSize(2); size > maxRecord {
			k.count("rejected", len(events))
			return http.StatusRequestEntityTooLarge, fmt.Sprintf("event %s is %d bytes as a Kafka record; topic %s takes at most %d (its max.message.bytes)",
				e.ID(), size, k.spec.Topic, maxRecord)
		}
		msgs[i] = msg
	}
	if err := k.send(ctx, p, msgs); err != nil {
		if errors.Is(err, sarama.ErrMessageSizeTooLarge) {
			k.count("rejected", len(events))
			return http.StatusRequestEntityTooLarge, fmt.Sprintf("kafka refused a record of topic %s as too large: %v", k.spec.Topic, err)
		}
		k.count("failed", len(events))
		k.logger.Warn("producing to kafka failed", zap.Error(err))
		return http.StatusServiceUnavailable, fmt.Sprintf("writing to topic %s: %v", k.spec.Topic, err)
	}
	k.count("written", len(events))
	return http.StatusAccepted, ""
}

// record encodes e as a record of the sink's topic in its content mode. The record's key is the
// event's partitionkey extension when it has one (the binding's key mapping, as Knative's
// KafkaSink keys records), so events of one key keep their order in one partition.
func (k *sink) record(ctx context.Context, e *event.Event) (*sarama.ProducerMessage, error) {
	if k.spec.ContentMode == ModeStructured {
		ctx = binding.WithForceStructured(ctx)
	} else {
		ctx = binding.WithForceBinary(ctx)
	}
	msg := &sarama.ProducerMessage{Topic: k.spec.Topic}
	if err := kafka_sarama.WriteProducerMessage(ctx, binding.ToMessage(e), msg); err != nil {
		return nil, fmt.Errorf("encoding event %s as a Kafka record: %v", e.ID(), err)
	}
	return msg, nil
}

// send produces msgs, giving up when ctx ends first (the sender is told 503 and may send them
// again: at least once). Kafka has no all-or-nothing without transactions: what part of a batch
// it took stays.
func (k *sink) send(ctx context.Context, p sarama.SyncProducer, msgs []*sarama.ProducerMessage) error {
	k.sending.RLock()
	k.mu.Lock()
	stopped := k.stopped
	k.mu.Unlock()
	if stopped {
		k.sending.RUnlock()
		return errSinkStopped
	}
	done := make(chan error, 1)
	go func() {
		defer k.sending.RUnlock() // the producer stays open until this send is over
		done <- p.SendMessages(msgs)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("kafka did not acknowledge within %s", sinkTimeout)
	}
}

// close stops the sink: later requests are 503, and the producer closes once its sends are over.
func (k *sink) close() {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	k.sending.Lock() // every send under way is over
	k.mu.Lock()
	p := k.producer
	k.producer = nil
	k.mu.Unlock()
	k.sending.Unlock()
	if p == nil {
		return
	}
	closed := make(chan struct{})
	go func() { _ = p.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(producerCloseTimeout):
		k.logger.Warn("kafka producer not closed: records in flight are not acknowledged", zap.Duration("waited", producerCloseTimeout))
	}
}

func (k *sink) count(result string, n int) {
	k.records.WithLabelValues(k.obj.Namespace, k.obj.Name, result).Add(float64(n))
}

// secretSecurity reads the client's security from a KafkaSink's Secret as Knative lays it out,
// mounted at {secretsDir}/{name}/{key}: protocol (PLAINTEXT, SASL_PLAINTEXT, SSL or SASL_SSL);
// for SASL, sasl.mechanism (PLAIN when absent), user and password; for SSL, ca.crt (the system's
// roots when absent) and user.crt with user.key for a client certificate (none when absent or
// when user.skip is true). Secrets are read at each connect, so a rotated Secret applies at the
// next one.
func secretSecurity(secretsDir, name string) (kafkaclient.Security, error) {
	ref := func(key string) secret.Ref { return secret.Ref{Name: name, Key: key} }
	has := func(key string) bool {
		_, err := os.Stat(ref(key).Path(secretsDir))
		return err == nil
	}
	var sec kafkaclient.Security
	b, err := ref("protocol").Read(secretsDir)
	if err != nil {
		return sec, fmt.Errorf("reading the Secret's protocol: %v", err)
	}
	protocol := strings.ToUpper(strings.TrimSpace(string(b)))
	if protocol == "SSL" || protocol == "SASL_SSL" {
		t := &kafkaclient.TLS{}
		if has("ca.crt") {
			t.CA = ref("ca.crt")
		}
		skip, _ := ref("user.skip").Read(secretsDir)
		if strings.TrimSpace(string(skip)) != "true" && (has("user.crt") || has("user.key")) {
			t.Cert, t.Key = ref("user.crt"), ref("user.key")
		}
		sec.TLS = t
	}
	if protocol == "SASL_PLAINTEXT" || protocol == "SASL_SSL" {
		mech := "PLAIN"
		if has("sasl.mechanism") {
			m, err := ref("sasl.mechanism").Read(secretsDir)
			if err != nil {
				return sec, err
			}
			mech = strings.ToUpper(strings.TrimSpace(string(m)))
		}
		sec.SASL = &kafkaclient.SASL{Mechanism: mech, User: ref("user"), Password: ref("password")}
	}
	switch protocol {
	case "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL":
		return sec, nil
	}
	return sec, fmt.Errorf("the Secret's protocol %q is not one of PLAINTEXT, SASL_PLAINTEXT, SSL, SASL_SSL", protocol)
}
