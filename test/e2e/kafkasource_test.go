package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/switchyard-events/switchyard/test/testenv"
)

func kafkaSourceYAML(name, kafka, topic string) string {
	return fmt.Sprintf(`apiVersion: sources.knative.dev/v1beta1
kind: KafkaSource
metadata:
  name: %s
  namespace: default
spec:
  consumerGroup: %s-group
  bootstrapServers: [%s]
  topics: [%s]
  initialOffset: earliest
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
  ceOverrides:
    extensions: {origin: kafka}
---
`, name, topic, kafka, topic)
}

func produce(t *testing.T, kafka string, msgs ...*sarama.ProducerMessage) {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	p, err := sarama.NewSyncProducer([]string{kafka}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.SendMessages(msgs); err != nil {
		t.Fatal(err)
	}
}

// TestKafkaSourceMapping: CloudEvents records (binary and structured) pass through; any other
// record is wrapped as Knative's KafkaSource does.
func TestKafkaSourceMapping(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-source-%d", time.Now().UnixNano())
	binary := &sarama.ProducerMessage{Topic: topic}
	e := event.New()
	e.SetID("bin-1")
	e.SetSource("/producer")
	e.SetType("com.example.binary")
	_ = e.SetData("application/json", map[string]int{"n": 1})
	if err := kafka_sarama.WriteProducerMessage(context.Background(), binding.ToMessage(&e), binary); err != nil {
		t.Fatal(err)
	}
	structured := &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(`{"specversion":"1.0","id":"str-1","source":"/producer","type":"com.example.structured","data":{"n":2}}`),
		Headers: []sarama.RecordHeader{{Key: []byte("content-type"), Value: []byte("application/cloudevents+json")}}}
	raw := &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder("order-9"), Value: sarama.StringEncoder(`{"plain":"record"}`)}
	produce(t, kafka, binary, structured, raw)

	sub := newSubscriber(t, nil)
	startRouterIn(t, t.TempDir(), brokerYAML("default")+triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n")+kafkaSourceYAML("orders", kafka, topic), "", "")
	got := sub.waitFor(t, 3, 30*time.Second)
	byType := map[string]*event.Event{}
	for _, g := range got {
		byType[g.Event.Type()] = g.Event
		if g.Event.Extensions()["origin"] != "kafka" {
			t.Errorf("ceOverrides not applied: %v", g.Event)
		}
		for _, leaked := range []string{"kafkaoffset", "kafkapartition", "kafkatopic"} {
			if _, ok := g.Event.Extensions()[leaked]; ok {
				t.Errorf("%s leaked: %v", leaked, g.Event)
			}
		}
	}
	if b := byType["com.example.binary"]; b == nil || b.ID() != "bin-1" || string(b.Data()) != `{"n":1}` {
		t.Errorf("binary record: %v", b)
	}
	if s := byType["com.example.structured"]; s == nil || s.ID() != "str-1" {
		t.Errorf("structured record: %v", s)
	}
	w := byType["dev.knative.kafka.event"]
	if w == nil {
		t.Fatalf("raw record not wrapped: %v", byType)
	}
	if w.ID() != "partition:0/offset:2" || w.Subject() != "partition:0#2" || w.Source() != "/apis/v1/namespaces/default/kafkasources/orders#"+topic ||
		w.Extensions()["key"] != "order-9" || string(w.Data()) != `{"plain":"record"}` {
		t.Errorf("wrapped record: %v", w)
	}
}

