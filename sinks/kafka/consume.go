package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// Run reads the topic back through the broker's consumer group and hands each record to h. It
// reconnects while Kafka is unavailable and returns once the log is closed (or ctx ends) and
// what it read is final and committed, as far as the grace allows.
func (l *Log) Run(ctx context.Context, h router.Handler) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for ctx.Err() == nil {
			// Create the topic first: a consumer's metadata request on a missing topic can make a
			// broker with auto.create.topics.enable create it with its default partition count.
			if _, err := l.ensureTopic(); err != nil {
				l.logger.Warn("kafka topic unavailable; retrying", zap.Error(err))
				router.Sleep(ctx, time.Second)
				continue
			}
			group, client, err := l.newGroup()
			if err != nil {
				l.logger.Warn("kafka consumer group unavailable; retrying", zap.Error(err))
				router.Sleep(ctx, time.Second)
				continue
			}
			l.consume(ctx, group, client, h)
		}
	}()
	<-ctx.Done()
	// Every claim stops reading at once, hands over what it read, waits a while for it to be
	// final and commits (each step bounded: claimDrainTimeout, commitTimeout); then sarama leaves
	// the group. A Kafka that does not answer (frozen, not down) would hold those last steps, and
	// the shutdown, for sarama's network timeouts times its retries: once the claims are done,
	// leaving gets leaveTimeout. What was not committed is read again (at least once).
	claimsDone := make(chan struct{})
	go func() {
		for l.claims.Load() > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		close(claimsDone)
	}()
	hardStop := time.After(claimDrainTimeout + commitTimeout + leaveTimeout)
	select {
	case <-stopped:
		return
	case <-claimsDone:
	case <-hardStop:
	}
	select {
	case <-stopped:
	case <-time.After(leaveTimeout):
		l.logger.Warn("kafka consumer not stopped: kafka does not answer; records after the last committed offset will be read again")
	}
}

// claimDrainTimeout is how long a claim that stops waits for its records in flight to be final
// before its last commit; commitTimeout bounds that commit.
// leaveTimeout bounds leaving the consumer group once the claims are done.
const (
	claimDrainTimeout = 10 * time.Second
	commitTimeout     = 5 * time.Second
	leaveTimeout      = 2 * time.Second
)

// newGroup connects a client and joins the broker's consumer group with it; the client also
// reads the park topics back (park.go).
func (l *Log) newGroup() (sarama.ConsumerGroup, sarama.Client, error) {
	sc, err := l.saramaConfig()
	if err != nil {
		return nil, nil, err
	}
	client, err := sarama.NewClient(l.cfg.Brokers, sc)
	if err != nil {
		return nil, nil, err
	}
	group, err := sarama.NewConsumerGroupFromClient(l.cfg.Group, client)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return group, client, nil
}

// consume runs one consumer group session after another until the group closes or ctx ends.
func (l *Log) consume(ctx context.Context, group sarama.ConsumerGroup, client sarama.Client, h router.Handler) {
	defer client.Close()
	defer group.Close()
	handler := &groupHandler{l: l, h: h, client: client}
	if consumer, err := sarama.NewConsumerFromClient(client); err == nil {
		defer consumer.Close()
		handler.consumer = consumer
	}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{l.cfg.Topic}, handler); err != nil {
			if errors.Is(err, sarama.ErrClosedConsumerGroup) {
				return
			}
			l.logger.Warn("consuming from kafka", zap.Error(err))
			router.Sleep(ctx, time.Second)
		}
	}
}

type groupHandler struct {
	l        *Log
	h        router.Handler
	client   sarama.Client
	consumer sarama.Consumer // reads park topics back; nil when it could not be made
}

