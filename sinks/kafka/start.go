package kafka

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// Where a trigger new to the broker's topic starts (switchyard.dev/start-from, docs/kafka.md).
//
// The shared read hands a trigger every record read after the trigger appeared: that is "latest".
// A trigger whose start-from reaches back (earliest, or a time) must first get the records of the
// partition from there up to the one where it appeared, J, and only then the rest, in order. So
// from J on its copies are parked (park.go), and its park reader first reads the broker's own
// topic from the start point up to J, delivering what matches the trigger's filter
// (ParkedHandler.HandleEarlier), then reads its park topic as usual.
//
// "New" must survive restarts and reloads: a trigger's position is never moved by a later change
// of its annotation. Each trigger's group {group}.{ns}.{name} (whose commits on the park topic are
// its park position) also commits on the broker's topic, per partition: "done" once the trigger
// is known there, or its progress through the earlier records with "until J". No commit there
// means the trigger is new on that partition.

// Metadata of a trigger's commit on the broker's topic.
const (
	startDone  = "switchyard start-from: done"
	startUntil = "switchyard start-from: until "
)

// startKey is one trigger on one partition.
type startKey struct {
	t router.TriggerRef
	p int32
}

// earlier is a trigger's reading of the records from before it appeared on a partition.
type earlier struct {
	from router.StartFrom
	// until is J: the first offset the trigger got from the shared read (parked).
	until int64
}

// beginNew finds the triggers new to this claim since it last looked, next being the offset the
// claim hands out next: the first each of them can get from the shared read. It runs on the
// claim's reading goroutine, before the record at next is handled, so no record slips between
// where a trigger's earlier records end and where its shared ones begin.
func (c *claimParking) beginNew(next int64) {
	v, starts := c.h.Starts()
	if v == c.version {
		return
	}
	c.version = v
	var record []router.TriggerRef // starting at latest, or known already: recorded (again)
	for _, s := range starts {
		key := startKey{s.Trigger, c.partition}
		if c.begun[key] {
			continue
		}
		c.begun[key] = true
		if s.From.Latest() || c.l.knownStart(key) {
			record = append(record, s.Trigger)
			continue
		}
		c.mu.Lock()
		existing := c.triggers[s.Trigger] != nil
		c.mu.Unlock()
		if existing { // it has a parked backlog here: it was known before this claim
			record = append(record, s.Trigger)
			continue
		}
		// Parked from next on until its park reader has looked up its position (and read its
		// earlier records, if it is new): nothing of the shared read may overtake those.
		pt := c.newTrigger(s.Trigger, &earlier{from: s.From, until: next})
		pt.mu.Lock()
		if !pt.parked {
			pt.parked = true
			c.parkedNow.Add(1)
		}
		pt.mu.Unlock()
	}
	if len(record) > 0 {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.recordKnown(record, next)
		}()
	}
}

// refreshKnown commits every known trigger's position on this partition again once a day: Kafka
// forgets a group's offsets offsets.retention.minutes (7 days by default) after their last commit,
// and a trigger whose position is forgotten would be new again.
func (c *claimParking) refreshKnown() {
	defer c.wg.Done()
	tick := time.NewTicker(24 * time.Hour)
	defer tick.Stop()
	for {
		select {
		case <-c.stopWriting.Done():
			return
		case <-tick.C:
		}
		_, starts := c.h.Starts()
		var refs []router.TriggerRef
		for _, s := range starts {
			if c.l.knownStart(startKey{s.Trigger, c.partition}) {
				refs = append(refs, s.Trigger)
			}
		}
		c.recordKnown(refs, c.next.Load())
	}
}

// knownStart reports whether key's trigger is known to have its position on that partition.
func (l *Log) knownStart(key startKey) bool {
	_, ok := l.known.Load(key)
	return ok
}

