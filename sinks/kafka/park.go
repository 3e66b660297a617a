package kafka

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// Parking (docs/kafka-isolation.md): a trigger that falls behind on a partition gets its copies of
// that partition's later records written to a topic of its own, {topic}.park.{ns}.{name}, into the
// same partition number, and read back from there by a reader of that trigger alone. The shared
// window then counts a parked copy as final once Kafka has stored it, so one trigger's backlog,
// however long, never pauses the partition for the broker's other triggers.
//
// Whoever claims partition p of the broker's topic is the only writer and the only reader of
// partition p of every park topic of the broker: the claim knows exactly when a trigger's parked
// copies are all final, and hands its copies back to the shared read only then, so they keep their
// order. The reader's position is the committed offset of the consumer group
// {group}.{ns}.{name}, which nothing joins; a process that claims p after a crash or a rebalance
// finds each park topic's backlog (its end past that offset) and reads it first.

// parkTopic is trigger t's park topic of the broker topic topic.
func parkTopic(topic string, t router.TriggerRef) string {
	return topic + ".park." + t.Namespace + "." + t.Name
}

// parkedTriggerOf is the trigger whose park topic of topic name is, if it is one. Namespaces
// are DNS labels, without dots; names may hold dots.
func parkedTriggerOf(topic, name string) (router.TriggerRef, bool) {
	rest, ok := strings.CutPrefix(name, topic+".park.")
	if !ok {
		return router.TriggerRef{}, false
	}
	ns, n, ok := strings.Cut(rest, ".")
	return router.TriggerRef{Namespace: ns, Name: n}, ok && ns != "" && n != ""
}

// parkGroup is the consumer group whose committed offsets are trigger t's positions in its park
// topic.
func (l *Log) parkGroup(t router.TriggerRef) string {
	return l.cfg.Group + "." + t.Namespace + "." + t.Name
}

// offsetHeader carries a parked copy's offset in the broker's topic: the knativekafkaoffset its
// subscriber sees is the one the event had there.
const offsetHeader = "switchyard_offset"

const (
	// parkBatch bounds the copies written to a park topic at once.
	parkBatch = 500
	// parkReadWindow bounds a reader's copies handed to its trigger and not yet final.
	parkReadWindow = 1000
)

// Window is how much of a partition may be handed out and not be final: records and bytes.
func (l *Log) Window() (int, int64) { return l.cfg.Window, l.cfg.WindowBytes }

