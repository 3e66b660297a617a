package main

import (
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
)

// components lists every component whose settings are a block of SwitchyardConfig owned by its
// own package (see config.Component). Adding one is its package, a line here, and its docs.
func components() []config.Component {
	return []config.Component{
		cassandra.Component{}, // spec.results.cassandra: the Cassandra result store
	}
}

// cassandraSpec is the Cassandra result store's settings, nil when outcomes stay in memory.
func cassandraSpec(cfg *config.Config) *cassandra.Spec {
	s, _ := cfg.Components[cassandra.Component{}.Path()].(*cassandra.Spec)
	return s
}