func (g *groupHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (g *groupHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim hands one partition's records to the router in order, with at most Window of them
// not yet final, and commits the contiguous run of final offsets every second and at the end.
func (g *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	g.l.claims.Add(1)
	defer g.l.claims.Add(-1)
	t := newTracker()
	window := make(chan struct{}, g.l.cfg.Window)
	bytes := newByteWindow(g.l.cfg.WindowBytes)
	stopCommits := make(chan struct{})
	var commits sync.WaitGroup
	commits.Add(1)
	go func() {
		defer commits.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopCommits:
				return
			case <-tick.C:
				if next, ok := t.committable(); ok {
					sess.MarkOffset(claim.Topic(), claim.Partition(), next, "")
					sess.Commit()
				}
			}
		}
	}()
	// Handling runs under the router's context, not the session's: a rebalance must not cancel
	// deliveries in flight, only stop reading.
	ctx := context.WithoutCancel(sess.Context())
	// A trigger that falls behind on this partition is parked (park.go); a backlog a previous
	// owner left parked is read back first.
	parking := g.l.startParking(ctx, claim, g.h, g.client, g.consumer)
	// Triggers new to the partition are looked for before each record and, while none comes, every
	// second (start.go).
	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	for {
		// The session's end stops reading at once: the claim's channel closes only once sarama's
		// partition consumer has, which waits for Kafka.
		var msg *sarama.ConsumerMessage
		select {
		case m, ok := <-claim.Messages():
			msg = m
			if !ok {
				msg = nil
			}
		case <-idle.C:
			if parking != nil {
				parking.beginNew(parking.next.Load())
			}
			continue
		case <-sess.Context().Done():
		}
		if msg == nil {
			break
		}
		select {
		case window <- struct{}{}:
		case <-sess.Context().Done():
		}
		if sess.Context().Err() != nil {
			break
		}
		size := recordBytes(msg)
		if !bytes.take(sess.Context(), size) {
			<-window
			break
		}
		offset := msg.Offset
		t.add(offset)
		if parking != nil {
			parking.beginNew(offset)
			parking.next.Store(offset + 1)
		}
		env, err := decodeRecord(msg)
		if err != nil {
			g.l.logger.Error("record is not a CloudEvent this broker wrote: skipped", zap.Int32("partition", msg.Partition), zap.Int64("offset", offset), zap.Error(err))
			t.done(offset)
			<-window
			bytes.give(size)
			continue
		}
		env.ReadBytes = size
		g.h.Handle(ctx, env, func() { t.done(offset); <-window; bytes.give(size) })
	}
	// Give what is in flight a moment to finish, then commit what is final; the next owner of
	// the partition redelivers the rest (at-least-once). Parked copies keep being stored
	// meanwhile (they become final so), and readers of park topics drain alongside.
	if parking != nil {
		parking.stopReaders()
	}
	deadline := time.Now().Add(claimDrainTimeout)
	for len(window) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if parking != nil {
		parking.stop()
	}
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		close(stopCommits)
		commits.Wait()
		if next, ok := t.committable(); ok {
			sess.MarkOffset(claim.Topic(), claim.Partition(), next, "")
		}
		sess.Commit()
	}()
	select {
	case <-committed:
	case <-time.After(commitTimeout):
		g.l.logger.Warn("last commit of a partition not confirmed: kafka does not answer; its records after the last committed offset will be read again",
			zap.Int32("partition", claim.Partition()))
	}
	return nil
}

// recordBytes is what a record read holds in memory, about: its key, value and headers.
func recordBytes(msg *sarama.ConsumerMessage) int64 {
	n := len(msg.Key) + len(msg.Value)
	for _, h := range msg.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return int64(n)
}

// byteWindow bounds the bytes of records handed out and not final. A record larger than the whole
// bound is taken alone, once nothing else is held: it waits, it is not refused.
type byteWindow struct {
	max int64

	mu      sync.Mutex
	used    int64
	waiting bool          // someone waits on freed
	freed   chan struct{} // closed (and replaced) when bytes are given back to a waiter
}

func newByteWindow(max int64) *byteWindow {
	return &byteWindow{max: max, freed: make(chan struct{})}
}

// take holds n bytes, waiting while they do not fit; false when ctx ends first.
func (w *byteWindow) take(ctx context.Context, n int64) bool {
	for {
		w.mu.Lock()
		if w.used == 0 || w.used+n <= w.max {
			w.used += n
			w.mu.Unlock()
			return true
		}
		freed := w.freed
		w.waiting = true
		w.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return false
		}
	}
}