// Parked reports whether trigger t's copies of partition p are being parked.
func (l *Log) Parked(t router.TriggerRef, p int32) bool {
	c := l.claimed(p)
	if c == nil || c.parkedNow.Load() == 0 {
		return false
	}
	c.mu.Lock()
	pt := c.triggers[t]
	c.mu.Unlock()
	if pt == nil {
		return false
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	return pt.parked
}

// Park queues trigger t's copy of env for its park topic; done runs once Kafka stored it.
func (l *Log) Park(t router.TriggerRef, env *router.Envelope, done func()) bool {
	c := l.claimed(env.Partition)
	if c == nil {
		return false
	}
	pt := c.trigger(t)
	pt.mu.Lock()
	if !pt.parked {
		pt.parked = true
		c.parkedNow.Add(1)
		l.logger.Info("trigger behind: its copies are parked in a topic of its own until it catches up",
			zap.String("trigger", t.String()), zap.Int32("partition", c.partition), zap.String("park_topic", pt.topic))
	}
	pt.writing++
	pt.mu.Unlock()
	// The event is shared with the copies of the other triggers, being delivered now: encoding
	// sets extensions (the hop count, the reply budget), so the park topic gets a clone.
	own := *env
	e := env.Event.Clone()
	own.Event = &e
	select {
	case pt.writes <- parkWrite{&own, done}:
		return true
	case <-c.stopWriting.Done():
		pt.mu.Lock()
		pt.writing--
		pt.mu.Unlock()
		return false
	}
}

// Lag is what trigger t owes on the partitions claimed here, besides its copies in memory: the
// records not read yet, and its parked copies not final; with the arrival of the oldest parked
// copy handed to it and not final.
func (l *Log) Lag(t router.TriggerRef) (records int64, oldest time.Time) {
	l.claimsMu.RLock()
	claims := make([]*claimParking, 0, len(l.parkings))
	for _, c := range l.parkings {
		claims = append(claims, c)
	}
	l.claimsMu.RUnlock()
	for _, c := range claims {
		if c.highWater != nil {
			if unread := c.highWater() - c.next.Load(); unread > 0 {
				records += unread
			}
		}
		c.mu.Lock()
		pt := c.triggers[t]
		c.mu.Unlock()
		if pt == nil {
			continue
		}
		n, at := pt.backlog()
		records += n
		if !at.IsZero() && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	return records, oldest
}

// backlog is how many of the trigger's parked copies are not final, and when the oldest of those
// handed to it arrived.
func (pt *parkedTrigger) backlog() (int64, time.Time) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	n := int64(pt.writing) + max(0, pt.earlierUntil-pt.earlierNext)
	if pt.read == nil {
		return n + max(0, pt.end-pt.from), time.Time{}
	}
	read := pt.from
	if next, ok := pt.read.committable(); ok {
		read = next
	}
	return n + max(0, pt.end-read), pt.read.oldest()
}

func (l *Log) claimed(p int32) *claimParking {
	l.claimsMu.RLock()
	defer l.claimsMu.RUnlock()
	return l.parkings[p]
}

// claimParking is one claimed partition's parked triggers.
type claimParking struct {
	l         *Log
	partition int32
	h         router.ParkedHandler
	client    sarama.Client
	consumer  sarama.Consumer
	ctx       context.Context // deliveries run under it: the router's, not the session's
	// stopReading ends the readers (the claim stopped reading too); stopWriting ends the writers,
	// once the claim's own records had their time to become final.
	stopReading, stopWriting context.Context
	endReading, endWriting   context.CancelFunc
	parkedNow                atomic.Int32 // triggers parked now: Parked's fast path
	// highWater is the partition's end as the claim last heard it, next the offset it reads next:
	// the records not read yet, for Lag.
	highWater func() int64
	next      atomic.Int64
	wg        sync.WaitGroup

	// version is the handler's routes version beginNew last looked at, begun the triggers it
	// found there (start.go); both only on the claim's reading goroutine.
	version uint64
	begun   map[startKey]bool

	mu       sync.Mutex
	triggers map[router.TriggerRef]*parkedTrigger
}

// parkedTrigger is one trigger's park partition on a claim.
type parkedTrigger struct {
	c      *claimParking
	ref    router.TriggerRef
	topic  string
	writes chan parkWrite

	mu      sync.Mutex
	parked  bool
	writing int      // copies given to Park and not yet stored
	end     int64    // one past the newest offset stored in the park partition
	from    int64    // where the reader starts
	read    *tracker // the reader's finished offsets; nil until it runs
	// earlier, when set, is the trigger's start-from to look up (and its earlier records to read)
	// before its park topic (start.go); earlierNext and earlierUntil are those records left.
	earlier                   *earlier
	earlierNext, earlierUntil int64
}

type parkWrite struct {
	env  *router.Envelope
	done func()
}

// startParking makes partition p's parking, resuming the backlogs a previous owner left in the
// broker's park topics. It returns nil when h cannot take parked copies back.
func (l *Log) startParking(ctx context.Context, claim sarama.ConsumerGroupClaim, h router.Handler, client sarama.Client, consumer sarama.Consumer) *claimParking {
	ph, ok := h.(router.ParkedHandler)
	if !ok || client == nil || consumer == nil {
		return nil
	}
	p := claim.Partition()
	c := &claimParking{l: l, partition: p, h: ph, client: client, consumer: consumer, ctx: ctx, triggers: map[router.TriggerRef]*parkedTrigger{},
		highWater: claim.HighWaterMarkOffset, begun: map[startKey]bool{}}
	c.next.Store(max(0, claim.InitialOffset())) // OffsetOldest (-2) until a commit exists
	c.stopReading, c.endReading = context.WithCancel(context.Background())
	c.stopWriting, c.endWriting = context.WithCancel(context.Background())
	c.resumeBacklogs()
	c.wg.Add(1)
	go c.refreshKnown()
	l.claimsMu.Lock()
	if l.parkings == nil {
		l.parkings = map[int32]*claimParking{}
	}
	l.parkings[p] = c
	l.claimsMu.Unlock()
	return c
}

// resumeBacklogs finds the park topics with records on this partition past their trigger's
// committed position, and reads them back from there.
func (c *claimParking) resumeBacklogs() {
	l := c.l
	sc, err := l.saramaConfig()
	if err != nil {
		return
	}
	admin, err := sarama.NewClusterAdmin(l.cfg.Brokers, sc)
	if err != nil {
		l.logger.Warn("park topics not listed: their backlogs wait for the next claim", zap.Error(err))
		return
	}
	defer admin.Close()
	topics, err := admin.ListTopics()
	if err != nil {
		l.logger.Warn("park topics not listed: their backlogs wait for the next claim", zap.Error(err))
		return
	}
	for name := range topics {
		ref, ok := parkedTriggerOf(l.cfg.Topic, name)
		if !ok {
			continue
		}
		end, err := c.client.GetOffset(name, c.partition, sarama.OffsetNewest)
		if err != nil {
			l.logger.Warn("park topic's end not read: its backlog waits for the next claim", zap.String("park_topic", name), zap.Error(err))
			continue
		}
		from, err := c.committed(admin, ref, name)
		if err != nil {
			l.logger.Warn("parked trigger's position not read: its backlog waits for the next claim", zap.String("park_topic", name), zap.Error(err))
			continue
		}
		if end <= from {
			continue
		}
		pt := c.trigger(ref)
		pt.mu.Lock()
		pt.parked, pt.end, pt.from = true, end, from
		pt.mu.Unlock()
		c.parkedNow.Add(1)
		l.logger.Info("parked copies of a trigger found: read back before its new ones", zap.String("trigger", ref.String()),
			zap.Int32("partition", c.partition), zap.Int64("from", from), zap.Int64("to", end))
	}
}

// committed is ref's position in its park topic's partition: its group's committed offset, or the
// partition's oldest offset when there is none.
func (c *claimParking) committed(admin sarama.ClusterAdmin, ref router.TriggerRef, topic string) (int64, error) {
	res, err := admin.ListConsumerGroupOffsets(c.l.parkGroup(ref), map[string][]int32{topic: {c.partition}})
	if err != nil {
		return 0, err
	}
	if b := res.GetBlock(topic, c.partition); b != nil && b.Err == sarama.ErrNoError && b.Offset >= 0 {
		return b.Offset, nil
	}
	return c.client.GetOffset(topic, c.partition, sarama.OffsetOldest)
}

// trigger returns ref's park partition on this claim, starting its writer and reader.
func (c *claimParking) trigger(ref router.TriggerRef) *parkedTrigger { return c.newTrigger(ref, nil) }

// newTrigger is trigger for a trigger whose start-from e its reader looks up first, when it is
// new to the claim.
func (c *claimParking) newTrigger(ref router.TriggerRef, e *earlier) *parkedTrigger {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt := c.triggers[ref]; pt != nil {
		return pt
	}
	pt := &parkedTrigger{c: c, ref: ref, topic: parkTopic(c.l.cfg.Topic, ref), writes: make(chan parkWrite, parkBatch), earlier: e}
	c.triggers[ref] = pt
	c.wg.Add(1)
	go pt.run()
	return pt
}

// stopReaders makes the readers stop handing out copies: the claim stopped reading too. They
// give what they handed out its time to become final, and commit.
func (c *claimParking) stopReaders() { c.endReading() }

// stop ends the claim's parking once the claim's own records had their time: writers stop (what
// they did not store is not final, so the partition's next owner reads it again from the broker's
// topic). It returns once readers and writers are done and committed, or gave up.
func (c *claimParking) stop() {
	c.endReading()
	c.endWriting()
	c.wg.Wait()
	c.l.claimsMu.Lock()
	if c.l.parkings[c.partition] == c {
		delete(c.l.parkings, c.partition)
	}
	c.l.claimsMu.Unlock()
}

// run creates the park topic, then writes the trigger's parked copies to it as they come while a
// reader hands them back.
func (pt *parkedTrigger) run() {
	c := pt.c
	defer c.wg.Done()
	for {
		if err := pt.ensureTopic(); err == nil {
			break
		} else {
			c.l.logger.Warn("park topic unavailable; retrying", zap.String("park_topic", pt.topic), zap.Error(err))
		}
		if !router.Sleep(c.stopWriting, time.Second) {
			return
		}
	}
	c.wg.Add(1)
	go pt.readBack()
	batch := make([]parkWrite, 0, parkBatch)
	for {
		batch = batch[:0]
		select {
		case w := <-pt.writes:
			batch = append(batch, w)
		case <-c.stopWriting.Done():
			return
		}
	more:
		for len(batch) < parkBatch {
			select {
			case w := <-pt.writes:
				batch = append(batch, w)
			default:
				break more
			}
		}
		if !pt.store(batch) {
			return
		}
	}
}

// ensureTopic creates the park topic like the broker's: as many partitions, the same record size
// and retention (so a parked backlog is kept as long as the broker's topic keeps its events).
func (pt *parkedTrigger) ensureTopic() error {
	l := pt.c.l
	parts, err := pt.c.client.Partitions(l.cfg.Topic)
	if err != nil {
		return err
	}
	_, err = l.createTopic(pt.topic, &sarama.TopicDetail{NumPartitions: int32(len(parts)), ReplicationFactor: l.cfg.ReplicationFactor}, l.cfg.Topic)
	return err
}

// store writes batch to the park partition, trying again until Kafka takes it or the claim ends,
// and then releases each copy from the shared window.
func (pt *parkedTrigger) store(batch []parkWrite) bool {
	c := pt.c
	msgs := make([]*sarama.ProducerMessage, 0, len(batch))
	kept := batch[:0]
	for _, w := range batch {
		msg, err := record(context.Background(), w.env, pt.topic)
		if err != nil { // it was decoded from the broker's topic: not expected; deliver it unparked
			c.l.logger.Error("a copy could not be parked: delivered from memory", zap.String("trigger", pt.ref.String()), zap.Error(err))
			pt.mu.Lock()
			pt.writing--
			pt.mu.Unlock()
			c.h.HandleParked(c.ctx, pt.ref, w.env, w.done)
			continue
		}
		msg.Partition = c.partition
		msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(offsetHeader), Value: []byte(strconv.FormatInt(w.env.Offset, 10))})
		msgs = append(msgs, msg)
		kept = append(kept, w)
	}
	if len(msgs) == 0 {
		return true
	}
	for {
		p, err := c.l.parkProducerWithin(c.stopWriting)
		if err == nil {
			ctx, cancel := context.WithTimeout(c.stopWriting, appendTimeout)
			err = c.l.send(ctx, p, msgs)
			cancel()
		}
		if err == nil {
			break
		}
		c.l.logger.Warn("parking copies failed; retrying", zap.String("park_topic", pt.topic), zap.Error(err))
		if !router.Sleep(c.stopWriting, time.Second) {
			return false
		}
	}
	pt.mu.Lock()
	pt.writing -= len(kept)
	pt.end = max(pt.end, msgs[len(msgs)-1].Offset+1)
	pt.mu.Unlock()
	for _, w := range kept {
		w.done()
	}
	pt.settle()
	return true
}

