package config

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// A Knative Kafka-class Broker takes its cluster and topic settings from the ConfigMap its
// spec.config names (Knative's kafka-broker-config: bootstrap.servers, default.topic.partitions,
// default.topic.replication.factor). Switchyard reads the same keys, so a Knative Kafka user's
// manifests (a GitOps folder, or the cluster in controller mode) work as they are. Switchyard
// serves one Kafka cluster per router: a ConfigMap's bootstrap.servers gives the router its
// cluster when neither --kafka-bootstrap-servers nor spec.kafka does, and must name the same
// servers when one of them does. See docs/kafka.md.

// Keys of Knative's kafka-broker-config that Switchyard reads.
const (
	kafkaConfigServers     = "bootstrap.servers"
	kafkaConfigPartitions  = "default.topic.partitions"
	kafkaConfigReplication = "default.topic.replication.factor"
	kafkaConfigAuthSecret  = "auth.secret.ref.name"
)

// kafkaClasses are the broker classes served by a Kafka topic. Knative's KafkaNamespaced class
// runs a data plane per namespace; here every broker already has its own topic and reader, so it
// is the Kafka class.
var kafkaClasses = map[string]bool{"Kafka": true, "KafkaNamespaced": true}

// configMapDoc is a v1 ConfigMap document, kept in case a Kafka-class Broker names it.
type configMapDoc struct {
	d    *doc
	data *yaml.Node // the data mapping, or nil
	// skipped is its entry in loader.skipped, dropped from the listing once a Broker reads it.
	skipped int
}

// value returns the ConfigMap's data[key] and its line.
func (c *configMapDoc) value(key string) (string, int, bool) {
	if c.data == nil || c.data.Kind != yaml.MappingNode {
		return "", 0, false
	}
	for i := 0; i+1 < len(c.data.Content); i += 2 {
		if c.data.Content[i].Value == key {
			return c.data.Content[i+1].Value, c.data.Content[i+1].Line, true
		}
	}
	return "", 0, false
}

// keepConfigMap records a ConfigMap document (sortOut has listed it as skipped).
func (l *loader) keepConfigMap(d *doc, top *yaml.Node, namespace, name string) {
	if namespace == "" {
		namespace = "default"
	}
	if l.configMaps == nil {
		l.configMaps = map[string]*configMapDoc{}
	}
	l.configMaps[namespace+"/"+name] = &configMapDoc{d: d, data: mapValue(top, "data"), skipped: len(l.skipped) - 1}
}

// kafkaBrokerConfig is what a Kafka-class Broker's ConfigMap sets.
type kafkaBrokerConfig struct {
	partitions  int32
	replication int16
}

// readKafkaBrokerConfigs reads the ConfigMaps of the Kafka-class Brokers, before the components
// are compiled: a ConfigMap's bootstrap.servers becomes the cluster's when nothing else gives one.
// Problems are reported at the ConfigMap's line; a ConfigMap no Broker names is not read.
func (l *loader) readKafkaBrokerConfigs() map[*brokerDoc]kafkaBrokerConfig {
	out := map[*brokerDoc]kafkaBrokerConfig{}
	used := map[int]bool{}
	// The cluster named elsewhere, and where, to compare a ConfigMap's servers with.
	var servers []string
	from := ""
	if l.overrides != nil && len(l.overrides.KafkaBootstrapServers) > 0 {
		servers, from = l.overrides.KafkaBootstrapServers, "--kafka-bootstrap-servers"
	} else if b := l.blocks[KafkaComponentPath]; b != nil {
		if n := mapValue(b.node, "bootstrapServers"); n != nil && n.Kind == yaml.SequenceNode {
			for _, s := range n.Content {
				servers = append(servers, s.Value)
			}
			from = fmt.Sprintf("spec.kafka.bootstrapServers at %s:%d", b.d.file, n.Line)
		}
	}
	fromConfigMap := false
	secured := false
	if b := l.blocks[KafkaComponentPath]; b != nil {
		secured = mapValue(b.node, "sasl") != nil || mapValue(b.node, "tls") != nil
	}
	for i := range l.brokers {
		b := &l.brokers[i]
		ref := b.m.Spec.Config
		if !kafkaClasses[b.m.Metadata.Annotations[AnnotationBrokerClass]] || ref == nil || ref.Kind != "ConfigMap" {
			continue
		}
		ns := ref.Namespace
		if ns == "" {
			ns = b.m.Metadata.Namespace
		}
		if ns == "" {
			ns = "default"
		}
		cm := l.configMaps[ns+"/"+ref.Name]
		if cm == nil {
			if l.configMapsComplete {
				l.errAt(b.d, "spec.config", "ConfigMap %s/%s not found: a Kafka-class Broker reads its bootstrap.servers and topic settings from it", ns, ref.Name)
			}
			continue
		}
		used[cm.skipped] = true
		errAt := func(key string, line int, format string, args ...any) {
			l.errs = append(l.errs, &Error{File: cm.d.file, Line: line, Path: cm.d.itemPath("data." + key), Msg: fmt.Sprintf(format, args...)})
		}
		var c kafkaBrokerConfig
		if v, line, ok := cm.value(kafkaConfigPartitions); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err != nil || n <= 0 {
				errAt(kafkaConfigPartitions, line, "must be a positive whole number of partitions, got %q", v)
			}
			c.partitions = int32(n)
		}
		if v, line, ok := cm.value(kafkaConfigReplication); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 16)
			if err != nil || n <= 0 {
				errAt(kafkaConfigReplication, line, "must be a positive whole number of replicas, got %q", v)
			}
			c.replication = int16(n)
		}
		if _, line, ok := cm.value(kafkaConfigAuthSecret); ok && !secured {
			errAt(kafkaConfigAuthSecret, line, "Switchyard does not read Knative's Kafka auth Secret: give the cluster's TLS or SASL in spec.kafka of a SwitchyardConfig (docs/kafka.md); with either set there, this key is not needed")
		}
		if v, line, ok := cm.value(kafkaConfigServers); ok {
			var mine []string
			for _, s := range strings.Split(v, ",") {
				s = strings.TrimSpace(s)
				if _, _, err := net.SplitHostPort(s); err != nil {
					errAt(kafkaConfigServers, line, "%q is not host:port (a comma-separated list of Kafka brokers)", s)
					mine = nil
					break
				}
				mine = append(mine, s)
			}
			switch {
			case mine == nil:
			case servers == nil:
				servers, from, fromConfigMap = mine, fmt.Sprintf("ConfigMap %s/%s at %s:%d", ns, ref.Name, cm.d.file, line), true
			case !sameServers(servers, mine):
				errAt(kafkaConfigServers, line, "names %s, but this router's Kafka cluster is %s (from %s): a router serves one Kafka cluster, so make them the same",
					strings.Join(mine, ","), strings.Join(servers, ","), from)
			}
		}
		out[b] = c
	}
	if fromConfigMap {
		// Given to the Kafka component as --kafka-bootstrap-servers would be.
		o := Overrides{}
		if l.overrides != nil {
			o = *l.overrides
		}
		o.KafkaBootstrapServers = servers
		l.overrides = &o
	}
	if len(used) > 0 {
		kept := l.skipped[:0:0]
		for i, s := range l.skipped {
			if !used[i] {
				kept = append(kept, s)
			}
		}
		l.skipped = kept
	}
	return out
}

func sameServers(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}
