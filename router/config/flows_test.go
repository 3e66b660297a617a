package config

import (
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router"
)

// Knative's own samples (knative/docs code-samples/eventing/sequence and parallel), as written.
const (
	knativeSequenceSample = `apiVersion: flows.knative.dev/v1
kind: Sequence
metadata:
  name: sequence
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
  steps:
    - ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: first
    - ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: second
    - ref:
        apiVersion: serving.knative.dev/v1
        kind: Service
        name: third
  reply:
    ref:
      kind: Service
      apiVersion: serving.knative.dev/v1
      name: event-display
---
apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: ping-source
spec:
  schedule: "*/2 * * * *"
  contentType: "application/json"
  data: '{"message": "Hello world!"}'
  sink:
    ref:
      apiVersion: flows.knative.dev/v1
      kind: Sequence
      name: sequence
`
	knativeParallelSample = `apiVersion: flows.knative.dev/v1
kind: Parallel
metadata:
  name: odd-even-parallel
spec:
  channelTemplate:
    apiVersion: messaging.knative.dev/v1
    kind: InMemoryChannel
  branches:
    - filter:
        ref:
          apiVersion: serving.knative.dev/v1
          kind: Service
          name: even-filter
      subscriber:
        ref:
          apiVersion: serving.knative.dev/v1
          kind: Service
          name: even-transformer
    - filter:
        ref:
          apiVersion: serving.knative.dev/v1
          kind: Service
          name: odd-filter
      subscriber:
        ref:
          apiVersion: serving.knative.dev/v1
          kind: Service
          name: odd-transformer
  reply:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: event-display
`
)

func triggerNamed(cfg *Config, name string) *Trigger {
	for _, t := range cfg.Triggers {
		if t.Ref.Name == name {
			return t
		}
	}
	return nil
}

func svc(name string) string { return "http://" + name + ".default.svc.cluster.local/" }

func TestKnativeSequenceSample(t *testing.T) {
	cfg, err := Parse("seq.yaml", []byte(knativeSequenceSample))
	if err != nil {
		t.Fatal(err)
	}
	var brokers []string
	for _, b := range cfg.Brokers {
		brokers = append(brokers, b.Ref.String())
	}
	if got := strings.Join(brokers, " "); got != "default/sequence-kn-sequence-0 default/sequence-kn-sequence-1 default/sequence-kn-sequence-2" {
		t.Errorf("brokers: %s", got)
	}
	for i, want := range []struct {
		subscriber string
		reply      ReplyTo
	}{
		{svc("first"), ReplyTo{Broker: &router.BrokerRef{Namespace: "default", Name: "sequence-kn-sequence-1"}}},
		{svc("second"), ReplyTo{Broker: &router.BrokerRef{Namespace: "default", Name: "sequence-kn-sequence-2"}}},
		{svc("third"), ReplyTo{URI: svc("event-display")}},
	} {
		tr := triggerNamed(cfg, SequenceBroker("sequence", i))
		if tr == nil || tr.Broker.Name != SequenceBroker("sequence", i) || tr.Subscriber != want.subscriber || tr.Reply == nil ||
			tr.Reply.URI != want.reply.URI || (tr.Reply.Broker == nil) != (want.reply.Broker == nil) ||
			tr.Reply.Broker != nil && *tr.Reply.Broker != *want.reply.Broker || tr.Delivery.Retry != DefaultRetry {
			t.Errorf("step %d: %+v, reply %+v", i, tr, tr.Reply)
		}
	}
	// The PingSource's sink, a ref to the Sequence, is its first broker, in process.
	if s := cfg.PingSources[0].Sink; s.Broker == nil || s.Broker.Name != "sequence-kn-sequence-0" {
		t.Errorf("PingSource sink: %+v", s)
	}
	// Without spec.reply, the last step's reply goes nowhere (as in Knative).
	noReply := strings.Replace(knativeSequenceSample, "  reply:\n    ref:\n      kind: Service\n      apiVersion: serving.knative.dev/v1\n      name: event-display\n", "", 1)
	cfg, err = Parse("seq.yaml", []byte(noReply))
	if err != nil {
		t.Fatal(err)
	}
	if r := triggerNamed(cfg, "sequence-kn-sequence-2").Reply; r == nil || !r.Discard {
		t.Errorf("last step without spec.reply: %+v", r)
	}
}

