package kafka

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/IBM/sarama"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
)

// A Kafka-class broker's topic is its archive (docs/archive.md): ReadArchive finds, in each
// partition, the first record of the range with offsets-for-times, and reads on to the first
// record past it or to the end of the partition as it was when the read began. A Checkpoint is
// the next offset of each partition read so far.

// archiveIdle is how long a partition may give nothing, below the end it had when the read began,
// before the read fails (and the replay with it, saying so): a broker that does not answer must
// not make a replay end "done" with records unread.
const archiveIdle = 2 * time.Second

// ReadArchive reads the events the broker accepted with record timestamps in [q.From, q.To),
// partition after partition, each in offset order. Redrives written to the topic are not
// accepted events and are passed over.
func (l *Log) ReadArchive(ctx context.Context, q router.ArchiveQuery, fn func(router.ArchivedEvent) error) error {
	next := map[int32]int64{}
	if q.After != "" {
		if err := json.Unmarshal([]byte(q.After), &next); err != nil {
			return fmt.Errorf("checkpoint %q is not one of a Kafka archive's: %w", q.After, err)
		}
	}
	sc, err := l.saramaConfig()
	if err != nil {
		return err
	}
	client, err := sarama.NewClient(l.cfg.Brokers, sc)
	if err != nil {
		return fmt.Errorf("%w: connecting to kafka: %v", router.ErrUnavailable, err)
	}
	defer client.Close()
	partitions, err := client.Partitions(l.cfg.Topic)
	if err != nil {
		return fmt.Errorf("%w: the partitions of %s: %v", router.ErrUnavailable, l.cfg.Topic, err)
	}
	sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return err
	}
	defer consumer.Close()
	for _, p := range partitions {
		end, err := client.GetOffset(l.cfg.Topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("%w: the end of %s/%d: %v", router.ErrUnavailable, l.cfg.Topic, p, err)
		}
		start, seen := next[p]
		if !seen {
			// offsets-for-times: the first offset whose record timestamp is at or after From.
			if start, err = client.GetOffset(l.cfg.Topic, p, q.From.UnixMilli()); err != nil {
				return fmt.Errorf("%w: offsets-for-times in %s/%d: %v", router.ErrUnavailable, l.cfg.Topic, p, err)
			}
		}
		if start < 0 || start >= end {
			continue // nothing at or after From in this partition
		}
		if err := l.readPartition(ctx, consumer, p, start, end, q, next, fn); err != nil {
			return err
		}
	}
	return nil
}

func (l *Log) readPartition(ctx context.Context, consumer sarama.Consumer, p int32, start, end int64, q router.ArchiveQuery, next map[int32]int64, fn func(router.ArchivedEvent) error) error {
	pc, err := consumer.ConsumePartition(l.cfg.Topic, p, start)
	if err != nil {
		return fmt.Errorf("%w: reading %s/%d from %d: %v", router.ErrUnavailable, l.cfg.Topic, p, start, err)
	}
	defer pc.Close()
	idle := time.NewTimer(archiveIdle)
	defer idle.Stop()
	for {
		var msg *sarama.ConsumerMessage
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-idle.C:
			// Below the end it had when the read began, the partition should still have records:
			// a read that ends here would leave them unread and call the range done.
			return fmt.Errorf("%w: %s/%d gave nothing for %s at offset %d, below its end %d", router.ErrUnavailable, l.cfg.Topic, p, archiveIdle, next[p], end)
		case err := <-pc.Errors():
			return fmt.Errorf("%w: reading %s/%d: %v", router.ErrUnavailable, l.cfg.Topic, p, err)
		case msg = <-pc.Messages():
		}
		idle.Reset(archiveIdle)
		if !msg.Timestamp.Before(q.To) {
			return nil
		}
		next[p] = msg.Offset + 1
		env, err := decodeRecord(msg)
		switch {
		case err != nil:
			l.logger.Warn("record of the topic not replayed: it is not an event", zap.Int32("partition", p), zap.Int64("offset", msg.Offset), zap.Error(err))
		case env.Redrive == nil:
			place, _ := json.Marshal(next)
			if err := fn(router.ArchivedEvent{Event: env.Event, Received: env.Received, At: router.Checkpoint(place)}); err != nil {
				return err
			}
		}
		if msg.Offset+1 >= end {
			return nil
		}
	}
}
