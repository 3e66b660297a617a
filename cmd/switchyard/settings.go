package main

import (
	"flag"
	"os"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router/config"
)

// settingsFlags are the flags that override the configuration's settings. serve, validate and
// migrate take them alike, each with its SWITCHYARD_* variable, and load through the same function,
// so that validate judges exactly the configuration serve would run.
type settingsFlags struct {
	config                                                             string
	addr, adminAddr, logFormat, logLevel, cassandraHosts, kafkaServers string
	grace                                                              time.Duration
	// set are the flags given on the command line or by their variables.
	set map[string]bool
}

func (f *settingsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "configuration file or directory of YAML manifests (env SWITCHYARD_CONFIG)")
	fs.StringVar(&f.addr, "addr", config.DefaultAddr, "broker ingress listen address (env SWITCHYARD_ADDR)")
	fs.StringVar(&f.adminAddr, "admin-addr", config.DefaultAdminAddr, "admin listen address: probes, metrics, admin API (env SWITCHYARD_ADMIN_ADDR)")
	fs.DurationVar(&f.grace, "shutdown-grace", config.DefaultShutdownGrace, "how long SIGTERM waits for in-flight deliveries (env SWITCHYARD_SHUTDOWN_GRACE)")
	fs.StringVar(&f.logFormat, "log-format", "json", "json or console (env SWITCHYARD_LOG_FORMAT)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error (env SWITCHYARD_LOG_LEVEL)")
	fs.StringVar(&f.kafkaServers, "kafka-bootstrap-servers", "", "comma-separated Kafka brokers for Kafka-class brokers; overrides the config (env SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS)")
	fs.StringVar(&f.cassandraHosts, "cassandra-hosts", "", "comma-separated Cassandra hosts for the result store; overrides the config (env SWITCHYARD_CASSANDRA_HOSTS)")
}

// overrides are the settings the flags that were set give.
func (f *settingsFlags) overrides() *config.Overrides {
	o := &config.Overrides{}
	if f.set["addr"] {
		o.Addr = &f.addr
	}
	if f.set["admin-addr"] {
		o.AdminAddr = &f.adminAddr
	}
	if f.set["shutdown-grace"] {
		o.ShutdownGrace = &f.grace
	}
	if f.set["log-format"] {
		o.LogFormat = &f.logFormat
	}
	if f.set["log-level"] {
		o.LogLevel = &f.logLevel
	}
	if f.set["kafka-bootstrap-servers"] && f.kafkaServers != "" {
		o.KafkaBootstrapServers = strings.Split(f.kafkaServers, ",")
	}
	if f.set["cassandra-hosts"] && f.cassandraHosts != "" {
		o.CassandraHosts = strings.Split(f.cassandraHosts, ",")
	}
	return o
}

// load builds the effective configuration: src's files and documents (--config when src names no
// path), then the flags and variables over their settings, checked together; then, in a Kubernetes
// pod, the admin listener's default widened (see inPod). serve (at start-up and on every reload),
// controller mode, validate and migrate all load through here.
func (f *settingsFlags) load(src config.Sources) (*config.Config, error) {
	if src.Path == "" {
		src.Path = f.config
	}
	src.Overrides = f.overrides()
	src.Components = components()
	src.Kinds = kinds()
	cfg, err := config.LoadSources(src)
	if err != nil {
		return nil, err
	}
	inPod(f, &cfg.Settings)
	return cfg, nil
}

// inPod widens the admin listener's default from loopback to every interface when running in a
// Kubernetes pod (KUBERNETES_SERVICE_HOST is set), where the kubelet's probes come from outside
// the container. An address set by flag, environment or configuration is kept.
func inPod(f *settingsFlags, s *config.Settings) {
	if os.Getenv("KUBERNETES_SERVICE_HOST") != "" && !f.set["admin-addr"] && s.AdminAddr == config.DefaultAdminAddr {
		s.AdminAddr = ":9090"
	}
}
