// Package kafka is the KafkaSource: records of any topic become CloudEvents and go to a broker
// (through router.Publisher) or a URI. A record's offset is committed only once its event was
// accepted, dead-lettered, or recorded as failed (with the event, for redrive): without
// spec.delivery a sink that pushes back is retried until it takes the event (slower, never
// skipped); with it, Knative's retry, backoff and deadLetterSink apply. The record mapping follows
// Knative's KafkaSource and is documented in docs/kafka.md.
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
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/delivery"
	"github.com/switchyard-events/switchyard/router/kafkaclient"
	"github.com/switchyard-events/switchyard/router/tracing"
)

// Manager runs the KafkaSources of the current configuration.
type Manager struct {
	sink       *delivery.SinkSender
	results    router.ResultStore
	logger     *zap.Logger
	secretsDir string

	mu      sync.Mutex
	running map[string]*running
	// redriving holds the event ids whose redrive is under way, per source, so that asking twice
	// does not send twice.
	redriving router.RedrivesUnderWay
	// stopped ends redrives under way when the manager stops; redrives counts their goroutines,
	// which Stop waits for (the result store they record into is closed after it).
	stopped  context.Context
	stop     context.CancelFunc
	redrives sync.WaitGroup
}

type running struct {
	cfg    *config.KafkaSource
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager returns a Manager with no sources; secretKeyRefs of their net settings are read
// under secretsDir. Records the sinks refuse for good are recorded as failed outcomes in results.
func NewManager(p router.Publisher, d *delivery.Deliverer, results router.ResultStore, logger *zap.Logger, secretsDir string) *Manager {
	m := &Manager{sink: &delivery.SinkSender{Publisher: p, Deliverer: d}, results: results, logger: logger.Named("kafka-source"),
		secretsDir: secretsDir, running: map[string]*running{}}
	m.stopped, m.stop = context.WithCancel(context.Background())
	return m
}

// OutcomePrefix starts the name under which a KafkaSource's outcomes are recorded and queried, as
// if it were a trigger: "kafkasource:NAME" (Kubernetes names have no colon, so no trigger has it).
const OutcomePrefix = "kafkasource:"

// OutcomeRef is the TriggerRef a KafkaSource's outcomes carry.
func OutcomeRef(namespace, name string) router.TriggerRef {
	return router.TriggerRef{Namespace: namespace, Name: OutcomePrefix + name}
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

// Stop stops every source, committing what was final, and ends redrives under way (what they had
// not finished stays on the failed list).
func (m *Manager) Stop() {
	m.mu.Lock()
	m.stop() // under mu: a Redrive either started its goroutine before, or sees the stop
	m.mu.Unlock()
	m.Apply(nil)
	m.redrives.Wait()
}

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

// ConsumeClaim sends a partition's records in order, each only after the previous is final.
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
		if !s.handle(sess.Context(), e, msg, nil) {
			return nil // the session ended before the event was final: the next owner resends it
		}
		sess.MarkMessage(msg, "")
	}
	return nil
}

// handle sends e to the sink under the source's delivery policy. When the sink refuses it for
// good, or the retries are spent, it is dead-lettered (with spec.delivery.deadLetterSink) or
// recorded as failed with the event, for redrive: the partition keeps flowing, and nothing is
// passed over unrecorded. For a redrive (old is the outcome redriven), the new run is recorded
// whatever it is, and then old leaves the failed list. It returns false only when ctx ended first
// (nothing recorded: the record is read again).
func (s *source) handle(ctx context.Context, e *event.Event, msg *sarama.ConsumerMessage, old *router.Outcome) bool {
	started := time.Now()
	sendCtx, end := ctx, func(error) {}
	if msg != nil {
		sendCtx, end = tracing.SourceSpan(ctx, "receive "+msg.Topic, trace.SpanKindConsumer, e,
			attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", msg.Topic),
			attribute.Int("messaging.destination.partition.id", int(msg.Partition)), attribute.Int64("messaging.kafka.offset", msg.Offset))
	}
	attempts, err := s.send(sendCtx, e)
	end(err)
	if err != nil && ctx.Err() != nil {
		return false
	}
	o := &router.Outcome{EventID: e.ID(), Source: e.Source(), Type: e.Type(), Trigger: OutcomeRef(s.cfg.Namespace, s.cfg.Name),
		Subscriber: s.cfg.Sink.String(), Status: router.StatusDelivered, Attempts: attempts, Received: started, TraceID: tracing.TraceID(e)}
	if s.cfg.Sink.Broker != nil {
		o.Broker = *s.cfg.Sink.Broker
	}
	if old != nil {
		o.Received = old.Received
	}
	if err != nil {
		s.giveUp(ctx, e, msg, o, err)
	} else if old == nil {
		return true // the everyday case: the sink has it, and the broker records its own outcomes
	}
	o.Finished = time.Now()
	if !s.record(ctx, o) {
		return false
	}
	if old != nil {
		if err := s.m.results.Redriven(ctx, old); err != nil {
			s.logger.Warn("redriven event stays on the failed list", zap.String("event_id", e.ID()), zap.Error(err))
		}
	}
	return true
}

