package kafkaclient

import (
	"testing"
	"time"

	"github.com/IBM/sarama"
)

func TestStickyPartitioner(t *testing.T) {
	const partitions = 10
	p := NewStickyPartitioner("t")
	hash := sarama.NewHashPartitioner("t")

	// A key goes where sarama's hash partitioner puts it, whatever the sticky partition is.
	for _, key := range []string{"a", "b", "order-17", "z"} {
		msg := &sarama.ProducerMessage{Key: sarama.StringEncoder(key)}
		want, _ := hash.Partition(msg, partitions)
		got, err := p.Partition(msg, partitions)
		if err != nil || got != want {
			t.Fatalf("key %q: partition %d (%v), the hash partitioner's is %d", key, got, err, want)
		}
	}
	if !p.(sarama.DynamicConsistencyPartitioner).MessageRequiresConsistency(&sarama.ProducerMessage{Key: sarama.StringEncoder("k")}) {
		t.Fatal("a keyed record must keep its partition")
	}
	if p.(sarama.DynamicConsistencyPartitioner).MessageRequiresConsistency(&sarama.ProducerMessage{}) {
		t.Fatal("a keyless record may go to any writable partition")
	}

	// Keyless records made together share a partition: 100 of them within microseconds move on at
	// most once or twice (a preempted test may cross a stickFor boundary), never record by record.
	prev, _ := p.Partition(&sarama.ProducerMessage{}, partitions)
	moves := 0
	for range 100 {
		if got, _ := p.Partition(&sarama.ProducerMessage{}, partitions); got != prev {
			moves++
			prev = got
		}
	}
	if moves > 2 {
		t.Fatalf("100 keyless records made together moved partition %d times", moves)
	}

	// Over time they reach every partition, in turn.
	seen := map[int32]bool{}
	deadline := time.Now().Add(20 * stickFor * partitions)
	for len(seen) < partitions && time.Now().Before(deadline) {
		got, _ := p.Partition(&sarama.ProducerMessage{}, partitions)
		if got < 0 || got >= partitions {
			t.Fatalf("partition %d of %d", got, partitions)
		}
		seen[got] = true
		time.Sleep(stickFor / 5)
	}
	if len(seen) != partitions {
		t.Fatalf("keyless records reached %d of %d partitions", len(seen), partitions)
	}

	// Fewer writable partitions than the sticky one's index: it picks again within range.
	for range 50 {
		if got, _ := p.Partition(&sarama.ProducerMessage{}, 1); got != 0 {
			t.Fatalf("one writable partition, chose %d", got)
		}
	}
}
