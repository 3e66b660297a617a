// Package kafka is the Kafka-backed broker log: a router.BrokerLog whose Append produces to the
// broker's topic (acks from every in-sync replica, CloudEvents Kafka binary binding) and whose Run
// reads it back through one consumer group per broker, committing only the contiguous run of
// offsets whose events are final. docs/kafka.md has the design; this is its first step.
package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/kafkaclient"
)

// Config configures one broker's log.
type Config struct {
	Brokers []string
	Topic   string
	// Group is the consumer group reading the topic back (one per broker).
	Group string
	// Partitions and ReplicationFactor are used when the topic has to be created.
	Partitions        int32
	ReplicationFactor int16
	// Window bounds the records read but not final per partition (default 10,000); WindowBytes
	// bounds their bytes (default DefaultWindowBytes; a record larger than it is read alone).
	Window      int
	WindowBytes int64
	// Security and SecretsDir say how to connect (TLS, SASL) and where secretKeyRefs are mounted.
	Security   kafkaclient.Security
	SecretsDir string
	Logger     *zap.Logger
}

// DefaultWindowBytes bounds a partition's records read and not final, in bytes.
const DefaultWindowBytes = 64 << 20

// Log is a Kafka topic used as a broker log.
type Log struct {
	cfg    Config
	logger *zap.Logger

	connectMu sync.Mutex          // serialises connects
	mu        sync.Mutex          // guards producer and maxRecord
	producer  sarama.SyncProducer // connected lazily, so a Kafka outage is a 503, not a failed start
	// maxRecord is the largest record the topic takes (its max.message.bytes), read when the
	// producer connects; the producer's own limit is set to it.
	maxRecord int

	// parkProducer writes parked copies into the partition they name (park.go).
	parkProducer sarama.SyncProducer
	// known are the triggers known to have a position on a partition (startKey), as far as this
	// process found or recorded it (start.go).
	known sync.Map
	// parkings are the claimed partitions' parked triggers, by partition.
	claimsMu sync.RWMutex
	parkings map[int32]*claimParking

	closing chan struct{}
	once    sync.Once
	// claims counts the partition claims consuming now: Run's shutdown waits for them.
	claims atomic.Int32
}

