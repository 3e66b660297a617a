// Package kafka is the KafkaSource: records of any topic become CloudEvents and go to a broker
// (through router.Publisher) or a URI. A record's offset is committed only once its event was
// accepted; when the sink pushes back, the partition waits and retries: slower, never skipped.
// The record mapping follows Knative's KafkaSource and is documented in docs/kafka.md.
package kafka

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/kafkaclient"
)

// Manager runs the KafkaSources of the current configuration.
type Manager struct {
	sink       *delivery.SinkSender
	logger     *zap.Logger
	secretsDir string

	mu      sync.Mutex
	running map[string]*running
}

type running struct {
	cfg    *config.KafkaSource
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a Manager with no sources; secretKeyRefs of their net settings are read
// under secretsDir.
func NewManager(p router.Publisher, d *delivery.Deliverer, logger *zap.Logger, secretsDir string) *Manager {
	return &Manager{sink: &delivery.SinkSender{Publisher: p, Deliverer: d}, logger: logger.Named("kafka-source"), secretsDir: secretsDir, running: map[string]*running{}}
}

// Apply starts new sources, restarts changed ones and stops removed ones.
func (m *Manager) Apply(sources []*config.KafkaSource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]*config.KafkaSource{}
	for _, s := range sources {
		want[s.Namespace+"/"+s.Name] = s
	}
	for key, r := range m.running {
		if w, ok := want[key]; !ok || !reflect.DeepEqual(w, r.cfg) {
			r.cancel()
			<-r.done
			delete(m.running, key)
		}
	}
	for key, s := range want {
		if m.running[key] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &running{cfg: s, cancel: cancel, done: make(chan struct{})}
		m.running[key] = r
		src := &source{cfg: s, m: m, logger: m.logger.With(zap.String("source", key))}
		go func() { defer close(r.done); src.run(ctx) }()
	}
}

// Stop stops every source, committing what was accepted.
func (m *Manager) Stop() { m.Apply(nil) }

type source struct {
	cfg    *config.KafkaSource
	m      *Manager
	logger *zap.Logger
}

func (s *source) saramaConfig() (*sarama.Config, error) {
	c, err := kafkaclient.Config("switchyard-kafka-source", s.cfg.Security, s.m.secretsDir)
	if err != nil {
		return nil, err
	}
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	if s.cfg.FromLatest {
		c.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	// Offsets are marked only after acceptance, so committing marked offsets every second is safe.
	c.Consumer.Offsets.AutoCommit.Enable = true
	c.Consumer.Offsets.AutoCommit.Interval = time.Second
	return c, nil
}

func (s *source) run(ctx context.Context) {
	for ctx.Err() == nil {
		sc, err := s.saramaConfig()
		if err != nil {
			s.logger.Warn("kafka client configuration unusable; retrying", zap.Error(err))
			router.Sleep(ctx, time.Second)
			continue
		}
		group, err := sarama.NewConsumerGroup(s.cfg.BootstrapServers, s.cfg.Group, sc)
		if err != nil {
			s.logger.Warn("kafka unavailable; retrying", zap.Error(err))
			router.Sleep(ctx, time.Second)
			continue
		}
		for ctx.Err() == nil {
			if err := group.Consume(ctx, s.cfg.Topics, s); err != nil {
				if errors.Is(err, sarama.ErrClosedConsumerGroup) {
					break
				}
				s.logger.Warn("consuming", zap.Error(err))
				router.Sleep(ctx, time.Second)
			}
		}
		_ = group.Close() // commits what was marked
	}
}

func (s *source) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (s *source) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim sends a partition's records in order, each only after the previous was accepted.
func (s *source) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		e, err := s.toEvent(msg)
		if err != nil {
			// A record that claims to be a CloudEvent but is not one can never be sent; it is
			// logged with its coordinates and passed over rather than blocking the partition.
			s.logger.Error("record is not a valid CloudEvent: passed over", zap.String("topic", msg.Topic),
				zap.Int32("partition", msg.Partition), zap.Int64("offset", msg.Offset), zap.Error(err))
			sess.MarkMessage(msg, "")
			continue
		}
		switch err := s.send(sess.Context(), e); {
		case err == nil:
		case sess.Context().Err() != nil:
			return nil // the session ended before the sink took it: the next owner resends it
		default:
			// Refused for good (an event the broker will never take, a 4xx from a URI sink):
			// retrying would stall the partition for ever. Logged with its coordinates, passed
			// over, as a record that is no CloudEvent is.
			s.logger.Error("the sink refused the record's event for good: passed over", zap.String("topic", msg.Topic),
				zap.Int32("partition", msg.Partition), zap.Int64("offset", msg.Offset), zap.String("event_id", e.ID()), zap.Error(err))
		}
		sess.MarkMessage(msg, "")
	}
	return nil
}

