package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router/config"
)

// TestServeAndValidateAgree (issue #17): flags and SWITCHYARD_* variables are part of the
// configuration that is checked, in serve and validate alike. Before, they were applied after the
// check, so `serve --config knative.yaml --kafka-bootstrap-servers ...` on plain Knative manifests
// exited with "broker class Kafka needs a Kafka cluster" although the flag gives it one.
func TestServeAndValidateAgree(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kafkaBroker := "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: durable\n  namespace: default\n  annotations: {eventing.knative.dev/broker.class: Kafka}\n"
	knative := write("knative.yaml", kafkaBroker)
	withCluster := write("with-cluster.yaml", "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  kafka: {bootstrapServers: [\"file-kafka:9092\"]}\n---\n"+kafkaBroker)
	memory := write("memory.yaml", "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: default}\n")

	cases := []struct {
		name      string
		args      []string
		env       map[string]string
		valid     bool
		kafka     string // the effective bootstrap servers, when valid
		adminAddr string
		errText   string
	}{
		{name: "Kafka broker, no cluster anywhere", args: []string{"--config", knative}, errText: "broker class Kafka needs a Kafka cluster"},
		{name: "Kafka broker, cluster from the flag", args: []string{"--config", knative, "--kafka-bootstrap-servers", "127.0.0.1:9092"}, valid: true, kafka: "127.0.0.1:9092"},
		{name: "Kafka broker, cluster from the variable", args: []string{"--config", knative}, env: map[string]string{"SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS": "env-kafka:9092"}, valid: true, kafka: "env-kafka:9092"},
		{name: "the flag wins over the variable", args: []string{"--config", knative, "--kafka-bootstrap-servers", "flag-kafka:9092"}, env: map[string]string{"SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS": "env-kafka:9092"}, valid: true, kafka: "flag-kafka:9092"},
		{name: "the flag wins over the file", args: []string{"--config", withCluster, "--kafka-bootstrap-servers", "flag-kafka:9092"}, valid: true, kafka: "flag-kafka:9092"},
		{name: "the file alone", args: []string{"--config", withCluster}, valid: true, kafka: "file-kafka:9092"},
		{name: "a bad address flag is an error of the effective configuration", args: []string{"--config", memory, "--admin-addr", "nope"}, errText: "command line: --admin-addr: \"nope\" is not host:port"},
		{name: "a bad log level from the variable", args: []string{"--config", memory}, env: map[string]string{"SWITCHYARD_LOG_LEVEL": "loud"}, errText: "--log-level: \"loud\" is not debug, info, warn or error"},
		{name: "admin address from the flag", args: []string{"--config", memory, "--admin-addr", "127.0.0.1:9999"}, valid: true, adminAddr: "127.0.0.1:9999"},
		{name: "loopback admin by default", args: []string{"--config", memory}, valid: true, adminAddr: "127.0.0.1:9090"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"SWITCHYARD_KAFKA_BOOTSTRAP_SERVERS", "SWITCHYARD_LOG_LEVEL", "KUBERNETES_SERVICE_HOST"} {
				t.Setenv(k, "")
				os.Unsetenv(k)
			}
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			// serve's path: its flags, then the loader it starts (and reloads) with.
			f, code := parseServeFlags(c.args, io.Discard, io.Discard)
			if f == nil {
				t.Fatalf("serve flags: exit %d", code)
			}
			cfg, serveErr := f.load(config.Sources{})
			// validate's path, as a user runs it.
			var out, errOut bytes.Buffer
			validateCode := runValidate(c.args, &out, &errOut)
			if (serveErr == nil) != (validateCode == 0) {
				t.Fatalf("serve and validate disagree: serve %v, validate exit %d %s", serveErr, validateCode, errOut.String())
			}
			if (serveErr == nil) != c.valid {
				t.Fatalf("valid %v, want %v: %v", serveErr == nil, c.valid, serveErr)
			}
			if !c.valid {
				if !strings.Contains(serveErr.Error(), c.errText) || !strings.Contains(errOut.String(), c.errText) {
					t.Fatalf("serve %q / validate %q, want %q in both", serveErr, errOut.String(), c.errText)
				}
				return
			}
			if k := kafkaSpec(cfg); c.kafka != "" && (k == nil || strings.Join(k.BootstrapServers, ",") != c.kafka) {
				t.Errorf("kafka %+v, want %s", k, c.kafka)
			}
			if c.adminAddr != "" && cfg.Settings.AdminAddr != c.adminAddr {
				t.Errorf("admin address %s, want %s", cfg.Settings.AdminAddr, c.adminAddr)
			}
		})
	}
}
