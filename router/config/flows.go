package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/filter"
)

// Knative's flows.knative.dev/v1 Sequence and Parallel, served over Switchyard's own brokers and
// triggers instead of Channels and Subscriptions (docs/flows.md). Each Channel Knative would make
// becomes an in-memory broker of the same name, each Subscription a trigger of the same name whose
// subscriber's reply goes on to the next step (ReplyTo) instead of back into its broker:
//
//	Sequence S, steps 0..n-1:  broker S-kn-sequence-i, trigger S-kn-sequence-i (step i), reply to
//	                           broker S-kn-sequence-(i+1); the last step's to spec.reply, or dropped
//	Parallel P, branches j:    broker P-kn-parallel (the Parallel's address); per branch, trigger
//	                           P-kn-parallel-filter-j (the filter) replying into broker
//	                           P-kn-parallel-j, whose trigger P-kn-parallel-j (the subscriber)
//	                           replies to the branch's reply, else spec.reply, else nowhere;
//	                           a branch without a filter has only the second, on P-kn-parallel.
//
// A Sequence's address is its first broker's URL, a Parallel's its P-kn-parallel broker's: POST
// /{namespace}/{name}-kn-sequence-0, /{namespace}/{name}-kn-parallel.

const flowsV1 = "flows.knative.dev/v1"

type sequenceManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta   `yaml:"metadata"`
	Spec     sequenceSpec `yaml:"spec"`
	Status   yaml.Node    `yaml:"status"`
}

type sequenceSpec struct {
	// ChannelTemplate says which Channel kind Knative makes; Switchyard makes brokers of the
	// matching class instead (flowBuilder.channel).
	ChannelTemplate *channelTemplate `yaml:"channelTemplate"`
	Steps           []sequenceStep   `yaml:"steps"`
	Reply           *destination     `yaml:"reply"`
}

// channelTemplate is Knative's ChannelTemplateSpec: the Channel kind and, for a KafkaChannel, the
// settings of its topic.
type channelTemplate struct {
	typeMeta `yaml:",inline"`
	// Spec is the Channel's spec, whose fields depend on the kind.
	Spec yaml.Node `yaml:"spec"`
}

// kafkaChannelSpec is what Switchyard reads of a KafkaChannel's spec (messaging.knative.dev/v1beta1).
type kafkaChannelSpec struct {
	NumPartitions     int32 `yaml:"numPartitions"`
	ReplicationFactor int16 `yaml:"replicationFactor"`
}

type sequenceStep struct {
	destination `yaml:",inline"`
	Delivery    *deliverySpec `yaml:"delivery"`
}

type parallelManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta   `yaml:"metadata"`
	Spec     parallelSpec `yaml:"spec"`
	Status   yaml.Node    `yaml:"status"`
}

type parallelSpec struct {
	ChannelTemplate *channelTemplate `yaml:"channelTemplate"`
	Branches        []parallelBranch `yaml:"branches"`
	Reply           *destination     `yaml:"reply"`
}

type parallelBranch struct {
	Filter     *destination  `yaml:"filter"`
	Subscriber *destination  `yaml:"subscriber"`
	Reply      *destination  `yaml:"reply"`
	Delivery   *deliverySpec `yaml:"delivery"`
}

type sequenceDoc struct {
	d *doc
	m sequenceManifest
}

type parallelDoc struct {
	d *doc
	m parallelManifest
}

// SequenceBroker is the name of the broker before step i of Sequence name: step 0's is the
// Sequence's address.
func SequenceBroker(name string, i int) string { return fmt.Sprintf("%s-kn-sequence-%d", name, i) }

// ParallelBroker is the name of Parallel name's broker: its address.
func ParallelBroker(name string) string { return name + "-kn-parallel" }

// flowEntry is the broker a ref to a Sequence or Parallel of this configuration delivers into, or
// "" when kind is neither.
func flowEntry(kind, name string) string {
	switch kind {
	case "Sequence":
		return SequenceBroker(name, 0)
	case "Parallel":
		return ParallelBroker(name)
	}
	return ""
}

// hasFlow reports whether the configuration defines Sequence or Parallel ns/name.
func (l *loader) hasFlow(kind, ns, name string) bool {
	switch kind {
	case "Sequence":
		for i := range l.sequences {
			if m := &l.sequences[i].m.Metadata; m.Name == name && orDefault(m.Namespace) == ns {
				return true
			}
		}
	case "Parallel":
		for i := range l.parallels {
			if m := &l.parallels[i].m.Metadata; m.Name == name && orDefault(m.Namespace) == ns {
				return true
			}
		}
	}
	return false
}

func orDefault(ns string) string {
	if ns == "" {
		return "default"
	}
	return ns
}

// flowBuilder adds the brokers and triggers of Sequences and Parallels to a configuration.
type flowBuilder struct {
	l        *loader
	cfg      *Config
	brokers  map[router.BrokerRef]*brokerDoc
	defaults deliveryFields
	// made are the brokers made so far, with the document that made them.
	made map[router.BrokerRef]*doc
}