// recordKnown commits each trigger's position on this partition: next for one that has none (it
// starts at latest, or its position was forgotten), the same again for one that has. A trigger in
// the middle of its earlier records is left to its park reader.
func (c *claimParking) recordKnown(refs []router.TriggerRef, next int64) {
	for _, ref := range refs {
		if c.stopWriting.Err() != nil {
			return
		}
		om, err := sarama.NewOffsetManagerFromClient(c.l.parkGroup(ref), c.client)
		if err != nil {
			c.l.logger.Warn("trigger's start not recorded; tried again at the next claim", zap.String("trigger", ref.String()), zap.Error(err))
			continue
		}
		pom, err := om.ManagePartition(c.l.cfg.Topic, c.partition)
		if err == nil {
			switch off, meta := pom.NextOffset(); {
			case off < 0:
				setOffset(pom, next, startDone)
			case !strings.HasPrefix(meta, startUntil):
				setOffset(pom, off, meta)
			}
			c.l.known.Store(startKey{ref, c.partition}, true)
		}
		c.l.closeOffsets(om, pom, c.l.cfg.Topic) // commits
	}
}

// setOffset marks offset with metadata to be committed, whether it is past, at or before the
// one marked last (sarama's MarkOffset only moves forward, ResetOffset only back).
func setOffset(pom sarama.PartitionOffsetManager, offset int64, metadata string) {
	pom.MarkOffset(offset, metadata)
	pom.ResetOffset(offset, metadata)
}

// readEarlier looks up the trigger's position on the broker's topic and, when it is new there,
// delivers the records from its start-from up to where it appeared, committing its progress so a
// crash resumes it. It reports false when the claim stopped first.
func (pt *parkedTrigger) readEarlier(om sarama.OffsetManager, e *earlier) bool {
	c := pt.c
	l := c.l
	key := startKey{pt.ref, c.partition}
	var pom sarama.PartitionOffsetManager
	for {
		var err error
		if pom, err = om.ManagePartition(l.cfg.Topic, c.partition); err == nil {
			break
		}
		l.logger.Warn("trigger's position not read yet; retrying", zap.String("trigger", pt.ref.String()), zap.Error(err))
		if !router.Sleep(c.stopReading, time.Second) {
			return false
		}
	}
	defer pom.AsyncClose()
	off, meta := pom.NextOffset()
	var from, until int64
	switch {
	case off >= 0 && strings.HasPrefix(meta, startUntil): // a reading a crash or a rebalance cut
		u, err := strconv.ParseInt(strings.TrimPrefix(meta, startUntil), 10, 64)
		if err != nil {
			u = off
		}
		from, until = off, u
	case off >= 0: // known here: its position stays where it is
		setOffset(pom, off, meta) // and is remembered afresh (refreshKnown)
		om.Commit()
		l.known.Store(key, true)
		pt.finishEarlier()
		return true
	default: // new here
		until = e.until
		var err error
		for {
			from, err = pt.startOffset(e.from, until)
			if err == nil {
				break
			}
			l.logger.Warn("trigger's start offset not found yet; retrying", zap.String("trigger", pt.ref.String()), zap.Error(err))
			if !router.Sleep(c.stopReading, time.Second) {
				return false
			}
		}
		if from < until {
			setOffset(pom, from, startUntil+strconv.FormatInt(until, 10))
		} else {
			setOffset(pom, until, startDone)
		}
		om.Commit()
	}
	if from < until {
		l.logger.Info("new trigger reads the partition's earlier records first", zap.String("trigger", pt.ref.String()),
			zap.Int32("partition", c.partition), zap.Int64("from", from), zap.Int64("until", until))
		pt.mu.Lock()
		pt.earlierNext, pt.earlierUntil = from, until
		pt.mu.Unlock()
		if !pt.deliverEarlier(om, pom, from, until) {
			return false
		}
		setOffset(pom, until, startDone)
		om.Commit()
	}
	l.known.Store(key, true)
	pt.finishEarlier()
	return true
}

// startOffset is the partition's first offset at or after start, no later than until.
func (pt *parkedTrigger) startOffset(start router.StartFrom, until int64) (int64, error) {
	c := pt.c
	topic := c.l.cfg.Topic
	if start.Earliest {
		return c.client.GetOffset(topic, c.partition, sarama.OffsetOldest)
	}
	off, err := c.client.GetOffset(topic, c.partition, start.At.UnixMilli())
	if err != nil {
		return 0, err
	}
	if off < 0 || off > until { // nothing stored at or after the time yet
		return until, nil
	}
	return off, nil
}

// finishEarlier lets the trigger's park topic be read, and its copies come back to the shared read
// once those are final too.
func (pt *parkedTrigger) finishEarlier() {
	pt.mu.Lock()
	pt.earlier = nil
	pt.earlierNext, pt.earlierUntil = 0, 0
	pt.mu.Unlock()
	pt.settle()
}

