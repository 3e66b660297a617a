package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/memstore"
	"github.com/switchyard-events/switchyard/router/tlsfiles"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
)

// openResults returns the configured ResultStore: Cassandra when configured, else memory. close
// flushes it and must run after the router has stopped recording.
func openResults(s *config.Settings, logger *zap.Logger, reg prometheus.Registerer) (store router.ResultStore, close func() error, err error) {
	if s.Cassandra == nil {
		ms := memstore.New(s.MaxOutcomes)
		ms.SetMaxEventBytes(s.MaxResultEventBytes)
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "switchyard_results_event_bytes",
			Help: "Bytes of events the in-memory result store keeps with failed outcomes (bounded by spec.results.memory.maxEventBytes)."},
			func() float64 { return float64(ms.EventBytes()) }))
		return ms, func() error { return nil }, nil
	}
	cfg, err := cassandraConfig(s.Cassandra, logger, reg)
	if err != nil {
		return nil, nil, err
	}
	cs, err := cassandra.Open(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("cassandra result store: %w", err)
	}
	return cs, cs.Close, nil
}

// cassandraConfig maps the configuration's settings onto the store's.
func cassandraConfig(c *config.Cassandra, logger *zap.Logger, reg prometheus.Registerer) (cassandra.Config, error) {
	cfg := cassandra.Config{
		Hosts: c.Hosts, Keyspace: c.Keyspace, Replication: c.Replication, Consistency: c.Consistency,
		LocalDC: c.LocalDC, DisableHostLookup: c.DisableHostLookup, Username: c.Username, Password: c.Password,
		Retention: c.Retention, Bucket: c.Bucket, Writers: c.Writers, Buffer: c.Buffer,
		JournalDir: c.JournalDir, JournalMaxBytes: c.JournalMaxBytes, Logger: logger, Registerer: reg,
	}
	if cfg.JournalDir == "" {
		cfg.JournalDir = filepath.Join(os.TempDir(), "switchyard-results-journal")
	}
	if t := c.TLS; t != nil {
		client := tlsfiles.Client{CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
		if t.CAFile != "" {
			ca, err := os.ReadFile(t.CAFile)
			if err != nil {
				return cfg, fmt.Errorf("cassandra tls: %w", err)
			}
			client.CAPEM = ca
		}
		tc, err := tlsfiles.ClientConfig(client)
		if err != nil {
			return cfg, fmt.Errorf("cassandra tls: %w", err)
		}
		cfg.TLS = tc
	}
	return cfg, nil
}