// compileFlows compiles every Sequence and Parallel into brokers and triggers of cfg.
func (l *loader) compileFlows(cfg *Config, brokers map[router.BrokerRef]*brokerDoc, defaults deliveryFields) {
	fb := &flowBuilder{l: l, cfg: cfg, brokers: brokers, defaults: defaults, made: map[router.BrokerRef]*doc{}}
	for i := range l.sequences {
		fb.sequence(&l.sequences[i])
	}
	for i := range l.parallels {
		fb.parallel(&l.parallels[i])
	}
}

// flowChannel is the kind of broker a flow's channelTemplate asks for.
type flowChannel struct {
	// kafka makes Kafka-class brokers (a KafkaChannel), whose events survive the process.
	kafka bool
	// partitions and replication, when above 0, size the topics created for them.
	partitions  int32
	replication int16
}

// channel reads a flow's channelTemplate: none or an InMemoryChannel makes in-memory brokers, a
// KafkaChannel Kafka-class ones; any other Channel kind is refused rather than run in memory
// against what the manifest asked for.
func (fb *flowBuilder) channel(d *doc, t *channelTemplate) (flowChannel, bool) {
	if t == nil {
		return flowChannel{}, true
	}
	if t.APIVersion != "" && !strings.HasPrefix(t.APIVersion, "messaging.knative.dev/") {
		fb.l.errAt(d, "spec.channelTemplate.apiVersion", "must be messaging.knative.dev/v1 (InMemoryChannel) or messaging.knative.dev/v1beta1 (KafkaChannel), got %q", t.APIVersion)
		return flowChannel{}, false
	}
	switch t.Kind {
	case "", "InMemoryChannel":
		return flowChannel{}, true
	case "KafkaChannel":
		var spec kafkaChannelSpec
		if t.Spec.Kind != 0 {
			if err := t.Spec.Decode(&spec); err != nil {
				fb.l.errAt(d, "spec.channelTemplate.spec", "%v", err)
				return flowChannel{}, false
			}
		}
		if spec.NumPartitions < 0 || spec.ReplicationFactor < 0 {
			fb.l.errAt(d, "spec.channelTemplate.spec", "numPartitions and replicationFactor must be positive, got %d and %d", spec.NumPartitions, spec.ReplicationFactor)
			return flowChannel{}, false
		}
		if fb.cfg.Components[KafkaComponentPath] == nil && !fb.l.routingOnly {
			fb.l.errAt(d, "spec.channelTemplate.kind", "a KafkaChannel needs a Kafka cluster: set spec.kafka.bootstrapServers in a SwitchyardConfig, or --kafka-bootstrap-servers")
			return flowChannel{}, false
		}
		return flowChannel{kafka: true, partitions: spec.NumPartitions, replication: spec.ReplicationFactor}, true
	default:
		fb.l.errAt(d, "spec.channelTemplate.kind", "Switchyard runs flows on InMemoryChannel (in memory) or KafkaChannel (Kafka-class brokers), not %q", t.Kind)
		return flowChannel{}, false
	}
}

// broker makes the broker name for d, of the class ch asks for, or reports why it cannot. A
// KafkaChannel's broker keeps its events in the topic Knative's KafkaChannel would use,
// knative-messaging-kafka.{namespace}.{name}.
func (fb *flowBuilder) broker(d *doc, ns, name string, ch flowChannel) (router.BrokerRef, bool) {
	ref := router.BrokerRef{Namespace: ns, Name: name}
	if b, ok := fb.brokers[ref]; ok {
		fb.l.errAt(d, "metadata.name", "needs a broker named %s, which %s:%d defines already: rename one of them", ref, b.d.file, b.d.line(""))
		return ref, false
	}
	if prev, ok := fb.made[ref]; ok {
		fb.l.errAt(d, "metadata.name", "needs a broker named %s, which the flow at %s:%d makes already", ref, prev.file, prev.line(""))
		return ref, false
	}
	fb.made[ref] = d
	b := &Broker{Ref: ref, MaxInFlight: fb.cfg.Settings.MaxInFlight, File: d.file, Line: d.line("")}
	if ch.kafka {
		b.Class, b.Topic, b.MaxInFlight = "Kafka", "knative-messaging-kafka."+ns+"."+name, 0
		b.Partitions, b.ReplicationFactor = ch.partitions, ch.replication
	}
	fb.cfg.Brokers = append(fb.cfg.Brokers, b)
	return ref, true
}