// settle hands the trigger's copies back to the shared read once every parked one is final.
func (pt *parkedTrigger) settle() {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if !pt.parked || pt.writing > 0 || pt.read == nil || pt.earlier != nil {
		return
	}
	if next, ok := pt.read.committable(); ok && next >= pt.end {
		pt.parked = false
		pt.c.parkedNow.Add(-1)
		pt.c.l.logger.Info("trigger caught up: its copies come through the shared read again",
			zap.String("trigger", pt.ref.String()), zap.Int32("partition", pt.c.partition))
	}
}

// readBack hands the park partition's copies to the trigger, at most parkReadWindow not final,
// and commits its finished run of offsets to the trigger's group every second and at the end.
func (pt *parkedTrigger) readBack() {
	c := pt.c
	l := c.l
	defer c.wg.Done()
	var om sarama.OffsetManager
	var pom sarama.PartitionOffsetManager
	var pc sarama.PartitionConsumer
	pt.mu.Lock()
	e := pt.earlier
	pt.mu.Unlock()
	for {
		var err error
		if om == nil {
			om, err = sarama.NewOffsetManagerFromClient(l.parkGroup(pt.ref), c.client)
		}
		if err == nil && e != nil { // a new trigger's earlier records come before its parked ones
			if !pt.readEarlier(om, e) {
				l.closeOffsets(om, pom, pt.topic)
				return
			}
			e = nil
		}
		if err == nil && pom == nil {
			pom, err = om.ManagePartition(pt.topic, c.partition)
		}
		if err == nil {
			from, _ := pom.NextOffset()
			pc, err = c.consumer.ConsumePartition(pt.topic, c.partition, from)
			if err == sarama.ErrOffsetOutOfRange { // the topic's retention deleted them: said, and read on
				l.logger.Error("parked copies deleted by the park topic's retention before their trigger read them",
					zap.String("park_topic", pt.topic), zap.Int64("from", from))
				pc, err = c.consumer.ConsumePartition(pt.topic, c.partition, sarama.OffsetOldest)
			}
		}
		if err == nil {
			break
		}
		l.logger.Warn("parked copies not read back yet; retrying", zap.String("park_topic", pt.topic), zap.Error(err))
		if !router.Sleep(c.stopReading, time.Second) {
			l.closeOffsets(om, pom, pt.topic)
			return
		}
	}
	t := newTracker()
	pt.mu.Lock()
	pt.read = t
	if from, _ := pom.NextOffset(); from >= 0 {
		pt.from = from
	}
	pt.mu.Unlock()
	window := make(chan struct{}, parkReadWindow)
	bytes := newByteWindow(max(1<<20, l.cfg.WindowBytes/8))
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
					pom.MarkOffset(next, "")
					om.Commit()
				}
			}
		}
	}()
	for {
		var msg *sarama.ConsumerMessage
		select {
		case msg = <-pc.Messages():
		case <-c.stopReading.Done():
		}
		if msg == nil {
			break
		}
		select {
		case window <- struct{}{}:
		case <-c.stopReading.Done():
		}
		if c.stopReading.Err() != nil {
			break
		}
		offset := msg.Offset
		size := recordBytes(msg)
		if !bytes.take(c.stopReading, size) {
			<-window
			break
		}
		env, err := decodeRecord(msg)
		if env != nil {
			t.addAt(offset, env.Received)
		} else {
			t.add(offset)
		}
		if err != nil {
			l.logger.Error("parked record is not a CloudEvent this broker wrote: skipped", zap.String("park_topic", pt.topic), zap.Int64("offset", offset), zap.Error(err))
			t.done(offset)
			<-window
			bytes.give(size)
			continue
		}
		// A paused trigger's copies stay in its park topic, not in memory; the one read (it
		// dates the trigger's lag) waits here until the trigger takes copies again.
		for c.h.Holds(pt.ref) && router.Sleep(c.stopReading, 100*time.Millisecond) {
		}
		if c.stopReading.Err() != nil {
			<-window // not handed out: not final, read again by the next reader
			bytes.give(size)
			break
		}
		restoreOffset(env, msg)
		env.ReadBytes = size
		c.h.HandleParked(c.ctx, pt.ref, env, func() { t.done(offset); <-window; bytes.give(size); pt.settle() })
	}
	go func() {
		for range pc.Messages() { // read ahead, not handed out: the next reader reads them again
		}
	}()
	pc.AsyncClose()
	deadline := time.Now().Add(claimDrainTimeout)
	for len(window) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	close(stopCommits)
	commits.Wait()
	if next, ok := t.committable(); ok {
		pom.MarkOffset(next, "")
	}
	l.closeOffsets(om, pom, pt.topic)
}