// giveUp fills o for e, which the sink would not take (err), after dead-lettering it when the
// policy has a dead-letter sink.
func (s *source) giveUp(ctx context.Context, e *event.Event, msg *sarama.ConsumerMessage, o *router.Outcome, err error) {
	o.Status, o.LastCode, o.LastError, o.Event = router.StatusFailed, router.FailureCode(err), err.Error(), e
	if p := s.cfg.Delivery; p != nil && p.DeadLetterSink != "" {
		failure := delivery.Result{Attempts: o.Attempts, Code: o.LastCode, Err: err}
		res, _ := s.m.sink.Deliverer.DeadLetter(ctx, &delivery.Request{Event: e, Namespace: s.cfg.Namespace}, p, &failure, s.cfg.Sink.String())
		if res.Delivered() {
			o.Status = router.StatusDeadLettered
		} else {
			o.LastError += "; the dead-letter sink did not take it either: " + res.Err.Error()
		}
	}
	fields := []zap.Field{zap.String("event_id", e.ID()), zap.String("status", string(o.Status)), zap.Int("attempts", o.Attempts), zap.Error(err)}
	if msg != nil {
		fields = append(fields, zap.String("topic", msg.Topic), zap.Int32("partition", msg.Partition), zap.Int64("offset", msg.Offset))
	}
	s.logger.Error("the sink did not take the record's event: recorded, and the partition goes on", fields...)
}

// record stores o and waits until it is durable (a DurableStore), so that the record's offset is
// committed only after the only trace of a failed record is safe.
func (s *source) record(ctx context.Context, o *router.Outcome) bool {
	ds, ok := s.m.results.(router.DurableStore)
	if !ok {
		s.m.results.Record(o)
		return true
	}
	durable := make(chan struct{})
	ds.RecordThen(o, func() { close(durable) })
	select {
	case <-durable:
		return true
	case <-ctx.Done():
		return false
	}
}

// send tries until the sink accepts e, refuses it for good, the policy's retries are spent (with
// spec.delivery; without it a sink that pushes back is retried for ever, backing off up to 5 s), or
// ctx ends. It returns the attempts made and the last error.
func (s *source) send(ctx context.Context, e *event.Event) (int, error) {
	backoff := 50 * time.Millisecond
	for n := 1; ; n++ {
		err := s.deliver(ctx, e)
		// A broker not found is a reload under way (the source goes with its broker): wait.
		if err == nil || !router.IsRetryable(err) && !errors.Is(err, router.ErrBrokerNotFound) {
			return n, err
		}
		wait := backoff
		if p := s.cfg.Delivery; p != nil {
			if n > p.Retry {
				return n, err
			}
			wait = p.Wait(n)
		} else if backoff < 5*time.Second {
			backoff *= 2
		}
		s.logger.Debug("sink pushed back; retrying", zap.String("event_id", e.ID()), zap.Error(err))
		if !router.Sleep(ctx, wait) {
			return n, ctx.Err()
		}
	}
}

func (s *source) deliver(ctx context.Context, e *event.Event) error {
	if p := s.cfg.Delivery; p != nil && s.cfg.Sink.Broker == nil {
		// One attempt under the policy's timeout and format: send does the retries.
		req := &delivery.Request{URL: s.cfg.Sink.URI, Event: e, Namespace: s.cfg.Namespace}
		return s.m.sink.Deliverer.Deliver(ctx, req, &delivery.Policy{Timeout: p.Timeout, Format: p.Format}).Err
	}
	return s.m.sink.Send(ctx, s.cfg.Sink, &router.Envelope{Event: e}, s.cfg.Namespace)
}

// maxRedrive bounds one redrive request, as a trigger's; run it again for more.
const maxRedrive = 100000

// ErrSourceNotFound: a redrive named a KafkaSource that is not configured.
var ErrSourceNotFound = errors.New("KafkaSource not found")

// Redrive sends again to its sink the events of KafkaSource ref's failed and dead-lettered
// outcomes (ref.Name is OutcomePrefix + the source's name): one event or the failed list narrowed
// by q. It returns how many it queued; they are sent one after another in the
// background, each new run recorded, and only then the old outcome taken off the failed list. An
// event whose redrive is under way is skipped.
func (m *Manager) Redrive(ctx context.Context, ref router.TriggerRef, q router.RedriveQuery) (int, error) {
	name, _ := strings.CutPrefix(ref.Name, OutcomePrefix)
	m.mu.Lock()
	r := m.running[ref.Namespace+"/"+name]
	stopping := m.stopped.Err() != nil
	if r != nil && !stopping {
		m.redrives.Add(1)
	}
	m.mu.Unlock()
	switch {
	case stopping:
		return 0, fmt.Errorf("KafkaSource %s/%s: the router is stopping", ref.Namespace, name)
	case r == nil:
		return 0, fmt.Errorf("%w: %s/%s", ErrSourceNotFound, ref.Namespace, name)
	}
	candidates, err := router.RedriveCandidates(ctx, m.results, ref, q, maxRedrive)
	if err != nil {
		m.redrives.Done()
		return 0, err
	}
	queued := m.redriving.Claim(ref, candidates)
	src := &source{cfg: r.cfg, m: m, logger: m.logger.With(zap.String("source", ref.Namespace+"/"+name))}
	go func() {
		defer m.redrives.Done()
		for i := range queued {
			o := &queued[i]
			e := o.Event.Clone()
			if !src.handle(m.stopped, &e, nil, o) {
				return // stopping: the rest stays on the failed list
			}
			m.redriving.Done(ref, o)
		}
	}()
	return len(queued), nil
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