func TestKnativeParallelSample(t *testing.T) {
	cfg, err := Parse("par.yaml", []byte(knativeParallelSample))
	if err != nil {
		t.Fatal(err)
	}
	var brokers []string
	for _, b := range cfg.Brokers {
		brokers = append(brokers, b.Ref.Name)
	}
	// Knative's channel names: the Parallel's own, and one per branch behind its filter.
	if got := strings.Join(brokers, " "); got != "odd-even-parallel-kn-parallel odd-even-parallel-kn-parallel-0 odd-even-parallel-kn-parallel-1" {
		t.Errorf("brokers: %s", got)
	}
	for j, branch := range []string{"even", "odd"} {
		f := triggerNamed(cfg, "odd-even-parallel-kn-parallel-filter-"+string(rune('0'+j)))
		if f == nil || f.Broker.Name != "odd-even-parallel-kn-parallel" || f.Subscriber != svc(branch+"-filter") ||
			f.Reply == nil || f.Reply.Broker == nil || f.Reply.Broker.Name != "odd-even-parallel-kn-parallel-"+string(rune('0'+j)) {
			t.Errorf("branch %d filter: %+v", j, f)
		}
		s := triggerNamed(cfg, "odd-even-parallel-kn-parallel-"+string(rune('0'+j)))
		if s == nil || s.Broker.Name != "odd-even-parallel-kn-parallel-"+string(rune('0'+j)) || s.Subscriber != svc(branch+"-transformer") ||
			s.Reply == nil || s.Reply.URI != svc("event-display") {
			t.Errorf("branch %d subscriber: %+v", j, s)
		}
	}
}

func TestFlowMistakes(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  steps: []\n", "f.yaml:5: spec.steps: a Sequence needs at least one step"},
		{"apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  steps:\n  - uri: http://a/\n  - {}\n", "spec.steps[1]: set uri or ref"},
		{"apiVersion: flows.knative.dev/v1\nkind: Parallel\nmetadata: {name: p}\nspec:\n  branches:\n  - filter: {uri: http://f/}\n", "spec.branches[0].subscriber: must be set"},
		{"apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  steps:\n  - uri: http://a/\n    delivery: {retry: -2}\n", "spec.steps[0].delivery.retry"},
		{"apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  stepz: []\n", "stepz"},
		// A Broker named as a flow's would be.
		{"apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: s-kn-sequence-0}\n---\napiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: s}\nspec:\n  steps:\n  - uri: http://a/\n", "needs a broker named default/s-kn-sequence-0, which f.yaml:1 defines already"},
		{"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: b\n  subscriber:\n    ref: {apiVersion: flows.knative.dev/v1, kind: Sequence, name: nowhere}\n", "Sequence default/nowhere is not in this configuration"},
	} {
		_, err := Parse("f.yaml", []byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
}

// TestKafkaChannelFlows: a flow whose channelTemplate is a KafkaChannel runs on Kafka-class
// brokers, in the topics Knative's KafkaChannel would use and sized by its spec; a KafkaChannel
// without a Kafka cluster, or a Channel kind Switchyard does not run, is refused at its line.
func TestKafkaChannelFlows(t *testing.T) {
	const kafka = "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  kafka: {bootstrapServers: [\"127.0.0.1:9092\"]}\n---\n"
	kafkaChannel := strings.Replace(knativeSequenceSample, "    apiVersion: messaging.knative.dev/v1\n    kind: InMemoryChannel\n",
		"    apiVersion: messaging.knative.dev/v1beta1\n    kind: KafkaChannel\n    spec: {numPartitions: 3, replicationFactor: 1, retentionDuration: PT168H}\n", 1)
	load := func(doc string) (*Config, error) {
		return LoadSources(Sources{Documents: []Document{{Name: "seq.yaml", Data: []byte(doc)}}, Components: []Component{anyBlock("kafka")}})
	}
	cfg, err := load(kafka + kafkaChannel)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Brokers) != 3 {
		t.Fatalf("brokers: %d", len(cfg.Brokers))
	}
	for i, b := range cfg.Brokers {
		if b.Class != "Kafka" || b.Topic != "knative-messaging-kafka.default.sequence-kn-sequence-"+string(rune('0'+i)) ||
			b.Partitions != 3 || b.ReplicationFactor != 1 || b.MaxInFlight != 0 {
			t.Errorf("broker %d: %+v", i, b)
		}
	}
	// The sample as written (an InMemoryChannel) stays in memory.
	cfg, err = load(kafka + knativeSequenceSample)
	if err != nil || cfg.Brokers[0].Class == "Kafka" || cfg.Brokers[0].Topic != "" {
		t.Fatalf("InMemoryChannel: %v %+v", err, cfg.Brokers)
	}
	for doc, want := range map[string]string{
		kafkaChannel: "seq.yaml:8: spec.channelTemplate.kind: a KafkaChannel needs a Kafka cluster",
		kafka + strings.Replace(knativeSequenceSample, "kind: InMemoryChannel", "kind: NatssChannel", 1): "seq.yaml:14: spec.channelTemplate.kind: Switchyard runs flows on InMemoryChannel (in memory) or KafkaChannel (Kafka-class brokers), not \"NatssChannel\"",
		kafka + strings.Replace(kafkaChannel, "numPartitions: 3", "numPartitions: -1", 1):                "spec.channelTemplate.spec: numPartitions and replicationFactor must be positive",
		kafka + strings.Replace(knativeParallelSample, "kind: InMemoryChannel", "kind: Foo", 1):          "not \"Foo\"",
	} {
		if _, err := load(doc); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
}