// TestKafkaSourceResumesAfterKill: offsets are committed only after acceptance, so a router killed
// mid-stream and restarted delivers every record (some twice), none skipped. 2,000 records, times
// SWITCHYARD_SOAK_SCALE.
func TestKafkaSourceResumesAfterKill(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-resume-%d", time.Now().UnixNano())
	scale := soakScale(t)
	n := 2000 * scale
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf(`{"i":%d}`, i))}
	}
	produce(t, kafka, msgs...)
	sub := newSubscriber(t, nil)
	dir := t.TempDir()
	manifests := brokerYAML("default") + triggerYAML("all", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"\n") + kafkaSourceYAML("resume", kafka, topic)
	r := startRouterIn(t, dir, manifests, "", "")
	sub.waitFor(t, n/3, time.Duration(scale)*30*time.Second)
	_ = r.cmd.Process.Kill()
	<-r.exited
	startRouterIn(t, dir, manifests, "", "")
	deadline := time.Now().Add(time.Duration(scale) * 60 * time.Second)
	for {
		seen := map[string]bool{}
		for _, g := range sub.requests() {
			seen[g.Event.ID()] = true
		}
		if len(seen) == n {
			t.Logf("all %d records delivered; %d deliveries in all", n, len(sub.requests()))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d records delivered after the restart", len(seen), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKafkaSourceDeadLettersAndRecords (issue #18, item 6): a record the sink refuses is handled
// as Knative's spec.delivery says (retried, then dead-lettered), its outcome is findable at
// kafkasource:NAME, and the partition goes on; without a dead-letter sink it is recorded as failed
// and can be redriven once the sink takes it.
func TestKafkaSourceDeadLettersAndRecords(t *testing.T) {
	kafka := testenv.Kafka(t)
	topic := fmt.Sprintf("e2e-source-dls-%d", time.Now().UnixNano())
	var refuse atomic.Bool
	refuse.Store(true)
	sink := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		switch {
		case !refuse.Load() || !strings.Contains(string(req.Body), "bad"):
		case strings.Contains(req.Header.Get("Ce-Source"), "/withdls#"):
			w.WriteHeader(http.StatusServiceUnavailable) // retried as spec.delivery says, then dead-lettered
		default:
			w.WriteHeader(http.StatusUnprocessableEntity) // refused for good: recorded as failed at once
		}
	})
	dls := newSubscriber(t, nil)
	source := func(name, delivery string) string {
		return fmt.Sprintf("apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata: {name: %s, namespace: default}\n"+
			"spec:\n  consumerGroup: %s-%s\n  bootstrapServers: [%s]\n  topics: [%s]\n  initialOffset: earliest\n  sink:\n    uri: %s\n%s---\n",
			name, name, topic, kafka, topic, sink.URL, delivery)
	}
	produce(t, kafka, &sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(`{"n":"good-1"}`)},
		&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(`{"n":"bad"}`)},
		&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(`{"n":"good-2"}`)})
	r := startRouterIn(t, t.TempDir(), source("withdls", "  delivery:\n    retry: 1\n    backoffDelay: PT0.01S\n    deadLetterSink:\n      uri: "+dls.URL+"\n")+
		source("nodls", ""), "", "")

	// Each source: good-1, bad (twice at withdls: a 503 and its one retry; once at nodls: a 422 is
	// not retried), good-2.
	sink.waitFor(t, 7, 30*time.Second)
	got := dls.waitFor(t, 1, 30*time.Second)
	if got[0].Event == nil || got[0].Event.ID() != "partition:0/offset:1" || got[0].Header.Get("Ce-Knativeerrorcode") != "503" {
		t.Errorf("the dead-letter sink got %+v, want record 1 with knativeerrorcode 503", got[0])
	}
	status := func(source string) string {
		code, body := r.get(t, "/v1/events/partition:0%2Foffset:1")
		if code != http.StatusOK {
			return fmt.Sprintf("%d %s", code, body)
		}
		var out struct {
			Outcomes []struct {
				Trigger, Status string
				Finished        time.Time
			}
		}
		_ = json.Unmarshal([]byte(body), &out)
		latest, at := body, time.Time{}
		for _, o := range out.Outcomes {
			if o.Trigger == "default/kafkasource:"+source && o.Finished.After(at) {
				latest, at = o.Status, o.Finished
			}
		}
		return latest
	}
	if s := status("withdls"); s != "dead-lettered" {
		t.Errorf("the refused record at kafkasource:withdls: %s, want dead-lettered", s)
	}
	if s := status("nodls"); s != "failed" {
		t.Errorf("the refused record at kafkasource:nodls: %s, want failed", s)
	}

	refuse.Store(false)
	code, body := r.post(t, "/v1/triggers/default/kafkasource:nodls/redrive")
	var redrive struct{ Redriven int }
	if err := json.Unmarshal([]byte(body), &redrive); code != http.StatusOK || err != nil || redrive.Redriven != 1 {
		t.Fatalf("redrive of the source's failed record: %d %s", code, body)
	}
	sink.waitFor(t, 8, 30*time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for status("nodls") != "delivered" {
		if time.Now().After(deadline) {
			t.Fatalf("after the redrive the record's outcome at kafkasource:nodls is %s, want delivered", status("nodls"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := r.get(t, "/v1/triggers/default/kafkasource:nodls/outcomes?failed=true"); code != http.StatusOK || strings.Contains(body, "offset:1") {
		t.Errorf("the redriven record is still on the failed list: %d %s", code, body)
	}
}
