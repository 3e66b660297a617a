package e2e

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// knativeKafkaSink is Knative's docs' KafkaSink example as written there.
const knativeKafkaSink = "../../router/config/testdata/knative-kafka-sink.yaml"

// kafkaRecord is a record of a topic as sdk-go's Kafka binding reads it.
type kafkaRecord struct {
	msg   *sarama.ConsumerMessage
	event *event.Event
}

func (r kafkaRecord) header(key string) string {
	for _, h := range r.msg.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// readTopicUntil reads every partition of topic from the start until found has what it needs or
// the timeout passes, and returns the records holding an event with one of the ids.
func readTopicUntil(t *testing.T, kafka, topic string, timeout time.Duration, ids ...string) map[string]kafkaRecord {
	t.Helper()
	c, err := sarama.NewConsumer([]string{kafka}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	parts, err := c.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *sarama.ConsumerMessage, 64)
	for _, p := range parts {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			for m := range pc.Messages() {
				msgs <- m
			}
		}()
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	found := map[string]kafkaRecord{}
	deadline := time.After(timeout)
	for len(found) < len(ids) {
		select {
		case m := <-msgs:
			e, err := binding.ToEvent(context.Background(), kafka_sarama.NewMessageFromConsumerMessage(m))
			if err != nil {
				t.Fatalf("a record of %s is not a CloudEvent to sdk-go: %v", topic, err)
			}
			if want[e.ID()] {
				found[e.ID()] = kafkaRecord{msg: m, event: e}
			}
		case <-deadline:
			t.Fatalf("topic %s: found %d of the events %v", topic, len(found), ids)
		}
	}
	return found
}

// createTopic creates topic unless it exists: Knative's KafkaSink without numPartitions and
// replicationFactor writes to a topic someone else made.
func createTopic(t *testing.T, kafka, topic string) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin([]string{kafka}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	err = admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1}, false)
	var te *sarama.TopicError
	if err != nil && !(errors.As(err, &te) && te.Err == sarama.ErrTopicAlreadyExists) {
		t.Fatal(err)
	}
}

