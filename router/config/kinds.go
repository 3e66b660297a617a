package config

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// A GitOps folder migrated from Knative holds more than Switchyard serves. Every kind is sorted
// (docs/migrating-from-knative.md has the table):
//
//   - served: Broker, Trigger, KafkaSource, PingSource, Sequence, Parallel, GitHubSource, and our
//     own kinds (parseDoc);
//   - run by Knative and left alone: sources that post to a sink (ApiServerSource,
//     SinkBinding, ContainerSource, ...) and EventType: a warning says where their sink must point;
//   - not eventing at all (Knative Services, Deployments, ConfigMaps, Secrets, ...): skipped, listed;
//   - errors: the rest of the eventing groups (Channels, Subscriptions), which
//     Switchyard does not run and which would silently stop working, and typos of served kinds.

// eventingGroups are the API groups of Knative Eventing.
var eventingGroups = []string{"eventing.knative.dev", "sources.knative.dev", "messaging.knative.dev", "flows.knative.dev", "switchyard.dev"}

// servedAPIVersions are the kinds parseDoc reads and their apiVersions, for "did you mean".
var servedAPIVersions = map[string]string{
	"Broker": knativeEventingV1, "Trigger": knativeEventingV1, "GitHubSource": knativeSourcesV1alpha1,
	"KafkaSource":      knativeSourcesV1 + ", " + knativeSourcesV1beta1 + " or " + switchyardV1alpha1,
	"SwitchyardConfig": switchyardV1alpha1, "WebhookSource": switchyardV1alpha1,
	"PingSource": knativeSourcesV1 + " or " + knativeSourcesV1beta2,
	"Sequence":   flowsV1, "Parallel": flowsV1,
}

// Skipped is a document of the configuration that Switchyard does not serve and leaves alone.
type Skipped struct {
	File       string
	Line       int
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	// Why says who runs it instead.
	Why string
}

func (s Skipped) String() string {
	name := s.Name
	if s.Namespace != "" {
		name = s.Namespace + "/" + s.Name
	}
	return fmt.Sprintf("%s:%d: %s %s %s: %s", s.File, s.Line, s.APIVersion, s.Kind, name, s.Why)
}

// sortOut handles a document of a kind parseDoc does not serve.
func (l *loader) sortOut(d *doc, top *yaml.Node, tm typeMeta) {
	group, _, _ := strings.Cut(tm.APIVersion, "/")
	if !strings.Contains(tm.APIVersion, "/") {
		group = "" // the core group: v1 ConfigMap, Secret, Service, ...
	}
	var meta struct {
		Metadata objectMeta `yaml:"metadata"`
		Spec     struct {
			Sink *destination `yaml:"sink"`
		} `yaml:"spec"`
	}
	_ = top.Decode(&meta) // best effort: only for the listing
	skip := func(why string) {
		l.skipped = append(l.skipped, Skipped{File: d.file, Line: d.line(""), APIVersion: tm.APIVersion, Kind: tm.Kind,
			Namespace: meta.Metadata.Namespace, Name: meta.Metadata.Name, Why: why})
	}
	for _, k := range l.kinds {
		// A component's kind under another apiVersion (KafkaSink written eventing.kafka.knative.dev,
		// say) would otherwise be skipped as not eventing, and its events would go nowhere.
		if k.Kind() == tm.Kind {
			l.errAt(d, "apiVersion", "%s %s: Switchyard reads %s as %s", tm.APIVersion, tm.Kind, k.Kind(), k.APIVersion())
			return
		}
	}
	eventing := false
	for _, g := range eventingGroups {
		eventing = eventing || group == g
	}
	switch {
	case !eventing:
		skip("not eventing: skipped (it stays with Kubernetes)")
		if tm.APIVersion == "v1" && tm.Kind == "ConfigMap" {
			l.keepConfigMap(d, top, meta.Metadata.Namespace, meta.Metadata.Name)
		}
	case group == "sources.knative.dev":
		why := "a Knative source: left to Knative, which runs it"
		if sink := meta.Spec.Sink; sink != nil && sink.Ref != nil && sink.Ref.Kind == "Broker" {
			ns := sink.Ref.Namespace
			if ns == "" {
				ns = meta.Metadata.Namespace
			}
			if ns == "" {
				ns = "default"
			}
			why += fmt.Sprintf("; its sink, Broker %s/%s, must resolve to Switchyard's ingress, POST /%s/%s (in Kubernetes: serve --kubernetes sets the Broker's address)", ns, sink.Ref.Name, ns, sink.Ref.Name)
		}
		skip(why)
	case group == "eventing.knative.dev" && (tm.Kind == "EventType" || tm.Kind == "EventPolicy"):
		skip("a catalog or policy entry: left to Knative; Switchyard does not read it")
	default:
		switch k := closestKind(tm.Kind); {
		case k == tm.Kind:
			l.errAt(d, "kind", "%s %s: Switchyard reads %s as %s", tm.APIVersion, tm.Kind, k, servedAPIVersions[k])
		case k != "":
			l.errAt(d, "kind", "%s %s: no such kind; did you mean %s (%s)?", tm.APIVersion, tm.Kind, k, servedAPIVersions[k])
		default:
			l.errAt(d, "kind", "%s %s: Knative eventing that Switchyard does not run, so here it would stop working: keep it on Knative or replace it (docs/migrating-from-knative.md sorts every kind)",
				tm.APIVersion, tm.Kind)
		}
	}
}

// closestKind is the served kind within two edits of kind (case aside), or "".
func closestKind(kind string) string {
	best, bestDist := "", 3
	for _, k := range slices.Sorted(maps.Keys(servedAPIVersions)) { // sorted: ties go the same way every time
		if d := editDistance(strings.ToLower(kind), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
