package config

import (
	"encoding/base64"
	"encoding/json"
	"time"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/schedule"
	"gopkg.in/yaml.v3"
)

// AnnotationLateTickDeadline bounds how late a PingSource's missed tick is still sent (Go
// duration; "0s" never sends a missed tick). Without it, a missed tick is sent until the next one
// is due.
const AnnotationLateTickDeadline = "switchyard.dev/late-tick-deadline"

// PingSource sends a fixed event on a cron schedule (Knative's sources.knative.dev/v1 PingSource).
type PingSource struct {
	Namespace, Name string
	// Spec is spec.schedule as written, with the timezone; Schedule is it parsed.
	Spec     string
	Timezone string
	Schedule schedule.Schedule
	// ContentType and Data are the event's datacontenttype and data (dataBase64 decoded).
	ContentType string
	Data        []byte
	Sink        Sink
	Extensions  map[string]string
	// LateDeadline bounds how late a missed tick is still sent: 0 never; negative (the default)
	// until the next tick is due.
	LateDeadline time.Duration
	File         string
	Line         int
}

// pingSourceManifest is Knative's sources.knative.dev/v1 PingSource, as users have it.
type pingSourceManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta     `yaml:"metadata"`
	Spec     pingSourceSpec `yaml:"spec"`
	Status   yaml.Node      `yaml:"status"`
}

type pingSourceSpec struct {
	Schedule    string       `yaml:"schedule"`
	Timezone    string       `yaml:"timezone"`
	ContentType string       `yaml:"contentType"`
	Data        string       `yaml:"data"`
	DataBase64  string       `yaml:"dataBase64"`
	Sink        *destination `yaml:"sink"`
	CEOverrides *ceOverrides `yaml:"ceOverrides"`
}

type pingSourceDoc struct {
	d *doc
	m pingSourceManifest
}

// compilePingSources validates PingSource documents as Knative's webhook does, and a little more:
// a schedule that cannot tick, data that is not what contentType says.
func (l *loader) compilePingSources(brokers map[router.BrokerRef]*brokerDoc, s *Settings) []*PingSource {
	var out []*PingSource
	seen := map[router.BrokerRef]bool{}
	for i := range l.pingSrc {
		pd := &l.pingSrc[i]
		ref, ok := l.uniqueRef(pd.d, &pd.m.Metadata, "PingSource", seen)
		if !ok {
			continue
		}
		spec := &pd.m.Spec
		p := &PingSource{Namespace: ref.Namespace, Name: ref.Name, Spec: spec.Schedule, Timezone: spec.Timezone,
			ContentType: spec.ContentType, LateDeadline: -1, File: pd.d.file, Line: pd.d.line("")}
		if p.Spec == "" {
			p.Spec = "* * * * *" // Knative's default
		}
		sched, err := schedule.Parse(p.Spec, spec.Timezone)
		if err != nil {
			path := "spec.schedule"
			if spec.Timezone != "" && spec.Schedule != "" {
				if _, tzErr := time.LoadLocation(spec.Timezone); tzErr != nil {
					path = "spec.timezone"
				}
			}
			l.errAt(pd.d, path, "%v", err)
		}
		p.Schedule = sched
		switch {
		case spec.Data != "" && spec.DataBase64 != "":
			l.errAt(pd.d, "spec.dataBase64", "data and dataBase64 are exclusive: set one")
		case spec.DataBase64 != "":
			if p.Data, err = base64.StdEncoding.DecodeString(spec.DataBase64); err != nil {
				l.errAt(pd.d, "spec.dataBase64", "not base64 (standard alphabet, padded): %v", err)
			}
		case spec.Data != "":
			p.Data = []byte(spec.Data)
			if spec.ContentType == "application/json" && !json.Valid(p.Data) {
				l.errAt(pd.d, "spec.data", "contentType is application/json but data is not JSON")
			}
		}
		if spec.CEOverrides != nil {
			p.Extensions = l.extensions(pd.d, spec.CEOverrides.Extensions)
		}
		p.Sink = l.sink(pd.d, spec.Sink, ref.Namespace, brokers, s)
		if v, ok := pd.m.Metadata.Annotations[AnnotationLateTickDeadline]; ok {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				l.errAt(pd.d, "metadata.annotations", "%s must be a Go duration of 0s or more (0s: a missed tick is never sent), got %q", AnnotationLateTickDeadline, v)
			}
			p.LateDeadline = d
		}
		out = append(out, p)
	}
	return out
}
