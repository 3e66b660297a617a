package kafka

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/test/testenv"
)

// sinkServer serves the given KafkaSinks (namespace default) on an httptest server, as the
// ingress does, until the test ends.
func sinkServer(t *testing.T, secretsDir string, cluster *Spec, specs map[string]*SinkSpec) string {
	t.Helper()
	sinks := NewSinks(zaptest.NewLogger(t), func() int64 { return 4 << 20 }, secretsDir, nil)
	var objs []*config.Object
	for name, s := range specs {
		objs = append(objs, &config.Object{Namespace: "default", Name: name, Spec: s, File: "sinks.yaml", Line: 1})
	}
	sinks.Apply(objs, cluster)
	srv := httptest.NewServer(sinks)
	t.Cleanup(func() { srv.Close(); sinks.Close() })
	return srv.URL
}

func post(t *testing.T, url string, h map[string]string, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readRecords reads the first n records of the topic's partition 0.
func readRecords(t *testing.T, brokers string, topic string, n int) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer([]string{brokers}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := c.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var out []*sarama.ConsumerMessage
	timeout := time.After(15 * time.Second)
	for len(out) < n {
		select {
		case m := <-pc.Messages():
			out = append(out, m)
		case <-timeout:
			t.Fatalf("read %d records of %s, want %d", len(out), topic, n)
		}
	}
	return out
}

// toEvent reads a record back with sdk-go's Kafka binding: the reader every consumer of the topic
// would use.
func toEvent(t *testing.T, m *sarama.ConsumerMessage) *event.Event {
	t.Helper()
	msg := kafka_sarama.NewMessageFromConsumerMessage(m)
	e, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		t.Fatalf("record %d is not a CloudEvent to sdk-go: %v", m.Offset, err)
	}
	return e
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func one[T any](v T) *T { return &v }

// TestKafkaSinkWritesRecords (issue #31, item 4), against the real Kafka: an event POSTed to a
// KafkaSink is answered 202 once acknowledged by every in-sync replica, and is in the topic as a
// CloudEvent in the sink's content mode, keyed by its partitionkey, read back with sdk-go.
func TestKafkaSinkWritesRecords(t *testing.T) {
	brokers := testenv.Kafka(t)
	stamp := time.Now().UnixNano()
	binTopic, strTopic := fmt.Sprintf("sink-binary-%d", stamp), fmt.Sprintf("sink-structured-%d", stamp)
	url := sinkServer(t, "", nil, map[string]*SinkSpec{
		"bin": {Topic: binTopic, BootstrapServers: []string{brokers}, ContentMode: ModeBinary, NumPartitions: one[int32](1), ReplicationFactor: one[int16](1)},
		"str": {Topic: strTopic, BootstrapServers: []string{brokers}, ContentMode: ModeStructured, NumPartitions: one[int32](1), ReplicationFactor: one[int16](1)},
	})
	binaryReq := map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "e-1", "Ce-Source": "/shop", "Ce-Type": "order.created",
		"Ce-Subject": "o-1", "Ce-Partitionkey": "customer-7", "Ce-Tenant": "acme", "Content-Type": "application/json"}
	for _, path := range []string{"/sinks/kafka/default/bin", "/sinks/kafka/default/str"} {
		if code, body := post(t, url+path, binaryReq, `{"order":"o-1"}`); code != http.StatusAccepted {
			t.Fatalf("%s answered %d %s, want 202", path, code, body)
		}
	}
	// A structured request and a batch are events like any other: the sink's mode decides the record's.
	structured := `{"specversion":"1.0","id":"e-2","source":"/shop","type":"order.paid","datacontenttype":"text/plain","data":"paid"}`
	if code, body := post(t, url+"/sinks/kafka/default/bin", map[string]string{"Content-Type": "application/cloudevents+json"}, structured); code != http.StatusAccepted {
		t.Fatalf("structured request: %d %s", code, body)
	}
	batch := `[{"specversion":"1.0","id":"e-3","source":"/shop","type":"t","data":{"n":3}},{"specversion":"1.0","id":"e-4","source":"/shop","type":"t","data_base64":"AAEC"}]`
	if code, body := post(t, url+"/sinks/kafka/default/str", map[string]string{"Content-Type": "application/cloudevents-batch+json"}, batch); code != http.StatusAccepted {
		t.Fatalf("batch: %d %s", code, body)
	}

	recs := readRecords(t, brokers, binTopic, 2)
	r := recs[0]
	if string(r.Key) != "customer-7" || header(r, "ce_id") != "e-1" || header(r, "ce_type") != "order.created" || header(r, "ce_tenant") != "acme" ||
		header(r, "content-type") != "application/json" || string(r.Value) != `{"order":"o-1"}` {
		t.Errorf("binary record: key %q headers %v value %q", r.Key, r.Headers, r.Value)
	}
	e := toEvent(t, r)
	if e.ID() != "e-1" || e.Source() != "/shop" || e.Type() != "order.created" || e.Subject() != "o-1" || e.Extensions()["tenant"] != "acme" ||
		e.Extensions()["partitionkey"] != "customer-7" || e.DataContentType() != "application/json" || string(e.Data()) != `{"order":"o-1"}` {
		t.Errorf("binary record as sdk-go reads it: %s", e)
	}
	if e := toEvent(t, recs[1]); recs[1].Key != nil || header(recs[1], "ce_id") != "e-2" || e.Type() != "order.paid" || string(e.Data()) != "paid" {
		t.Errorf("a structured request into a binary sink: key %q headers %v event %s", recs[1].Key, recs[1].Headers, e)
	}

	recs = readRecords(t, brokers, strTopic, 3)
	r = recs[0]
	if string(r.Key) != "customer-7" || header(r, "content-type") != "application/cloudevents+json" || header(r, "ce_id") != "" ||
		!bytes.Contains(r.Value, []byte(`"specversion":"1.0"`)) || !bytes.Contains(r.Value, []byte(`"data":{"order":"o-1"}`)) {
		t.Errorf("structured record: key %q headers %v value %s", r.Key, r.Headers, r.Value)
	}
	e = toEvent(t, r)
	if e.ID() != "e-1" || e.Subject() != "o-1" || e.Extensions()["tenant"] != "acme" || string(e.Data()) != `{"order":"o-1"}` {
		t.Errorf("structured record as sdk-go reads it: %s", e)
	}
	if e3, e4 := toEvent(t, recs[1]), toEvent(t, recs[2]); e3.ID() != "e-3" || string(e3.Data()) != `{"n":3}` || e4.ID() != "e-4" || !bytes.Equal(e4.Data(), []byte{0, 1, 2}) {
		t.Errorf("the batch's records: %s %s", e3, e4)
	}
}