// give returns n bytes taken before.
func (w *byteWindow) give(n int64) {
	w.mu.Lock()
	w.used -= n
	if w.waiting { // only then: a channel per record given back would be garbage per record
		close(w.freed)
		w.freed = make(chan struct{})
		w.waiting = false
	}
	w.mu.Unlock()
}

// decodeRecord turns a record written by Append back into an envelope.
func decodeRecord(msg *sarama.ConsumerMessage) (*router.Envelope, error) {
	e, err := binding.ToEvent(context.Background(), kafka_sarama.NewMessageFromConsumerMessage(msg))
	if err != nil {
		return nil, err
	}
	// sdk-go adds where the record came from; our own extensions carry that, in Knative's names.
	for _, x := range []string{"kafkaoffset", "kafkapartition", "kafkatopic"} {
		e.SetExtension(x, nil)
	}
	env := &router.Envelope{Event: e, Partition: msg.Partition, Offset: msg.Offset, Received: msg.Timestamp}
	if v, ok := router.Extension(e, "knativebrokerttl"); ok {
		if n, err := strconv.Atoi(toString(v)); err == nil {
			env.TTL = int32(n)
		}
		e.SetExtension("knativebrokerttl", nil)
	}
	if v, ok := router.Extension(e, router.ExtReplyBudget); ok {
		if n, err := strconv.Atoi(toString(v)); err == nil {
			env.ReplyBudget = int32(n)
		}
		e.SetExtension(router.ExtReplyBudget, nil)
	}
	if v, ok := router.Extension(e, "knativearrivaltime"); ok {
		if t, err := time.Parse(time.RFC3339Nano, toString(v)); err == nil {
			env.Received = t
		}
	}
	e.SetExtension("knativekafkapartition", strconv.Itoa(int(msg.Partition)))
	e.SetExtension("knativekafkaoffset", strconv.FormatInt(msg.Offset, 10))
	for _, h := range msg.Headers {
		if string(h.Key) == redriveHeader {
			env.Redrive = &router.Redrive{}
			if err := json.Unmarshal(h.Value, env.Redrive); err != nil {
				return env, fmt.Errorf("the record's %s header: %w", redriveHeader, err)
			}
			continue
		}
		if k := string(h.Key); strings.HasPrefix(k, forwardedPrefix) {
			if env.Headers == nil {
				env.Headers = http.Header{}
			}
			env.Headers.Set(strings.TrimPrefix(k, forwardedPrefix), string(h.Value))
		}
	}
	return env, e.Validate()
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// tracker finds the contiguous run of final offsets of one partition. Offsets are added in the
// order they are read; done may come in any order.
type tracker struct {
	mu      sync.Mutex
	pending []int64        // offsets read and not yet committable, in order
	at      []time.Time    // when each of pending arrived, where known (addAt)
	final   map[int64]bool // which of them are final
	next    int64          // the offset to commit (one past the last final of the run); -1: none yet
}

func newTracker() *tracker { return &tracker{final: map[int64]bool{}, next: -1} }

func (t *tracker) add(offset int64) { t.addAt(offset, time.Time{}) }

// addAt is add for a record that arrived at.
func (t *tracker) addAt(offset int64, at time.Time) {
	t.mu.Lock()
	t.pending = append(t.pending, offset)
	t.at = append(t.at, at)
	t.mu.Unlock()
}

// oldest is when the oldest record not yet committable arrived; zero when unknown or none.
func (t *tracker) oldest() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.at) == 0 {
		return time.Time{}
	}
	return t.at[0]
}

func (t *tracker) done(offset int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.final[offset] = true
	i := 0
	for i < len(t.pending) && t.final[t.pending[i]] {
		delete(t.final, t.pending[i])
		t.next = t.pending[i] + 1
		i++
	}
	t.pending = t.pending[i:]
	t.at = t.at[i:]
}

// committable returns the offset to commit, if any record became final.
func (t *tracker) committable() (int64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.next, t.next >= 0
}
