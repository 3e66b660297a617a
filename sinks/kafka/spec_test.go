package kafka

import (
	"testing"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/secret"
)

// load reads one SwitchyardConfig with the Kafka component registered, as cmd/switchyard does.
func load(t *testing.T, kafka string) (*config.Config, error) {
	t.Helper()
	doc := "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  kafka:\n    bootstrapServers: [k:9093]\n" + kafka
	return config.LoadSources(config.Sources{Documents: []config.Document{{Name: "s.yaml", Data: []byte(doc)}}, Components: []config.Component{Component{}}})
}

// TestSpec (issue #17): the Kafka cluster's settings, defaults and checks live here, reported by
// the loader with the file, line and path of the block.
func TestSpec(t *testing.T) {
	cfg, err := load(t, `    tls:
      ca: {file: /etc/kafka/ca.pem}
    sasl:
      mechanism: SCRAM-SHA-512
      user: {env: KAFKA_USER}
      password: {secretKeyRef: {name: kafka, key: password}}
`)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Components["kafka"].(*Spec)
	if s.Partitions != config.DefaultKafkaPartitions || s.ReplicationFactor != config.DefaultKafkaReplicationFactor || s.PartitionWindowBytes != DefaultWindowBytes {
		t.Errorf("defaults: %+v", s)
	}
	sec := s.Security()
	if sec.TLS == nil || sec.TLS.CA.File != "/etc/kafka/ca.pem" || sec.SASL == nil || sec.SASL.Mechanism != "SCRAM-SHA-512" ||
		sec.SASL.User.Env != "KAFKA_USER" || sec.SASL.Password != (secret.Ref{Name: "kafka", Key: "password"}) {
		t.Errorf("security: %+v %+v", sec.TLS, sec.SASL)
	}
	_, err = load(t, `    partitions: 0
    partitionWindowBytes: 1000
    tls:
      cert: {file: /c.pem}
    sasl:
      mechanism: GSSAPI
      user: {env: U, file: /u}
`)
	want := `s.yaml:7: spec.kafka.partitions: must be positive, got 0
s.yaml:8: spec.kafka.partitionWindowBytes: must be at least 1048576 (1 MiB), got 1000
s.yaml:10: spec.kafka.tls: cert and key go together
s.yaml:12: spec.kafka.sasl.mechanism: must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got "GSSAPI"
s.yaml:12: spec.kafka.sasl: needs user and password
s.yaml:13: spec.kafka.sasl.user: set exactly one of secretKeyRef, file, env`
	if err == nil || err.Error() != want {
		t.Errorf("errors\n got: %v\nwant: %s", err, want)
	}
}
