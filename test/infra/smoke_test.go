package infra_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/gocql/gocql"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestKafkaRoundTrip proves the harness's Kafka: a record produced with acks=all to a fresh topic comes
// back through a consumer group.
func TestKafkaRoundTrip(t *testing.T) {
	addr := testenv.Kafka(t)
	topic := fmt.Sprintf("smoke-%d", time.Now().UnixNano())

	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest

	admin, err := sarama.NewClusterAdmin([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("admin: %v", err)
	}
	defer admin.Close()
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("create topic: %v", err)
	}

	producer, err := sarama.NewSyncProducer([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	defer producer.Close()
	want := map[string]bool{"a": true, "b": true, "c": true}
	for v := range want {
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(v), Value: sarama.StringEncoder(v)}); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}

	group, err := sarama.NewConsumerGroup([]string{addr}, "smoke-"+topic, cfg)
	if err != nil {
		t.Fatalf("consumer group: %v", err)
	}
	defer group.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	h := &collect{want: len(want), got: map[string]bool{}, done: cancel}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{topic}, h); err != nil && ctx.Err() == nil {
			t.Fatalf("consume: %v", err)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for v := range want {
		if !h.got[v] {
			t.Errorf("record %q not consumed; got %v", v, h.got)
		}
	}
}

type collect struct {
	mu   sync.Mutex
	want int
	got  map[string]bool
	done context.CancelFunc
}

func (c *collect) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (c *collect) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (c *collect) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		s.MarkMessage(m, "")
		c.mu.Lock()
		c.got[string(m.Value)] = true
		if len(c.got) == c.want {
			c.done()
		}
		c.mu.Unlock()
	}
	return nil
}

// TestCassandraRoundTrip proves the harness's Cassandra: protocol v4, a keyspace, a table, a row.
func TestCassandraRoundTrip(t *testing.T) {
	cluster := gocql.NewCluster(testenv.Cassandra(t))
	cluster.ProtoVersion = 4
	cluster.Timeout = 20 * time.Second
	session, err := cluster.CreateSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer session.Close()
	ks := fmt.Sprintf("smoke_%d", time.Now().UnixNano())
	for _, q := range []string{
		"CREATE KEYSPACE " + ks + " WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
		"CREATE TABLE " + ks + ".kv (k text PRIMARY KEY, v int)",
		"INSERT INTO " + ks + ".kv (k, v) VALUES ('answer', 42)",
	} {
		if err := session.Query(q).Exec(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	defer session.Query("DROP KEYSPACE " + ks).Exec()
	var v int
	if err := session.Query("SELECT v FROM "+ks+".kv WHERE k = ?", "answer").Scan(&v); err != nil {
		t.Fatalf("select: %v", err)
	}
	if v != 42 {
		t.Fatalf("read back %d, want 42", v)
	}
}