// TestKafkaSinkKnativeExample (issue #31, item 4): Knative's docs' KafkaSink, as written there,
// validates; pointed at the real Kafka, it is a trigger's subscriber (binary mode, as the docs'
// default), and a second KafkaSink (structured) is another trigger's dead-letter sink. CloudEvents
// go into the broker; the records come out of the topics, read back with sdk-go.
func TestKafkaSinkKnativeExample(t *testing.T) {
	out, err := exec.Command(binary, "validate", knativeKafkaSink).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "1 KafkaSink(s) served; 0 object(s) left alone") {
		t.Fatalf("validate %s: %v\n%s", knativeKafkaSink, err, out)
	}

	kafka := testenv.Kafka(t)
	example, err := os.ReadFile(knativeKafkaSink)
	if err != nil {
		t.Fatal(err)
	}
	// The example's topic as written; only its cluster is this test's.
	sinkDoc := strings.Replace(string(example), "my-cluster-kafka-bootstrap.kafka:9092", kafka, 1)
	if sinkDoc == string(example) {
		t.Fatal("the example no longer names my-cluster-kafka-bootstrap.kafka:9092")
	}
	createTopic(t, kafka, "mytopic")
	dlTopic := fmt.Sprintf("e2e-kafka-sink-dls-%d", time.Now().UnixNano())
	failing := newSubscriber(t, func(n int, req received, w http.ResponseWriter) {
		http.Error(w, "inventory is down", http.StatusInternalServerError)
	})
	manifests := brokerYAML("default") + sinkDoc + "---\n" + fmt.Sprintf(`apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: parking-lot, namespace: default}
spec:
  topic: %s
  bootstrapServers: [%s]
  contentMode: structured
  numPartitions: 2
  replicationFactor: 1
---
`, dlTopic, kafka) +
		triggerYAML("to-topic", "  broker: default\n  filter:\n    attributes: {type: order.created}\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: my-kafka-sink}\n") +
		triggerYAML("to-inventory", "  broker: default\n  filter:\n    attributes: {type: order.created}\n  subscriber:\n    uri: "+failing.URL+"/\n"+
			"  delivery:\n    retry: 1\n    backoffDelay: PT0.1S\n    deadLetterSink:\n      ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: parking-lot}\n")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kafka-sink.yaml"), []byte(manifests), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "validate", filepath.Join(dir, "kafka-sink.yaml")).CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "2 KafkaSink(s) served") {
		t.Fatalf("validate the test's configuration: %v\n%s", err, out)
	}
	r := startRouter(t, manifests, "")

	id := fmt.Sprintf("order-%d", time.Now().UnixNano())
	req := binaryEvent(id, "order.created")
	req.Headers["Ce-Partitionkey"] = "customer-7"
	req.Body = `{"order":"o-1","qty":3}`
	if code, _, body := r.send(t, "/default/default", req); code != http.StatusAccepted {
		t.Fatalf("broker answered %d %s", code, body)
	}
	// Anyone may write to the sink's address directly.
	direct := binaryEvent(id+"-direct", "order.note")
	if code, _, body := r.send(t, "/sinks/kafka/default/my-kafka-sink", direct); code != http.StatusAccepted {
		t.Fatalf("the sink's address answered %d %s", code, body)
	}

	recs := readTopicUntil(t, kafka, "mytopic", 30*time.Second, id, id+"-direct")
	rec := recs[id]
	e := rec.event
	if e.Type() != "order.created" || e.Source() != "/e2e" || string(e.Data()) != `{"order":"o-1","qty":3}` || e.DataContentType() != "application/json" ||
		e.Extensions()["partitionkey"] != "customer-7" || e.Extensions()["knativearrivaltime"] == nil {
		t.Errorf("the trigger's record, as sdk-go reads it: %s", e)
	}
	if string(rec.msg.Key) != "customer-7" || rec.header("ce_id") != id || rec.header("ce_specversion") != "1.0" || rec.header("content-type") != "application/json" {
		t.Errorf("the record is not in the binary mode, keyed by partitionkey: key %q headers %v", rec.msg.Key, rec.msg.Headers)
	}
	if e := recs[id+"-direct"].event; e.Type() != "order.note" {
		t.Errorf("the direct record: %s", e)
	}

	// The failing subscriber's event, retried once, is dead-lettered into the structured sink with
	// Knative's error extensions.
	failing.waitFor(t, 2, 15*time.Second)
	dl := readTopicUntil(t, kafka, dlTopic, 30*time.Second, id)[id]
	if dl.header("content-type") != "application/cloudevents+json" || dl.header("ce_id") != "" || string(dl.msg.Key) != "customer-7" {
		t.Errorf("the dead-letter record is not in the structured mode: key %q headers %v value %s", dl.msg.Key, dl.msg.Headers, dl.msg.Value)
	}
	e = dl.event
	reason, _ := base64.StdEncoding.DecodeString(fmt.Sprint(e.Extensions()["knativeerrordata"]))
	if e.Type() != "order.created" || string(e.Data()) != `{"order":"o-1","qty":3}` || fmt.Sprint(e.Extensions()["knativeerrorcode"]) != "500" ||
		!strings.HasPrefix(fmt.Sprint(e.Extensions()["knativeerrordest"]), failing.URL) || !strings.Contains(string(reason), "inventory is down") {
		t.Errorf("the dead-lettered record, as sdk-go reads it: %s (error data %q)", e, reason)
	}
	waitFor(t, 10*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return metricValue(m, `switchyard_kafka_sink_records_total{namespace_name="default",result="written",sink_name="my-kafka-sink"}`) >= 2 &&
			metricValue(m, `switchyard_kafka_sink_records_total{namespace_name="default",result="written",sink_name="parking-lot"}`) >= 1
	})
	_, outcomes := r.get(t, "/v1/triggers/default/to-topic/outcomes")
	if !strings.Contains(outcomes, `"lastCode": 202`) {
		t.Errorf("the trigger's outcome: %s", outcomes)
	}
}