// TestKafkaSinkAnswers: what the sink answers when it cannot write, each with a message to act on.
func TestKafkaSinkAnswers(t *testing.T) {
	brokers := testenv.Kafka(t)
	stamp := time.Now().UnixNano()
	small := fmt.Sprintf("sink-small-%d", stamp)
	admin, err := sarama.NewClusterAdmin([]string{brokers}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	limit := "65536"
	err = admin.CreateTopic(small, &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 1, ConfigEntries: map[string]*string{"max.message.bytes": &limit}}, false)
	admin.Close()
	if err != nil {
		t.Fatal(err)
	}
	url := sinkServer(t, "", &Spec{BootstrapServers: []string{brokers}}, map[string]*SinkSpec{
		// No bootstrapServers: spec.kafka's cluster; an existing topic needs no sizes.
		"small":   {Topic: small, ContentMode: ModeBinary},
		"missing": {Topic: fmt.Sprintf("sink-missing-%d", stamp), BootstrapServers: []string{brokers}, ContentMode: ModeBinary},
		"down":    {Topic: "t", BootstrapServers: []string{"127.0.0.1:1"}, ContentMode: ModeBinary},
	})
	ev := func(id string, data string) (map[string]string, string) {
		return map[string]string{"Ce-Specversion": "1.0", "Ce-Id": id, "Ce-Source": "/s", "Ce-Type": "t", "Content-Type": "text/plain"}, data
	}
	h, body := ev("fits", "small")
	if code, msg := post(t, url+"/sinks/kafka/default/small", h, body); code != http.StatusAccepted {
		t.Errorf("a record the topic takes: %d %s", code, msg)
	}
	h, body = ev("big", strings.Repeat("x", 100<<10))
	if code, msg := post(t, url+"/sinks/kafka/default/small", h, body); code != http.StatusRequestEntityTooLarge ||
		!strings.Contains(msg, "topic "+small+" takes at most 65536 (its max.message.bytes)") {
		t.Errorf("a record larger than the topic takes: %d %s, want 413 saying so", code, msg)
	}
	if code, msg := post(t, url+"/sinks/kafka/default/small", map[string]string{"Content-Type": "application/json"}, `{"no":"attributes"}`); code != http.StatusBadRequest ||
		!strings.HasPrefix(msg, "not a CloudEvent: ") {
		t.Errorf("not a CloudEvent: %d %s, want 400", code, msg)
	}
	h, body = ev("m", "x")
	if code, msg := post(t, url+"/sinks/kafka/default/missing", h, body); code != http.StatusServiceUnavailable ||
		!strings.Contains(msg, "sinks.yaml:1: spec.topic: topic sink-missing-") || !strings.Contains(msg, "create it, or set numPartitions and replicationFactor") {
		t.Errorf("a topic that does not exist: %d %s, want 503 naming the field", code, msg)
	}
	start := time.Now()
	if code, msg := post(t, url+"/sinks/kafka/default/down", h, body); code != http.StatusServiceUnavailable || !strings.Contains(msg, "127.0.0.1:1") {
		t.Errorf("no Kafka there: %d %s, want 503 naming it", code, msg)
	}
	if d := time.Since(start); d > sinkTimeout+time.Second {
		t.Errorf("the 503 took %s, more than the sink's %s", d, sinkTimeout)
	}
	if code, msg := post(t, url+"/sinks/kafka/default/nope", h, body); code != http.StatusNotFound || !strings.Contains(msg, "no KafkaSink default/nope") {
		t.Errorf("an unknown sink: %d %s", code, msg)
	}
	recs := readRecords(t, brokers, small, 1)
	if header(recs[0], "ce_id") != "fits" {
		t.Errorf("the topic holds %v", recs[0].Headers)
	}
}

