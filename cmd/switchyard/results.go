package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
)

// openResults returns the configured ResultStore: Cassandra when configured, else memory. close
// flushes it and must run after the router has stopped recording.
func openResults(cfg *config.Config, logger *zap.Logger, reg prometheus.Registerer) (store router.ResultStore, close func() error, err error) {
	spec := cassandraSpec(cfg)
	if spec == nil {
		s := &cfg.Settings
		ms := memstore.New(s.MaxOutcomes)
		ms.SetMaxEventBytes(s.MaxResultEventBytes)
		ms.SetMaxOutcomeBytes(s.MaxResultOutcomeBytes)
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_results_event_bytes",
			Help: "Bytes of events the in-memory result store keeps with failed outcomes (bounded by spec.results.memory.maxEventBytes)."},
			func() float64 { return float64(ms.EventBytes()) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_results_outcome_bytes",
			Help: "Bytes of the outcome records the in-memory result store keeps (bounded by spec.results.memory.maxOutcomeBytes)."},
			func() float64 { return float64(ms.OutcomeBytes()) }))
		return ms, func() error { return nil }, nil
	}
	c, err := spec.Config(logger, reg)
	if err != nil {
		return nil, nil, err
	}
	cs, err := cassandra.Open(c)
	if err != nil {
		return nil, nil, fmt.Errorf("cassandra result store: %w", err)
	}
	return cs, cs.Close, nil
}
