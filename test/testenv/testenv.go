// Package testenv tells integration tests where the real Kafka and Cassandra servers are.
//
// `make test` starts both with test/infra/infra.sh and exports SWITCHYARD_TEST_KAFKA and
// SWITCHYARD_TEST_CASSANDRA. Without them a test skips on a laptop, but fails when CI is set, so a CI
// run can never go green by skipping the real servers.
package testenv

import (
	"os"
	"testing"
)

const startHint = "start real servers with `make infra-up` (or point the variable at your own server)"

// Kafka returns the bootstrap address of the test Kafka broker.
func Kafka(t testing.TB) string { return need(t, "SWITCHYARD_TEST_KAFKA") }

// Cassandra returns the contact point of the test Cassandra node.
func Cassandra(t testing.TB) string { return need(t, "SWITCHYARD_TEST_CASSANDRA") }

func need(t testing.TB, name string) string {
	t.Helper()
	if v := os.Getenv(name); v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set but CI is: integration tests must run against real servers; %s", name, startHint)
	}
	t.Skipf("%s is not set: %s, then export %s=127.0.0.1:<port>", name, startHint, name)
	return ""
}

// KubeAssets returns the folder with the etcd and kube-apiserver binaries envtest starts
// (KUBEBUILDER_ASSETS; `make test` builds them with test/infra/kube-tools.sh).
func KubeAssets(t testing.TB) string {
	t.Helper()
	if v := os.Getenv("KUBEBUILDER_ASSETS"); v != "" {
		return v
	}
	if os.Getenv("CI") != "" {
		t.Fatal("KUBEBUILDER_ASSETS is not set but CI is: controller tests must run against a real API server; `make test` sets it")
	}
	t.Skip("KUBEBUILDER_ASSETS is not set: export KUBEBUILDER_ASSETS=$(test/infra/kube-tools.sh)")
	return ""
}

// The test Kafka's secure listener (SASL_SSL) takes this user, under PLAIN and SCRAM-SHA-512
// (test/infra/kafka/server.properties).
const (
	KafkaUser     = "switchyard"
	KafkaPassword = "switchyard-secret"
)

// KafkaSecure returns the SASL_SSL address of the test Kafka broker and the PEM file of the CA
// its certificate is checked against.
func KafkaSecure(t testing.TB) (addr, caFile string) {
	return need(t, "SWITCHYARD_TEST_KAFKA_SECURE"), need(t, "SWITCHYARD_TEST_KAFKA_CA")
}