// TestKafkaSinkOverSASLSSL: auth.secret names a Secret laid out as Knative's (protocol,
// sasl.mechanism, ca.crt, user, password), mounted under the secrets directory; the sink writes
// through the real Kafka's SASL_SSL listener with SCRAM-SHA-512.
func TestKafkaSinkOverSASLSSL(t *testing.T) {
	plain := testenv.Kafka(t)
	secure, caFile := testenv.KafkaSecure(t)
	ca, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	secrets := t.TempDir()
	if err := os.MkdirAll(filepath.Join(secrets, "kafka-auth"), 0o755); err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{"protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "ca.crt": string(ca),
		"user": testenv.KafkaUser, "password": testenv.KafkaPassword} {
		if err := os.WriteFile(filepath.Join(secrets, "kafka-auth", key), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	topic := fmt.Sprintf("sink-secure-%d", time.Now().UnixNano())
	spec := &SinkSpec{Topic: topic, BootstrapServers: []string{secure}, ContentMode: ModeBinary, NumPartitions: one[int32](1), ReplicationFactor: one[int16](1)}
	spec.Auth = &SinkAuth{}
	spec.Auth.Secret = &struct {
		Ref *struct {
			Name string `yaml:"name"`
		} `yaml:"ref"`
	}{}
	spec.Auth.Secret.Ref = &struct {
		Name string `yaml:"name"`
	}{Name: "kafka-auth"}
	url := sinkServer(t, secrets, nil, map[string]*SinkSpec{"secure": spec})
	code, msg := post(t, url+"/sinks/kafka/default/secure", map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "s-1", "Ce-Source": "/s", "Ce-Type": "t"}, "")
	if code != http.StatusAccepted {
		t.Fatalf("over SASL_SSL: %d %s", code, msg)
	}
	if e := toEvent(t, readRecords(t, plain, topic, 1)[0]); e.ID() != "s-1" {
		t.Errorf("record %s", e)
	}
}

// TestKafkaSinkReconfigured: a changed manifest reconnects the sink to what it says now, a removed
// one is 404, and stopping leaves no producer behind.
func TestKafkaSinkReconfigured(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreTopFunction("github.com/rcrowley/go-metrics.(*meterArbiter).tick"),
		goleak.IgnoreCurrent())
	brokers := testenv.Kafka(t)
	stamp := time.Now().UnixNano()
	first, second := fmt.Sprintf("sink-first-%d", stamp), fmt.Sprintf("sink-second-%d", stamp)
	sinks := NewSinks(zaptest.NewLogger(t), func() int64 { return 1 << 20 }, "", nil)
	srv := httptest.NewServer(sinks)
	defer srv.Close()
	apply := func(topic string) {
		s := &SinkSpec{Topic: topic, BootstrapServers: []string{brokers}, ContentMode: ModeBinary, NumPartitions: one[int32](1), ReplicationFactor: one[int16](1)}
		sinks.Apply([]*config.Object{{Namespace: "default", Name: "s", Spec: s, File: "s.yaml", Line: 1}}, nil)
	}
	h := map[string]string{"Ce-Specversion": "1.0", "Ce-Source": "/s", "Ce-Type": "t"}
	send := func(id string) int {
		h["Ce-Id"] = id
		code, _ := post(t, srv.URL+"/sinks/kafka/default/s", h, "")
		return code
	}
	apply(first)
	if code := send("one"); code != http.StatusAccepted {
		t.Fatalf("first topic: %d", code)
	}
	apply(second)
	if code := send("two"); code != http.StatusAccepted {
		t.Fatalf("second topic: %d", code)
	}
	if a, b := readRecords(t, brokers, first, 1), readRecords(t, brokers, second, 1); header(a[0], "ce_id") != "one" || header(b[0], "ce_id") != "two" {
		t.Errorf("records %v %v", a[0].Headers, b[0].Headers)
	}
	sinks.Apply(nil, nil)
	if code := send("three"); code != http.StatusNotFound {
		t.Errorf("a removed sink: %d, want 404", code)
	}
	sinks.Close()
	srv.Close() // VerifyNone then waits a while for the first sink, closed in the background
}
