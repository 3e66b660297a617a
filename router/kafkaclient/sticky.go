package kafkaclient

import (
	"math/rand/v2"
	"time"

	"github.com/IBM/sarama"
)

// stickFor is how long keyless records keep going to one partition: about one produce round trip
// with acks=all on a local disk, so that the records of concurrent requests reach Kafka as one batch
// in one partition rather than a one-record batch in each, and short enough that a second spreads
// over every partition. 5 ms cut Kafka's CPU as much but held a partition's burst long enough to
// show in the tail (an 81 ms p99 at half rate with 64 connections in one of two runs; 2 ms: 11-14).
const stickFor = 2 * time.Millisecond

// NewStickyPartitioner is Kafka's own producer's default since KIP-480, made for sarama: a record
// with a key goes where sarama's hash partitioner puts it (so a key keeps its partition, and its
// order, across this change), and keyless records stick to one partition for stickFor, then move
// to the next. sarama's default sends each keyless record to a random partition, so a produce
// request under load carried ten one-record batches; Kafka spends its CPU per batch, not per
// byte, and spent 170 µs per event so (docs/performance.md).
func NewStickyPartitioner(topic string) sarama.Partitioner {
	return &stickyPartitioner{hash: sarama.NewHashPartitioner(topic), current: -1}
}

// stickyPartitioner holds no lock: sarama partitions a topic's records in one goroutine (its
// topicProducer), and builds a partitioner per topic.
type stickyPartitioner struct {
	hash    sarama.Partitioner
	current int32
	until   time.Time
}

func (p *stickyPartitioner) Partition(msg *sarama.ProducerMessage, partitions int32) (int32, error) {
	if msg.Key != nil {
		return p.hash.Partition(msg, partitions)
	}
	now := time.Now()
	if p.current < 0 || p.current >= partitions {
		p.current = rand.Int32N(partitions)
		p.until = now.Add(stickFor)
	} else if now.After(p.until) {
		p.current = (p.current + 1) % partitions
		p.until = now.Add(stickFor)
	}
	return p.current, nil
}

// RequiresConsistency and MessageRequiresConsistency are the hash partitioner's answers: a key
// must always find its partition (sarama waits for one without a leader rather than choose
// another), and a keyless record may go to any partition that has a leader.
func (p *stickyPartitioner) RequiresConsistency() bool { return true }

func (p *stickyPartitioner) MessageRequiresConsistency(msg *sarama.ProducerMessage) bool {
	return msg.Key != nil
}
