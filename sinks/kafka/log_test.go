package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/brokerlogtest"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestContract runs the BrokerLog contract every log keeps, against the real Kafka: each case on a
// topic of its own.
func TestContract(t *testing.T) {
	brokers := testenv.Kafka(t)
	brokerlogtest.Run(t, func(t *testing.T) router.BrokerLog {
		topic := fmt.Sprintf("contract-%d", time.Now().UnixNano())
		return New(Config{Brokers: []string{brokers}, Topic: topic, Group: topic, Partitions: 3, Logger: zaptest.NewLogger(t)})
	},
		// sarama's metrics registry runs one ticker for the whole process.
		goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
	)
}

// TestEventLargerThanTheTopicTakes (issue #18, item 5): an event larger than the topic's
// max.message.bytes made the producer fail with a ConfigurationError, answered 503, which clients
// retry for ever. The log reads the topic's limit and answers router.ErrTooLarge (413).
func TestEventLargerThanTheTopicTakes(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := fmt.Sprintf("max-record-%d", time.Now().UnixNano())
	sc := sarama.NewConfig()
	admin, err := sarama.NewClusterAdmin([]string{brokers}, sc)
	if err != nil {
		t.Fatal(err)
	}
	limit := "65536"
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false)
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}
	log := New(Config{Brokers: []string{brokers}, Topic: topic, Group: topic, Logger: zaptest.NewLogger(t)})
	defer log.Close()
	env := func(size int) *router.Envelope {
		e := event.New()
		e.SetID(fmt.Sprint("size-", size))
		e.SetSource("/s")
		e.SetType("t")
		e.DataEncoded = make([]byte, size)
		return &router.Envelope{Event: &e, TTL: 10}
	}
	if err := log.Append(context.Background(), []*router.Envelope{env(1000)}); err != nil {
		t.Fatalf("a small event: %v", err)
	}
	err = log.Append(context.Background(), []*router.Envelope{env(100_000)})
	if !errors.Is(err, router.ErrTooLarge) || router.HTTPStatus(err) != 413 || !strings.Contains(err.Error(), "65536") {
		t.Errorf("an event over the topic's max.message.bytes: %v (status %d), want ErrTooLarge naming the limit", err, router.HTTPStatus(err))
	}
}

// A park topic is created like its broker's topic: the same record size and retention, so a
// parked backlog is kept as long as the broker's topic keeps its events.
func TestParkTopicIsLikeTheBrokers(t *testing.T) {
	brokers := testenv.Kafka(t)
	topic := fmt.Sprintf("park-like-%d", time.Now().UnixNano())
	admin, err := sarama.NewClusterAdmin([]string{brokers}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	limit, retention := "65536", "3600000"
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1,
		ConfigEntries: map[string]*string{"max.message.bytes": &limit, "retention.ms": &retention}}, false); err != nil {
		t.Fatal(err)
	}
	log := New(Config{Brokers: []string{brokers}, Topic: topic, Group: topic, Logger: zaptest.NewLogger(t)})
	defer log.Close()
	park := parkTopic(topic, router.TriggerRef{Namespace: "ns", Name: "t"})
	maxRecord, err := log.createTopic(park, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, topic)
	if err != nil || maxRecord != 65536 {
		t.Fatalf("createTopic: %d, %v; want 65536", maxRecord, err)
	}
	res, err := admin.DescribeConfigs([]*sarama.ConfigResource{{Type: sarama.TopicResource, Name: park, ConfigNames: []string{"max.message.bytes", "retention.ms"}}}, sarama.DescribeConfigsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range res {
		for _, e := range r.Configs {
			got[e.Name] = e.Value
		}
	}
	if got["max.message.bytes"] != limit || got["retention.ms"] != retention {
		t.Errorf("park topic's configuration %v, want the broker topic's max.message.bytes %s and retention.ms %s", got, limit, retention)
	}
}