// deliverEarlier hands the broker topic's records [from, until) to the trigger (those its filter
// matches), at most parkReadWindow not final, committing its progress every second. It returns
// once all are final, or false when the claim stopped first (the progress is committed then). A
// read that fails is tried again from the progress made: the trigger's park topic waits for it.
func (pt *parkedTrigger) deliverEarlier(om sarama.OffsetManager, pom sarama.PartitionOffsetManager, from, until int64) bool {
	c := pt.c
	l := c.l
	for {
		consumer, err := sarama.NewConsumerFromClient(c.client)
		if err == nil {
			var pc sarama.PartitionConsumer
			pc, err = consumer.ConsumePartition(l.cfg.Topic, c.partition, from)
			if err == sarama.ErrOffsetOutOfRange {
				l.logger.Error("a new trigger's earlier records were deleted by the topic's retention: it starts at the oldest kept",
					zap.String("trigger", pt.ref.String()), zap.Int64("from", from))
				pc, err = consumer.ConsumePartition(l.cfg.Topic, c.partition, sarama.OffsetOldest)
			}
			if err == nil {
				done := pt.handEarlier(om, pom, pc, until)
				consumer.Close()
				if done {
					return true
				}
				if c.stopReading.Err() != nil {
					return false
				}
				err = errors.New("the partition's read ended early")
			} else {
				consumer.Close()
			}
		}
		l.logger.Warn("a new trigger's earlier records not read yet; retrying", zap.String("trigger", pt.ref.String()), zap.Error(err))
		if !router.Sleep(c.stopReading, time.Second) {
			return false
		}
		if next, _ := pom.NextOffset(); next > from {
			from = next // what was final is not read again
		}
	}
}

func (pt *parkedTrigger) handEarlier(om sarama.OffsetManager, pom sarama.PartitionOffsetManager, pc sarama.PartitionConsumer, until int64) bool {
	c := pt.c
	l := c.l
	meta := startUntil + strconv.FormatInt(until, 10)
	t := newTracker()
	window := make(chan struct{}, parkReadWindow)
	bytes := newByteWindow(max(1<<20, l.cfg.WindowBytes/8))
	var mu sync.Mutex
	commit := func() {
		mu.Lock()
		defer mu.Unlock()
		if next, ok := t.committable(); ok {
			pom.MarkOffset(next, meta)
			om.Commit()
			pt.mu.Lock()
			pt.earlierNext = next
			pt.mu.Unlock()
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	complete := false // every record before until handed out
	for !complete {
		var msg *sarama.ConsumerMessage
		select {
		case msg = <-pc.Messages():
		case <-tick.C:
			commit()
			continue
		case <-c.stopReading.Done():
		}
		if msg == nil {
			break
		}
		if msg.Offset >= until { // past a gap in the offsets: nothing more before until
			complete = true
			break
		}
		complete = msg.Offset >= until-1
		size := recordBytes(msg)
		select {
		case window <- struct{}{}:
		case <-c.stopReading.Done():
		}
		if c.stopReading.Err() != nil {
			complete = false
			break
		}
		if !bytes.take(c.stopReading, size) {
			<-window
			complete = false
			break
		}
		offset := msg.Offset
		t.add(offset)
		env, err := decodeRecord(msg)
		if err != nil {
			l.logger.Error("record is not a CloudEvent this broker wrote: skipped", zap.Int32("partition", msg.Partition), zap.Int64("offset", offset), zap.Error(err))
			t.done(offset)
			<-window
			bytes.give(size)
			continue
		}
		env.ReadBytes = size
		c.h.HandleEarlier(c.ctx, pt.ref, env, func() { t.done(offset); <-window; bytes.give(size) })
	}
	go func() {
		for range pc.Messages() { // read ahead, not handed out
		}
	}()
	pc.AsyncClose()
	// What was handed out gets its time to be final; what was not is read again next time.
	for deadline := time.Now().Add(claimDrainTimeout); len(window) > 0; time.Sleep(20 * time.Millisecond) {
		if c.stopReading.Err() != nil && time.Now().After(deadline) {
			break
		}
	}
	commit()
	return complete && len(window) == 0
}
