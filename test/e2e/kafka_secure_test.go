package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestKafkaOverSASLSSL: a Kafka-class broker whose cluster takes TLS and SCRAM-SHA-512 (credentials
// from files and the environment), and a KafkaSource with Knative's net block (TLS and PLAIN from
// Secret keys under --secrets-dir), both against the real Kafka's SASL_SSL listener.
func TestKafkaOverSASLSSL(t *testing.T) {
	plain := testenv.Kafka(t)
	secure, caFile := testenv.KafkaSecure(t)
	secrets := t.TempDir()
	for key, value := range map[string]string{"ca.crt": "", "user": testenv.KafkaUser, "password": testenv.KafkaPassword, "type": "PLAIN"} {
		if key == "ca.crt" {
			b, err := os.ReadFile(caFile)
			if err != nil {
				t.Fatal(err)
			}
			value = string(b)
		}
		if err := os.MkdirAll(filepath.Join(secrets, "kafka"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(secrets, "kafka", key), []byte(value), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	passFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(passFile, []byte(testenv.KafkaPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KAFKA_TEST_USER", testenv.KafkaUser) // the router inherits it

	stamp := time.Now().UnixNano()
	brokerTopic, sourceTopic := fmt.Sprintf("e2e-secure-broker-%d", stamp), fmt.Sprintf("e2e-secure-source-%d", stamp)
	sub := newSubscriber(t, nil)
	source := strings.Replace(kafkaSourceYAML("secure", secure, sourceTopic), "  ceOverrides:", `  net:
    tls:
      enable: true
      caCert: {secretKeyRef: {name: kafka, key: ca.crt}}
    sasl:
      enable: true
      user: {secretKeyRef: {name: kafka, key: user}}
      password: {secretKeyRef: {name: kafka, key: password}}
      type: {secretKeyRef: {name: kafka, key: type}}
  ceOverrides:`, 1)
	manifests := brokerYAML("default") + kafkaBroker("durable", brokerTopic) + source +
		triggerYAML("from-source", "  broker: default\n  subscriber:\n    uri: "+sub.URL+"/source\n") +
		triggerYAML("durable", "  broker: durable\n  subscriber:\n    uri: "+sub.URL+"/broker\n")
	kafkaSpec := fmt.Sprintf(`  kafka:
    bootstrapServers: [%s]
    partitions: 2
    tls:
      ca: {file: %s}
    sasl:
      mechanism: SCRAM-SHA-512
      user: {env: KAFKA_TEST_USER}
      password: {file: %s}
`, secure, caFile, passFile)
	r := startRouterIn(t, t.TempDir(), manifests, "", kafkaSpec, "--secrets-dir", secrets)

	// The durable broker produces and consumes through TLS + SCRAM.
	if code, _, body := r.send(t, "/default/durable", binaryEvent("secure-1", "t")); code != 202 {
		t.Fatalf("send to the SASL_SSL-backed broker: %d %s\n%s", code, body, r.log.String())
	}
	// The source reads a record produced on the plaintext listener of the same cluster.
	produce(t, plain, &sarama.ProducerMessage{Topic: sourceTopic, Value: sarama.StringEncoder(`{"n":1}`)})
	got := sub.waitFor(t, 2, 30*time.Second)
	paths := map[string]bool{}
	for _, g := range got {
		paths[g.Path] = true
	}
	if !paths["/broker"] || !paths["/source"] {
		t.Errorf("deliveries reached %v, want /broker and /source", paths)
	}
}

// TestKafkaWrongCredentialsAnswer503: a Kafka-class broker that cannot log in answers 503 and
// says why in its log; nothing is accepted that was not stored.
func TestKafkaWrongCredentialsAnswer503(t *testing.T) {
	secure, caFile := testenv.KafkaSecure(t)
	t.Setenv("KAFKA_TEST_PASSWORD", "not-the-password")
	t.Setenv("KAFKA_TEST_USER", testenv.KafkaUser)
	topic := fmt.Sprintf("e2e-secure-wrong-%d", time.Now().UnixNano())
	r := startRouterIn(t, t.TempDir(), kafkaBroker("durable", topic), "", fmt.Sprintf(`  kafka:
    bootstrapServers: [%s]
    tls:
      ca: {file: %s}
    sasl:
      mechanism: PLAIN
      user: {env: KAFKA_TEST_USER}
      password: {env: KAFKA_TEST_PASSWORD}
`, secure, caFile))
	if code, _, body := r.send(t, "/default/durable", binaryEvent("w1", "t")); code != 503 {
		t.Fatalf("send with wrong Kafka credentials: %d %s, want 503", code, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(strings.ToLower(r.log.String()), "authentication") {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say authentication failed:\n%s", r.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
