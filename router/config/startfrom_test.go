package config

import (
	"strings"
	"testing"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

// TestStartFromAnnotation: switchyard.dev/start-from takes latest, earliest or an RFC 3339 time,
// on Kafka-class brokers only (an in-memory broker has no history to start from).
func TestStartFromAnnotation(t *testing.T) {
	const kafka = "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  kafka: {bootstrapServers: [\"127.0.0.1:9092\"]}\n---\n"
	doc := func(class, from string) string {
		return kafka + "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  annotations: {eventing.knative.dev/broker.class: " + class + "}\n---\n" +
			"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  annotations:\n    switchyard.dev/start-from: \"" + from + "\"\nspec:\n  broker: b\n  subscriber: {uri: http://s/}\n"
	}
	load := func(d string) (*Config, error) {
		return LoadSources(Sources{Documents: []Document{{Name: "t.yaml", Data: []byte(d)}}, Components: []Component{anyBlock("kafka")}})
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for from, want := range map[string]router.StartFrom{"latest": {}, "": {}, "earliest": {Earliest: true}, "2026-12-01T00:00:00Z": {At: at}} {
		cfg, err := load(doc("Kafka", from))
		if err != nil {
			t.Fatalf("%q: %v", from, err)
		}
		if got := cfg.Triggers[0].StartFrom; got.Earliest != want.Earliest || !got.At.Equal(want.At) {
			t.Errorf("%q: %+v, want %+v", from, got, want)
		}
	}
	for d, want := range map[string]string{
		doc("Kafka", "yesterday"):     "t.yaml:18: metadata.annotations: switchyard.dev/start-from must be latest, earliest or an RFC 3339 time",
		doc("Switchyard", "earliest"): "t.yaml:18: metadata.annotations: switchyard.dev/start-from: earliest needs a Kafka-class broker",
	} {
		if _, err := load(d); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error containing %q, got %v", want, err)
		}
	}
	if _, err := load(doc("Switchyard", "latest")); err != nil {
		t.Errorf("latest on an in-memory broker: %v", err)
	}
}
