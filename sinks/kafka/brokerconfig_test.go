package kafka

import (
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router/config"
)

// Knative's Kafka broker manifests as a Knative user has them: the Broker names
// knative-eventing/kafka-broker-config in spec.config, whose data gives the cluster and topic
// settings.
const (
	kafkaBrokerDoc = `apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: orders
  namespace: shop
  annotations:
    eventing.knative.dev/broker.class: CLASS
spec:
  config:
    apiVersion: v1
    kind: ConfigMap
    name: kafka-broker-config
    namespace: knative-eventing
`
	kafkaBrokerConfigDoc = `apiVersion: v1
kind: ConfigMap
metadata:
  name: kafka-broker-config
  namespace: knative-eventing
data:
  default.topic.partitions: "3"
  default.topic.replication.factor: "1"
  bootstrap.servers: "k1:9092, k2:9092"
`
)

func loadBrokerDocs(docs string, src config.Sources) (*config.Config, error) {
	src.Documents = []config.Document{{Name: "kafka.yaml", Data: []byte(docs)}}
	src.Components = []config.Component{Component{}}
	return config.LoadSources(src)
}

// TestKnativeKafkaBrokerConfigMap (issue #33): a Kafka-class Broker takes its cluster and topic
// sizes from the ConfigMap its spec.config names, as Knative's Kafka broker does, in files and in
// controller mode; KafkaNamespaced is read as Kafka.
func TestKnativeKafkaBrokerConfigMap(t *testing.T) {
	for _, class := range []string{"Kafka", "KafkaNamespaced"} {
		cfg, err := loadBrokerDocs(strings.Replace(kafkaBrokerDoc, "CLASS", class, 1)+"---\n"+kafkaBrokerConfigDoc, config.Sources{})
		if err != nil {
			t.Fatalf("%s: %v", class, err)
		}
		s, _ := cfg.Components[config.KafkaComponentPath].(*Spec)
		if s == nil || strings.Join(s.BootstrapServers, ",") != "k1:9092,k2:9092" {
			t.Fatalf("%s: the cluster from the ConfigMap: %+v", class, s)
		}
		b := cfg.Brokers[0]
		if b.Class != "Kafka" || b.Topic != "knative-broker-shop-orders" || b.Partitions != 3 || b.ReplicationFactor != 1 {
			t.Errorf("%s: broker %+v", class, b)
		}
		for _, sk := range cfg.Skipped {
			if sk.Kind == "ConfigMap" {
				t.Errorf("%s: a ConfigMap a Broker reads is listed as skipped: %+v", class, sk)
			}
		}
	}
	kafkaBroker := strings.Replace(kafkaBrokerDoc, "CLASS", "Kafka", 1)

	// The router's own cluster wins when it names the same servers, in any order.
	cfg, err := loadBrokerDocs(kafkaBroker+"---\n"+kafkaBrokerConfigDoc, config.Sources{Overrides: &config.Overrides{KafkaBootstrapServers: []string{"k2:9092", "k1:9092"}}})
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Components[config.KafkaComponentPath].(*Spec); strings.Join(s.BootstrapServers, ",") != "k2:9092,k1:9092" {
		t.Errorf("flag's servers: %v", s.BootstrapServers)
	}

	// Without the ConfigMap in files, the router's settings apply, as before; in controller mode
	// (every ConfigMap given) the Broker is in error.
	if _, err := loadBrokerDocs(kafkaBroker, config.Sources{Overrides: &config.Overrides{KafkaBootstrapServers: []string{"k:9092"}}}); err != nil {
		t.Errorf("ConfigMap only in the cluster: %v", err)
	}
	for name, tc := range map[string]struct {
		docs string
		src  config.Sources
		want string
	}{
		"missing in the cluster": {kafkaBroker, config.Sources{ConfigMapsComplete: true, Overrides: &config.Overrides{KafkaBootstrapServers: []string{"k:9092"}}},
			"kafka.yaml:10: spec.config: ConfigMap knative-eventing/kafka-broker-config not found: a Kafka-class Broker reads its bootstrap.servers and topic settings from it"},
		"another cluster than the flag's": {kafkaBroker + "---\n" + kafkaBrokerConfigDoc, config.Sources{Overrides: &config.Overrides{KafkaBootstrapServers: []string{"k:9092"}}},
			`kafka.yaml:23: data.bootstrap.servers: names k1:9092,k2:9092, but this router's Kafka cluster is k:9092 (from --kafka-bootstrap-servers): a router serves one Kafka cluster, so make them the same`},
		"bad sizes": {kafkaBroker + "---\n" + strings.NewReplacer(`"3"`, `"three"`, `factor: "1"`, `factor: "0"`).Replace(kafkaBrokerConfigDoc), config.Sources{},
			"kafka.yaml:21: data.default.topic.partitions: must be a positive whole number of partitions, got \"three\"\n" +
				"kafka.yaml:22: data.default.topic.replication.factor: must be a positive whole number of replicas, got \"0\""},
		"bad servers": {kafkaBroker + "---\n" + strings.Replace(kafkaBrokerConfigDoc, "k2:9092", "k2", 1), config.Sources{},
			`kafka.yaml:23: data.bootstrap.servers: "k2" is not host:port (a comma-separated list of Kafka brokers)`},
		"Knative's auth Secret": {kafkaBroker + "---\n" + kafkaBrokerConfigDoc + "  auth.secret.ref.name: kafka-sasl\n", config.Sources{},
			"kafka.yaml:24: data.auth.secret.ref.name: Switchyard does not read Knative's Kafka auth Secret"},
	} {
		_, err := loadBrokerDocs(tc.docs, tc.src)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", name, err, tc.want)
		}
	}
}