// trigger makes a trigger on broker b delivering to dst (at path), its replies sent to reply.
func (fb *flowBuilder) trigger(d *doc, path string, b router.BrokerRef, name string, dst *destination, delivery *deliverySpec, deliveryPath string, reply *ReplyTo) {
	s := &fb.cfg.Settings
	t := &Trigger{Ref: router.TriggerRef{Namespace: b.Namespace, Name: name}, Broker: b, Filter: filter.All(), Reply: reply,
		Concurrency: s.TriggerConcurrency, Pending: s.TriggerPending, PendingWait: s.TriggerPendingWait, File: d.file, Line: d.line(path)}
	if dst == nil {
		fb.l.errAt(d, path, "must be set: a uri or a ref")
		return
	}
	t.Subscriber = fb.l.resolveDestination(d, path, dst, b.Namespace, s)
	own := fb.l.parseDelivery(d, deliveryPath, delivery, b.Namespace, s, true)
	t.Delivery = resolvePolicy(fb.defaults, deliveryFields{}, own)
	fb.cfg.Triggers = append(fb.cfg.Triggers, t)
}

// replyTo resolves where a flow's last replies go: a broker, Sequence or Parallel of this
// configuration (published into it in process), a URI, or nowhere (dst nil).
func (fb *flowBuilder) replyTo(d *doc, path string, dst *destination, ns string) *ReplyTo {
	if dst == nil {
		return &ReplyTo{Discard: true}
	}
	if r := dst.Ref; r != nil && dst.URI == "" {
		rns := r.Namespace
		if rns == "" {
			rns = ns
		}
		switch {
		case r.Kind == "Broker" && r.APIVersion == knativeEventingV1 && fb.l.hasBroker(rns, r.Name):
			return &ReplyTo{Broker: &router.BrokerRef{Namespace: rns, Name: r.Name}}
		case r.APIVersion == flowsV1 && fb.l.hasFlow(r.Kind, rns, r.Name):
			return &ReplyTo{Broker: &router.BrokerRef{Namespace: rns, Name: flowEntry(r.Kind, r.Name)}}
		}
	}
	u := fb.l.resolveDestination(d, path, dst, ns, &fb.cfg.Settings)
	return &ReplyTo{URI: u}
}

func (fb *flowBuilder) sequence(sd *sequenceDoc) {
	l, d := fb.l, sd.d
	ref, ok := l.objectRef(d, &sd.m.Metadata)
	if !ok {
		return
	}
	steps := sd.m.Spec.Steps
	if len(steps) == 0 {
		l.errAt(d, "spec.steps", "a Sequence needs at least one step")
		return
	}
	ch, ok := fb.channel(d, sd.m.Spec.ChannelTemplate)
	if !ok {
		return
	}
	var brokers []router.BrokerRef
	for i := range steps {
		b, ok := fb.broker(d, ref.Namespace, SequenceBroker(ref.Name, i), ch)
		if !ok {
			return
		}
		brokers = append(brokers, b)
	}
	last := fb.replyTo(d, "spec.reply", sd.m.Spec.Reply, ref.Namespace)
	for i := range steps {
		reply := last
		if i+1 < len(steps) {
			reply = &ReplyTo{Broker: &brokers[i+1]}
		}
		path := fmt.Sprintf("spec.steps[%d]", i)
		step := &steps[i]
		fb.trigger(d, path, brokers[i], SequenceBroker(ref.Name, i), &step.destination, step.Delivery, path+".delivery", reply)
	}
}

func (fb *flowBuilder) parallel(pd *parallelDoc) {
	l, d := fb.l, pd.d
	ref, ok := l.objectRef(d, &pd.m.Metadata)
	if !ok {
		return
	}
	branches := pd.m.Spec.Branches
	if len(branches) == 0 {
		l.errAt(d, "spec.branches", "a Parallel needs at least one branch")
		return
	}
	ch, ok := fb.channel(d, pd.m.Spec.ChannelTemplate)
	if !ok {
		return
	}
	entry, ok := fb.broker(d, ref.Namespace, ParallelBroker(ref.Name), ch)
	if !ok {
		return
	}
	for j := range branches {
		br := &branches[j]
		path := fmt.Sprintf("spec.branches[%d]", j)
		replyDst, replyPath := br.Reply, path+".reply"
		if replyDst == nil {
			replyDst, replyPath = pd.m.Spec.Reply, "spec.reply"
		}
		reply := fb.replyTo(d, replyPath, replyDst, ref.Namespace)
		name := fmt.Sprintf("%s-kn-parallel-%d", ref.Name, j)
		on := entry
		if br.Filter != nil {
			// The filter's reply is the event that passed: it goes on to the branch's subscriber.
			b, ok := fb.broker(d, ref.Namespace, name, ch)
			if !ok {
				return
			}
			fb.trigger(d, path+".filter", entry, fmt.Sprintf("%s-kn-parallel-filter-%d", ref.Name, j), br.Filter, br.Delivery, path+".delivery", &ReplyTo{Broker: &b})
			on = b
		}
		fb.trigger(d, path+".subscriber", on, name, br.Subscriber, br.Delivery, path+".delivery", reply)
	}
}