// TestKafkaSinkMistakes: a KafkaSink that cannot work is found by validate (file, line, field),
// and one whose topic is missing answers 503 naming the field, so the delivery retries.
func TestKafkaSinkMistakes(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sink.yaml")
	doc := `apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: orders, namespace: default}
spec:
  topic: orders!
  bootstrapServers: [kafka-0]
  contentMode: json
---
apiVersion: eventing.kafka.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: other, namespace: default}
spec: {topic: t, bootstrapServers: [kafka-0:9092]}
`
	if err := os.WriteFile(cfg, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "validate", cfg).CombinedOutput()
	for _, want := range []string{`sink.yaml:5: spec.topic: "orders!" is not a Kafka topic name`, `sink.yaml:6: spec.bootstrapServers[0]: "kafka-0" is not host:port`,
		`sink.yaml:7: spec.contentMode: must be binary or structured, got "json"`,
		"sink.yaml:9: apiVersion: eventing.kafka.knative.dev/v1alpha1 KafkaSink: Switchyard reads KafkaSink as eventing.knative.dev/v1alpha1"} {
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("validate: %v\n%s\nwant %q", err, out, want)
		}
	}

	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-kafka-sink-missing-%d", time.Now().UnixNano())
	r := startRouter(t, fmt.Sprintf("apiVersion: eventing.knative.dev/v1alpha1\nkind: KafkaSink\nmetadata: {name: orders, namespace: default}\nspec: {topic: %s, bootstrapServers: [%s]}\n---\n", topic, kafka), "")
	code, h, body := r.send(t, "/sinks/kafka/default/orders", binaryEvent("x", "t"))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(body, "spec.topic: topic "+topic+" does not exist") {
		t.Errorf("a missing topic: %d %v %s", code, h, body)
	}
	// Once someone makes the topic, the next event goes in.
	createTopic(t, kafka, topic)
	if code, _, body := r.send(t, "/sinks/kafka/default/orders", binaryEvent("y", "t")); code != http.StatusAccepted {
		t.Errorf("after the topic was made: %d %s", code, body)
	}
}

// TestKafkaSinkOutage: with its Kafka stopped, a KafkaSink answers 503 with Retry-After (never a
// 202 it cannot keep), so a trigger's delivery retries; once Kafka is back the sink writes again
// without a restart, and the event the trigger kept retrying is in the topic.
func TestKafkaSinkOutage(t *testing.T) {
	kafka := startPrivateKafka(t)
	topic := "e2e-sink-outage"
	r := startRouter(t, brokerYAML("default")+fmt.Sprintf(`apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: orders, namespace: default}
spec: {topic: %s, bootstrapServers: [%s], numPartitions: 1, replicationFactor: 1}
---
`, topic, kafka.Kafka)+triggerYAML("to-topic", "  broker: default\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: orders}\n"+
		"  delivery:\n    retry: 100\n    backoffPolicy: linear\n    backoffDelay: PT0.5S\n    backoffMax: PT1S\n"), "")
	if code, _, body := r.send(t, "/sinks/kafka/default/orders", binaryEvent("before", "t")); code != http.StatusAccepted {
		t.Fatalf("before the outage: %d %s", code, body)
	}

	kafka.infra("stop")
	start := time.Now()
	code, h, body := r.send(t, "/sinks/kafka/default/orders", binaryEvent("during", "t"))
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") != "1" || !strings.Contains(body, "topic "+topic) {
		t.Errorf("during the outage: %d %v %s, want 503 naming the topic", code, h, body)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("the 503 took %s", took)
	}
	// A trigger's event meanwhile: the sink's 503s make its delivery retry, not give up.
	if code, _, body := r.send(t, "/default/default", binaryEvent("retried", "t")); code != http.StatusAccepted {
		t.Fatalf("broker: %d %s", code, body)
	}
	waitFor(t, 30*time.Second, func() bool {
		_, m := r.get(t, "/metrics")
		return metricValue(m, `switchyard_kafka_sink_records_total{namespace_name="default",result="failed",sink_name="orders"}`) >= 2
	})

	kafka.infra("start")
	recs := readTopicUntil(t, kafka.Kafka, topic, 60*time.Second, "before", "retried")
	if recs["retried"].event.Type() != "t" {
		t.Errorf("the retried event's record: %s", recs["retried"].event)
	}
	if code, _, body := r.send(t, "/sinks/kafka/default/orders", binaryEvent("after", "t")); code != http.StatusAccepted {
		t.Errorf("after the outage: %d %s", code, body)
	}
}