// New returns the log; it connects on first use.
func New(cfg Config) *Log {
	if cfg.Window <= 0 {
		cfg.Window = 10000
	}
	if cfg.WindowBytes <= 0 {
		cfg.WindowBytes = DefaultWindowBytes
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = config.DefaultKafkaPartitions
	}
	if cfg.ReplicationFactor <= 0 {
		cfg.ReplicationFactor = config.DefaultKafkaReplicationFactor
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Log{cfg: cfg, logger: cfg.Logger.Named("kafka-log").With(zap.String("topic", cfg.Topic)), closing: make(chan struct{})}
}

func (l *Log) saramaConfig() (*sarama.Config, error) {
	c, err := kafkaclient.Config("switchyard", l.cfg.Security, l.cfg.SecretsDir)
	if err != nil {
		return nil, err
	}
	kafkaclient.DurableProducer(c)
	c.Consumer.Offsets.AutoCommit.Enable = false
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	return c, nil
}

// BoundsUnfinished reports that the consumer's per-partition window (Config.Window) bounds the
// records handed out and not yet final, so the router need not hold the log back per trigger.
func (l *Log) BoundsUnfinished() bool { return true }

// connect returns the producer, creating the topic and the producer when needed. Connects are
// serialised by connectMu; mu guards only the fields, never a network call, so that Close does not
// wait behind a connect to a Kafka that does not answer.
func (l *Log) connect() (sarama.SyncProducer, error) {
	l.connectMu.Lock()
	defer l.connectMu.Unlock()
	l.mu.Lock()
	p := l.producer
	l.mu.Unlock()
	if p != nil {
		return p, nil
	}
	maxRecord, err := l.ensureTopic()
	if err != nil {
		return nil, err
	}
	sc, err := l.saramaConfig()
	if err != nil {
		return nil, err
	}
	sc.Producer.MaxMessageBytes = maxRecord
	p, err = sarama.NewSyncProducer(l.cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("connecting a producer to %v: %w", l.cfg.Brokers, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closing: // closed meanwhile: nobody will close this one
		go p.Close()
		return nil, router.ErrUnavailable
	default:
	}
	l.producer, l.maxRecord = p, maxRecord
	return p, nil
}

// producerWithin returns the producer, connecting it first when needed, giving up when ctx ends: a
// frozen Kafka would hold a connect for sarama's network timeouts times its retries.
func (l *Log) producerWithin(ctx context.Context) (sarama.SyncProducer, error) {
	l.mu.Lock()
	p := l.producer
	l.mu.Unlock()
	if p != nil {
		return p, nil
	}
	type connected struct {
		p   sarama.SyncProducer
		err error
	}
	ch := make(chan connected, 1)
	go func() {
		p, err := l.connect()
		ch <- connected{p, err}
	}()
	select {
	case c := <-ch:
		return c.p, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("kafka did not answer a connect within %s: %w", appendTimeout, ctx.Err())
	}
}

// defaultMaxRecord is Kafka's default max.message.bytes, for a topic whose configuration cannot
// be read.
const defaultMaxRecord = 1048588

// ensureTopic creates the topic when missing and returns the largest record it takes.
func (l *Log) ensureTopic() (int, error) {
	return l.createTopic(l.cfg.Topic, &sarama.TopicDetail{NumPartitions: l.cfg.Partitions, ReplicationFactor: l.cfg.ReplicationFactor}, "")
}

// createTopic creates topic as detail says when it is missing, with the record size and retention
// of topic like when one is named, and returns the largest record it takes.
func (l *Log) createTopic(topic string, detail *sarama.TopicDetail, like string) (int, error) {
	sc, err := l.saramaConfig()
	if err != nil {
		return 0, err
	}
	admin, err := sarama.NewClusterAdmin(l.cfg.Brokers, sc)
	if err != nil {
		return 0, fmt.Errorf("connecting to kafka %v: %w", l.cfg.Brokers, err)
	}
	defer admin.Close()
	if like != "" {
		configs, err := describeTopic(admin, like, "max.message.bytes", "retention.ms", "retention.bytes")
		if err != nil { // made without them, the copy could refuse what like takes: the caller retries
			return 0, err
		}
		if detail.ConfigEntries == nil {
			detail.ConfigEntries = map[string]*string{}
		}
		for name, v := range configs {
			detail.ConfigEntries[name] = &v
		}
	}
	err = admin.CreateTopic(topic, detail, false)
	var te *sarama.TopicError
	if err != nil && !(errors.As(err, &te) && te.Err == sarama.ErrTopicAlreadyExists) {
		return 0, fmt.Errorf("creating topic %s: %w", topic, err)
	}
	configs, err := describeTopic(admin, topic, "max.message.bytes")
	if n, perr := strconv.Atoi(configs["max.message.bytes"]); err == nil && perr == nil && n > 0 {
		return n, nil
	}
	l.logger.Warn("the topic's max.message.bytes could not be read: assuming Kafka's default", zap.String("topic", topic), zap.Error(err))
	return defaultMaxRecord, nil
}

// describeTopic reads the named configuration entries of topic. A topic created a moment ago
// may not be known to the broker that answers yet: that answer is waited out for about 2 s.
func describeTopic(admin sarama.ClusterAdmin, topic string, names ...string) (map[string]string, error) {
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		var results []*sarama.ConfigResourceResult
		results, err = admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: topic, ConfigNames: names}}, sarama.DescribeConfigsOptions{})
		if err != nil {
			continue
		}
		out := map[string]string{}
		for _, res := range results {
			if res.ErrorCode != sarama.ErrNoError {
				err = fmt.Errorf("reading topic %s's configuration: %s", topic, res.ErrorMsg)
				break
			}
			for _, e := range res.Configs {
				out[e.Name] = e.Value
			}
		}
		if err == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("reading topic %s's configuration: %w", topic, err)
}

// Header names beside the CloudEvents binding: forwarded HTTP headers, and a redrive's address
// (router.Redrive as JSON), which must not reach subscribers as an extension would.
const (
	forwardedPrefix = "switchyard_h_"
	redriveHeader   = "switchyard_redrive"
)

