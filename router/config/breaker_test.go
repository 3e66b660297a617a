package config

import (
	"strings"
	"testing"
	"time"
)

// TestCircuitBreakerAnnotation: switchyard.dev/circuit-breaker takes failures and cooldown, each
// with its default; mistakes name the file, line and what is wrong.
func TestCircuitBreakerAnnotation(t *testing.T) {
	doc := func(v string) string {
		return "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n---\n" +
			"apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  annotations:\n    switchyard.dev/circuit-breaker: \"" + v + "\"\nspec:\n  broker: b\n  subscriber: {uri: http://s/}\n"
	}
	for v, want := range map[string]CircuitBreaker{
		"on":                       {5, 30 * time.Second},
		"failures=3":               {3, 30 * time.Second},
		"cooldown=1m":              {5, time.Minute},
		"failures=10, cooldown=5s": {10, 5 * time.Second},
	} {
		cfg, err := Parse("t.yaml", []byte(doc(v)))
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if got := cfg.Triggers[0].CircuitBreaker; got == nil || *got != want {
			t.Errorf("%q: %+v, want %+v", v, got, want)
		}
	}
	for v, want := range map[string]string{
		"failures=0": "t.yaml:10: metadata.annotations: switchyard.dev/circuit-breaker: failures must be a whole number of attempts from 1",
		"cooldown=x": "cooldown must be a duration above 0",
		"ratio=0.5":  `takes failures=N and cooldown=DURATION (failures=5,cooldown=30s), got "ratio=0.5"`,
	} {
		if _, err := Parse("t.yaml", []byte(doc(v))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: want an error containing %q, got %v", v, want, err)
		}
	}
	cfg, err := Parse("t.yaml", []byte(strings.Replace(doc("on"), "    switchyard.dev/circuit-breaker: \"on\"\n", "    x: y\n", 1)))
	if err != nil || cfg.Triggers[0].CircuitBreaker != nil {
		t.Errorf("without the annotation: %v %+v", err, cfg.Triggers[0].CircuitBreaker)
	}
}
