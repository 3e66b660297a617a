package config

import (
	"fmt"
	"testing"
)

// BenchmarkLoadSources10kTriggers is the cost of one controller-mode rebuild of a large cluster:
// 10,000 Trigger documents on one Broker, compiled from scratch.
func BenchmarkLoadSources10kTriggers(b *testing.B) {
	docs := []Document{{Name: "Broker ns/default", Data: []byte(broker)}}
	for i := range 10000 {
		docs = append(docs, Document{Name: fmt.Sprintf("Trigger ns/t%d", i), Data: fmt.Appendf(nil, `apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: t%d
  namespace: ns
spec:
  broker: default
  filter:
    attributes:
      type: com.example.t%d
  subscriber:
    uri: http://fn.ns.svc/
`, i, i)})
	}
	b.ReportAllocs()
	for b.Loop() {
		cfg, err := LoadSources(Sources{Documents: docs})
		if err != nil || len(cfg.Triggers) != 10000 {
			b.Fatalf("%v, %d triggers", err, len(cfg.Triggers))
		}
	}
}