// Append produces envs and returns once every in-sync replica has them. Kafka has no
// all-or-nothing without transactions: when part of a batch fails the answer is
// router.ErrUnavailable and what was written is delivered (a client retry duplicates it).
func (l *Log) Append(ctx context.Context, envs []*router.Envelope) error {
	select {
	case <-l.closing:
		return router.ErrUnavailable
	default:
	}
	// One bound for the whole append, connect included: a producer is told 503 within
	// appendTimeout whatever state Kafka is in.
	ctx, cancel := context.WithTimeout(ctx, appendTimeout)
	defer cancel()
	p, err := l.producerWithin(ctx)
	if err != nil {
		l.logger.Warn("kafka unavailable", zap.Error(err))
		return fmt.Errorf("%w: %v", router.ErrUnavailable, err)
	}
	msgs := make([]*sarama.ProducerMessage, len(envs))
	for i, env := range envs {
		msg, err := record(ctx, env, l.cfg.Topic)
		if err != nil {
			return err
		}
		// An event the topic can never take is the producer's to fix (413), not an outage to
		// retry (503) for ever.
		if size := msg.ByteSize(2); size > l.maxRecord {
			return fmt.Errorf("%w: event %s is %d bytes as a Kafka record; topic %s takes at most %d (its max.message.bytes)",
				router.ErrTooLarge, env.Event.ID(), size, l.cfg.Topic, l.maxRecord)
		}
		msgs[i] = msg
	}
	if err := l.send(ctx, p, msgs); err != nil {
		if errors.Is(err, sarama.ErrMessageSizeTooLarge) {
			return fmt.Errorf("%w: kafka refused a record as too large: %v", router.ErrTooLarge, err)
		}
		l.logger.Warn("producing to kafka failed", zap.Error(err))
		return fmt.Errorf("%w: producing to kafka: %v", router.ErrUnavailable, err)
	}
	return nil
}

// record encodes env as a record of topic: the CloudEvents Kafka binary binding, with the hop
// count, the reply budget, the forwarded headers and a redrive's address beside it.
func record(ctx context.Context, env *router.Envelope, topic string) (*sarama.ProducerMessage, error) {
	// The hop count and the arrival time travel in the record as Knative's Kafka broker keeps
	// them: as CloudEvents extensions.
	env.Event.SetExtension("knativebrokerttl", strconv.Itoa(int(env.TTL)))
	env.Event.SetExtension(router.ExtReplyBudget, strconv.Itoa(int(env.ReplyBudget)))
	msg := &sarama.ProducerMessage{Topic: topic}
	if err := kafka_sarama.WriteProducerMessage(ctx, binding.ToMessage(env.Event), msg); err != nil {
		return nil, fmt.Errorf("encoding event %s for kafka: %w", env.Event.ID(), err)
	}
	for k, vs := range env.Headers {
		if len(vs) > 0 {
			msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(forwardedPrefix + strings.ToLower(k)), Value: []byte(vs[0])})
		}
	}
	if env.Redrive != nil {
		b, err := json.Marshal(env.Redrive)
		if err != nil {
			return nil, fmt.Errorf("encoding the redrive of event %s: %w", env.Event.ID(), err)
		}
		msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(redriveHeader), Value: b})
	}
	return msg, nil
}

// appendTimeout bounds how long Append waits for Kafka's acknowledgement. sarama's own bounds
// (network timeouts of 30 s, times its retries) let a frozen broker (a stalled disk, a long GC
// pause) hold a producer's request for minutes, and the router's shutdown with it.
const appendTimeout = 10 * time.Second

// send produces msgs, giving up with ErrUnavailable when ctx (bounded by appendTimeout) ends first.
// Records Kafka takes after that are delivered (the producer, told 503, may send them again: at
// least once).
func (l *Log) send(ctx context.Context, p sarama.SyncProducer, msgs []*sarama.ProducerMessage) error {
	done := make(chan error, 1)
	go func() { done <- p.SendMessages(msgs) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: kafka did not acknowledge within %s: %v", router.ErrUnavailable, appendTimeout, ctx.Err())
	}
}

// producerCloseTimeout bounds Close's wait for records in flight to a Kafka that does not answer.
const producerCloseTimeout = 5 * time.Second

// Len is unknown for a Kafka log (the lag lives in the consumer group).
func (l *Log) Len() int { return 0 }

// Close stops Append and makes Run return after committing what is final.
func (l *Log) Close() {
	l.once.Do(func() {
		close(l.closing)
		l.mu.Lock()
		p, pp := l.producer, l.parkProducer
		l.mu.Unlock()
		if pp != nil {
			defer pp.Close()
		}
		if p != nil {
			closed := make(chan struct{})
			go func() { _ = p.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(producerCloseTimeout):
				// Their producers were answered 503 (send gave up); stopping matters more.
				l.logger.Warn("kafka producer not closed: records in flight are not acknowledged", zap.Duration("waited", producerCloseTimeout))
			}
		}
	})
}

var _ router.BrokerLog = (*Log)(nil)
