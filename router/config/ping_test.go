package config

import (
	"strings"
	"testing"
	"time"
)

// Knative's own PingSource sample (docs: "Creating a PingSource object"), with its sink turned
// into a Broker of the same configuration.
const knativePingSample = `apiVersion: sources.knative.dev/v1
kind: PingSource
metadata:
  name: test-ping-source
  namespace: ns
spec:
  schedule: "*/1 * * * *"
  contentType: "application/json"
  data: '{"message": "Hello world!"}'
  sink:
    ref:
      apiVersion: eventing.knative.dev/v1
      kind: Broker
      name: default
`

func TestPingSources(t *testing.T) {
	cfg, err := Parse("p.yaml", []byte(broker+"---\n"+knativePingSample))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.PingSources) != 1 {
		t.Fatalf("PingSources: %+v", cfg.PingSources)
	}
	p := cfg.PingSources[0]
	if p.Namespace != "ns" || p.Name != "test-ping-source" || p.ContentType != "application/json" ||
		string(p.Data) != `{"message": "Hello world!"}` || p.Sink.Broker == nil || p.Sink.Broker.Name != "default" || p.LateDeadline >= 0 {
		t.Errorf("compiled: %+v", p)
	}
	from := time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)
	if next := p.Schedule.Next(from); !next.Equal(from.Truncate(time.Minute).Add(time.Minute)) {
		t.Errorf("next tick after %s: %s", from, next)
	}
	if len(cfg.Skipped) != 0 {
		t.Errorf("a served PingSource was listed as skipped: %v", cfg.Skipped)
	}

	// dataBase64 is decoded; timezone applies; v1beta2 reads as v1; the annotation bounds catch-up.
	cfg, err = Parse("p.yaml", []byte(broker+"---\n"+strings.NewReplacer(
		"sources.knative.dev/v1", "sources.knative.dev/v1beta2",
		`  data: '{"message": "Hello world!"}'`, "  dataBase64: aGVsbG8=\n  timezone: Asia/Tokyo",
		`  schedule: "*/1 * * * *"`, `  schedule: "0 9 * * *"`,
		"  namespace: ns\n", "  namespace: ns\n  annotations: {switchyard.dev/late-tick-deadline: 5m}\n",
		`  contentType: "application/json"`, "  contentType: text/plain").Replace(knativePingSample)))
	if err != nil {
		t.Fatal(err)
	}
	p = cfg.PingSources[0]
	if string(p.Data) != "hello" || p.LateDeadline != 5*time.Minute {
		t.Errorf("dataBase64 / annotation: %+v", p)
	}
	if next := p.Schedule.Next(from); !next.Equal(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("09:00 in Tokyo after %s: %s", from, next)
	}

	// Mistakes name the file, the line and the field.
	for _, c := range []struct{ from, to, want string }{
		{`"*/1 * * * *"`, `"*/1 * * *"`, `p.yaml:13: spec.schedule: "*/1 * * *" is not a cron schedule`},
		{`  schedule: "*/1 * * * *"`, "  schedule: \"*/1 * * * *\"\n  timezone: Mars/Olympus", `p.yaml:14: spec.timezone: unknown timezone "Mars/Olympus"`},
		{`'{"message": "Hello world!"}'`, `'{"message": '`, "p.yaml:15: spec.data: contentType is application/json but data is not JSON"},
		{`  data: '{"message": "Hello world!"}'`, "  dataBase64: '%%%'", "p.yaml:15: spec.dataBase64: not base64"},
		{`  data: '{"message": "Hello world!"}'`, "  data: '{}'\n  dataBase64: e30=", "spec.dataBase64: data and dataBase64 are exclusive"},
		{"  sink:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n", "", "spec.sink: must be set"},
		{"      name: default\n", "      name: nowhere\n", "spec.sink.ref: broker ns/nowhere is not defined"},
		{"  namespace: ns\n", "  namespace: ns\n  annotations: {switchyard.dev/late-tick-deadline: soon}\n", "switchyard.dev/late-tick-deadline must be a Go duration"},
		{"  contentType:", "  contentTyp:", "contentTyp"},
	} {
		doc := strings.Replace(knativePingSample, c.from, c.to, 1)
		if doc == knativePingSample {
			t.Fatalf("case %q: nothing replaced", c.want)
		}
		_, err := Parse("p.yaml", []byte(broker+"---\n"+doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
}
