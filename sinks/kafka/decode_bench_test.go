package kafka

import (
	"context"
	"strings"
	"testing"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/event"
)

// BenchmarkDecodeRecord is what reading one record back costs the router beyond the fetch: the
// CloudEvents Kafka binding and the envelope (docs/kafka-isolation.md weighs it: a consumer group
// per trigger pays it once per trigger, a shared read once).
func BenchmarkDecodeRecord(b *testing.B) {
	e := event.New()
	e.SetID("4f6e2c1a-8d2b-4c57-9a0e-3b1f5d7c9e21")
	e.SetSource("/apps/web")
	e.SetType("com.example.order.created")
	e.SetExtension("knativebrokerttl", "254")
	e.SetExtension("knativearrivaltime", "2026-12-07T10:00:00.123456789Z")
	e.SetExtension("switchyardreplybudget", "1000")
	_ = e.SetData("application/json", []byte(`{"order":"`+strings.Repeat("x", 1000)+`"}`))
	pm := &sarama.ProducerMessage{Topic: "t"}
	if err := kafka_sarama.WriteProducerMessage(context.Background(), binding.ToMessage(&e), pm); err != nil {
		b.Fatal(err)
	}
	value, _ := pm.Value.Encode()
	msg := &sarama.ConsumerMessage{Topic: "t", Partition: 3, Offset: 12345, Value: value}
	for _, h := range pm.Headers {
		msg.Headers = append(msg.Headers, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeRecord(msg); err != nil {
			b.Fatal(err)
		}
	}
}
