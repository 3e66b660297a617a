package kafka

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router/config"
)

// loadSinks reads the files with KafkaSink and the Kafka cluster registered as cmd/switchyard
// registers them.
func loadSinks(t *testing.T, paths ...string) (*config.Config, error) {
	t.Helper()
	var docs []config.Document
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, config.Document{Name: filepath.Base(p), Data: data})
	}
	return config.LoadSources(config.Sources{Documents: docs, Components: []config.Component{Component{}}, Kinds: []config.KindComponent{SinkKind{}}})
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKnativeDocsExamples (issue #31, item 4): the three KafkaSink manifests of Knative's docs,
// as written there (router/config/testdata), load as KafkaSinks, with Knative's defaults.
func TestKnativeDocsExamples(t *testing.T) {
	for _, tc := range []struct{ file, mode, secret string }{
		{"knative-kafka-sink.yaml", ModeBinary, ""},
		{"knative-kafka-sink-content-mode.yaml", ModeBinary, ""},
		{"knative-kafka-sink-auth.yaml", ModeBinary, "my_secret"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			cfg, err := loadSinks(t, filepath.Join("..", "..", "router", "config", "testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			objs := cfg.Objects["KafkaSink"]
			if len(objs) != 1 || objs[0].Namespace != "default" || objs[0].Name != "my-kafka-sink" || len(cfg.Skipped) != 0 {
				t.Fatalf("objects %+v, skipped %v", objs, cfg.Skipped)
			}
			s := objs[0].Spec.(*SinkSpec)
			if s.Topic != "mytopic" || strings.Join(s.BootstrapServers, ",") != "my-cluster-kafka-bootstrap.kafka:9092" ||
				s.ContentMode != tc.mode || s.secret() != tc.secret || s.NumPartitions != nil || s.ReplicationFactor != nil {
				t.Errorf("spec %+v", s)
			}
		})
	}
}

// TestKafkaSinkRefs: a trigger's subscriber and dead-letter sink naming a KafkaSink resolve to its
// path on this router's ingress; a sink without bootstrapServers takes spec.kafka's cluster.
func TestKafkaSinkRefs(t *testing.T) {
	p := writeFile(t, "c.yaml", `apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: s}
spec:
  ingress: {addr: "127.0.0.1:8181"}
  kafka: {bootstrapServers: [kafka-0:9092]}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: shop}
---
apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: orders, namespace: shop}
spec:
  topic: orders
  contentMode: structured
  numPartitions: 3
  replicationFactor: 1
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: shop}
spec:
  broker: default
  subscriber:
    ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: orders}
  delivery:
    deadLetterSink:
      ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: orders}
`)
	cfg, err := loadSinks(t, p)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Triggers[0]
	if want := "http://127.0.0.1:8181/sinks/kafka/shop/orders"; tr.Subscriber != want || tr.Delivery.DeadLetterSink != want {
		t.Errorf("subscriber %q, dead-letter sink %q, want %q", tr.Subscriber, tr.Delivery.DeadLetterSink, want)
	}
	// A dry run's candidate (brokers and triggers only) still resolves the ref, to compare routes.
	dry, err := config.LoadSources(config.Sources{Path: p, Components: []config.Component{Component{}}, Kinds: []config.KindComponent{SinkKind{}}, RoutingOnly: true})
	if err != nil || !strings.HasSuffix(dry.Triggers[0].Subscriber, "/sinks/kafka/shop/orders") {
		t.Errorf("dry run: %v %+v", err, dry.Triggers)
	}
	s := cfg.Objects["KafkaSink"][0].Spec.(*SinkSpec)
	if s.ContentMode != ModeStructured || *s.NumPartitions != 3 || *s.ReplicationFactor != 1 {
		t.Errorf("spec %+v", s)
	}
}

// TestKafkaSinkMistakes: every mistake is reported at its file, line and field, with what to do.
func TestKafkaSinkMistakes(t *testing.T) {
	p := writeFile(t, "sink.yaml", `apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: bad, namespace: default}
spec:
  topic: "no spaces"
  bootstrapServers: [kafka-0, "kafka-1:x"]
  contentMode: Binary
  numPartitions: 0
  auth:
    secret:
      ref: {name: ../etc}
  partitions: 3
---
apiVersion: eventing.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: nowhere, namespace: default}
spec:
  bootstrapServers: []
  replicationFactor: 1
  auth: {secret: {}}
---
apiVersion: eventing.kafka.knative.dev/v1alpha1
kind: KafkaSink
metadata: {name: misspelt, namespace: default}
spec: {topic: t}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: t, namespace: default}
spec:
  broker: default
  subscriber:
    ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: KafkaSink, name: missing}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: default}
`)
	_, err := loadSinks(t, p)
	if err == nil {
		t.Fatal("bad sinks accepted")
	}
	for _, want := range []string{
		"sink.yaml:12: spec.partitions: unknown field (known: auth, bootstrapServers, contentMode, numPartitions, replicationFactor, topic)",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors\n%v\nlack %q", err, want)
		}
	}
	// Unknown fields stop a document before its checks (as for every kind): the rest without it.
	p = writeFile(t, "sink.yaml", strings.Replace(mustRead(t, p), "  partitions: 3\n", "", 1))
	_, err = loadSinks(t, p)
	for _, want := range []string{
		`sink.yaml:5: spec.topic: "no spaces" is not a Kafka topic name`,
		`sink.yaml:6: spec.bootstrapServers[0]: "kafka-0" is not host:port`,
		`sink.yaml:6: spec.bootstrapServers[1]: "kafka-1:x" is not host:port`,
		`sink.yaml:7: spec.contentMode: must be binary or structured, got "Binary"`,
		"sink.yaml:8: spec.numPartitions: must be positive, got 0",
		`sink.yaml:11: spec.auth.secret.ref.name: "../etc" is not a Secret name`,
		"sink.yaml:17: spec.topic: must be set",
		"sink.yaml:17: spec.bootstrapServers: must name at least one Kafka broker (host:port), or configure the cluster of Kafka-class brokers",
		"sink.yaml:18: spec.replicationFactor: numPartitions and replicationFactor go together",
		"sink.yaml:19: spec.auth: must name a Secret",
		"sink.yaml:21: apiVersion: eventing.kafka.knative.dev/v1alpha1 KafkaSink: Switchyard reads KafkaSink as eventing.knative.dev/v1alpha1",
		"sink.yaml:32: spec.subscriber.ref: KafkaSink default/missing is not in this configuration: define it, or use the uri of what serves it",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors\n%v\nlack %q", err, want)
		}
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSecretSecurity: the auth Secret is read as Knative lays it out, key by key.
func TestSecretSecurity(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, keys map[string]string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		for k, v := range keys {
			if err := os.WriteFile(filepath.Join(dir, name, k), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("sasl-ssl", map[string]string{"protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "ca.crt": "pem", "user": "u", "password": "p"})
	write("sasl", map[string]string{"protocol": "SASL_PLAINTEXT", "user": "u", "password": "p"})
	write("mtls", map[string]string{"protocol": "SSL", "user.crt": "c", "user.key": "k"})
	write("ssl-skip", map[string]string{"protocol": "SSL", "ca.crt": "pem", "user.skip": "true"})
	write("odd", map[string]string{"protocol": "KERBEROS"})

	sec, err := secretSecurity(dir, "sasl-ssl")
	if err != nil || sec.TLS == nil || sec.TLS.CA.Key != "ca.crt" || !sec.TLS.Cert.IsZero() || sec.SASL == nil || sec.SASL.Mechanism != "SCRAM-SHA-512" ||
		sec.SASL.User.Key != "user" || sec.SASL.Password.Name != "sasl-ssl" {
		t.Errorf("SASL_SSL: %+v %+v %v", sec.TLS, sec.SASL, err)
	}
	if sec, err := secretSecurity(dir, "sasl"); err != nil || sec.TLS != nil || sec.SASL == nil || sec.SASL.Mechanism != "PLAIN" {
		t.Errorf("SASL_PLAINTEXT: %+v %v", sec, err)
	}
	if sec, err := secretSecurity(dir, "mtls"); err != nil || sec.TLS == nil || !sec.TLS.CA.IsZero() || sec.TLS.Cert.Key != "user.crt" || sec.TLS.Key.Key != "user.key" || sec.SASL != nil {
		t.Errorf("SSL with a client certificate: %+v %v", sec, err)
	}
	if sec, err := secretSecurity(dir, "ssl-skip"); err != nil || sec.TLS == nil || !sec.TLS.Cert.IsZero() {
		t.Errorf("SSL, user.skip: %+v %v", sec, err)
	}
	if _, err := secretSecurity(dir, "odd"); err == nil || !strings.Contains(err.Error(), `protocol "KERBEROS" is not one of`) {
		t.Errorf("unknown protocol: %v", err)
	}
	if _, err := secretSecurity(dir, "absent"); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "absent", "protocol")) {
		t.Errorf("no Secret: %v, want the file named", err)
	}
}