// closeOffsets commits what was marked on topic and lets go of the offset managers, within
// commitTimeout. (Offsets are committed by hand here: closing does not commit what was marked.)
func (l *Log) closeOffsets(om sarama.OffsetManager, pom sarama.PartitionOffsetManager, topic string) {
	if om == nil {
		return
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		om.Commit()
		if pom != nil {
			pom.AsyncClose()
		}
		_ = om.Close()
	}()
	select {
	case <-closed:
	case <-time.After(commitTimeout):
		l.logger.Warn("a trigger's last position not confirmed: kafka does not answer; its copies after the last committed offset will be delivered again",
			zap.String("topic", topic))
	}
}

// restoreOffset gives a parked copy back the partition offset it had in the broker's topic.
func restoreOffset(env *router.Envelope, msg *sarama.ConsumerMessage) {
	for _, h := range msg.Headers {
		if string(h.Key) != offsetHeader {
			continue
		}
		if n, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
			env.Offset = n
			env.Event.SetExtension("knativekafkaoffset", string(h.Value))
		}
	}
}

// parkProducerWithin returns the producer of park topics (it places each record in the partition
// it names), connecting it when needed, giving up when ctx ends.
func (l *Log) parkProducerWithin(ctx context.Context) (sarama.SyncProducer, error) {
	l.mu.Lock()
	p := l.parkProducer
	l.mu.Unlock()
	if p != nil {
		return p, nil
	}
	ch := make(chan error, 1)
	go func() {
		l.connectMu.Lock()
		defer l.connectMu.Unlock()
		l.mu.Lock()
		have := l.parkProducer != nil
		l.mu.Unlock()
		if have {
			ch <- nil
			return
		}
		sc, err := l.saramaConfig()
		if err != nil {
			ch <- err
			return
		}
		sc.Producer.Partitioner = sarama.NewManualPartitioner
		sc.Producer.MaxMessageBytes = l.maxRecordSize()
		np, err := sarama.NewSyncProducer(l.cfg.Brokers, sc)
		if err != nil {
			ch <- err
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		select {
		case <-l.closing:
			go np.Close()
			ch <- router.ErrUnavailable
			return
		default:
		}
		l.parkProducer = np
		ch <- nil
	}()
	select {
	case err := <-ch:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.parkProducer, nil
}

// maxRecordSize is the largest record the broker's topic takes, once known.
func (l *Log) maxRecordSize() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxRecord > 0 {
		return l.maxRecord
	}
	return defaultMaxRecord
}

var _ router.ParkingLog = (*Log)(nil)