// send retries until the sink accepts e, refuses it for good (the error is returned), or ctx
// ends (ctx's error), backing off up to 5 s between tries.
func (s *source) send(ctx context.Context, e *event.Event) error {
	backoff := 50 * time.Millisecond
	for {
		err := s.deliver(ctx, e)
		// A broker not found is a reload under way (the source goes with its broker): wait.
		if err == nil || !router.IsRetryable(err) && !errors.Is(err, router.ErrBrokerNotFound) {
			return err
		}
		s.logger.Debug("sink pushed back; retrying", zap.String("event_id", e.ID()), zap.Error(err))
		router.Sleep(ctx, backoff)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

func (s *source) deliver(ctx context.Context, e *event.Event) error {
	return s.m.sink.Send(ctx, s.cfg.Sink, &router.Envelope{Event: e}, s.cfg.Namespace)
}

// toEvent passes CloudEvents records through (binary ce_ headers or structured) and wraps any
// other record as Knative's KafkaSource does.
func (s *source) toEvent(msg *sarama.ConsumerMessage) (*event.Event, error) {
	m := kafka_sarama.NewMessageFromConsumerMessage(msg)
	var e *event.Event
	if m.ReadEncoding() != binding.EncodingUnknown {
		var err error
		if e, err = binding.ToEvent(context.Background(), m); err != nil {
			return nil, err
		}
		for _, x := range []string{"kafkaoffset", "kafkapartition", "kafkatopic"} {
			e.SetExtension(x, nil)
		}
	} else {
		w := event.New()
		w.SetID(fmt.Sprintf("partition:%d/offset:%d", msg.Partition, msg.Offset))
		w.SetType("dev.knative.kafka.event")
		w.SetSource(fmt.Sprintf("/apis/v1/namespaces/%s/kafkasources/%s#%s", s.cfg.Namespace, s.cfg.Name, msg.Topic))
		w.SetSubject(fmt.Sprintf("partition:%d#%d", msg.Partition, msg.Offset))
		if !msg.Timestamp.IsZero() {
			w.SetTime(msg.Timestamp)
		}
		if len(msg.Key) > 0 {
			w.SetExtension("key", keyString(msg.Key))
		}
		for _, h := range msg.Headers {
			if string(h.Key) == "content-type" {
				w.SetDataContentType(string(h.Value))
			}
		}
		w.DataEncoded = msg.Value
		e = &w
	}
	for k, v := range s.cfg.Extensions {
		e.SetExtension(k, v)
	}
	return e, router.ValidateEvent(e)
}

// keyString is a record key as the key extension carries it: as it is when it is printable text,
// else base64 (keys are often binary: Avro, Protobuf, a hash), which a CloudEvents String cannot
// hold as bytes.
func keyString(key []byte) string {
	if utf8.Valid(key) && !strings.ContainsFunc(string(key), unicode.IsControl) {
		return string(key)
	}
	return base64.StdEncoding.EncodeToString(key)
}
