package main

import (
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
	"github.com/switchyard-events/switchyard/sinks/kafka"
)

// components lists every component whose settings are a block of SwitchyardConfig owned by its
// own package (see config.Component). Adding one is its package, a line here, and its docs.
func components() []config.Component {
	return []config.Component{
		cassandra.Component{}, // spec.results.cassandra: the Cassandra result store
		kafka.Component{},     // spec.kafka: the cluster of Kafka-class brokers
	}
}

// kinds lists every component that serves a kind of document of its own (see
// config.KindComponent).
func kinds() []config.KindComponent {
	return []config.KindComponent{
		cassandra.SinkKind{}, // CassandraSink: events as rows of a table (docs/cassandra-sink.md)
		kafka.SinkKind{},     // KafkaSink: events as records of a topic (docs/kafka-sink.md)
	}
}

// kafkaSpec is the Kafka cluster's settings, nil when there is none.
func kafkaSpec(cfg *config.Config) *kafka.Spec {
	s, _ := cfg.Components[kafka.Component{}.Path()].(*kafka.Spec)
	return s
}

// cassandraSpec is the Cassandra result store's settings, nil when outcomes stay in memory.
func cassandraSpec(cfg *config.Config) *cassandra.Spec {
	s, _ := cfg.Components[cassandra.Component{}.Path()].(*cassandra.Spec)
	return s
}
