package kubernetes

import (
	"fmt"

	"gopkg.in/yaml.v3"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/switchyard-events/switchyard/router/config"
)

// The Knative resources this controller reads; Knative's own CRDs or ours (test/kubernetes/crds).
var (
	brokersGVR  = schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "brokers"}
	triggersGVR = schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"}
)

// The sources served, each as its versions in order of preference: the first version the cluster
// serves is watched, once it serves one (a cluster may have Knative's core sources without Knative
// Kafka's, or neither; Knative's KafkaSource CRD serves v1 beside v1beta1 since 1.10).
var (
	kafkaSourceVersions = []schema.GroupVersionResource{
		{Group: "sources.knative.dev", Version: "v1", Resource: "kafkasources"},
		{Group: "sources.knative.dev", Version: "v1beta1", Resource: "kafkasources"},
	}
	pingSourceVersions = []schema.GroupVersionResource{
		{Group: "sources.knative.dev", Version: "v1", Resource: "pingsources"},
		{Group: "sources.knative.dev", Version: "v1beta2", Resource: "pingsources"},
	}
	// Sequences and Parallels belong to no Broker: with Options.Flows every one is ours.
	sequenceVersions = []schema.GroupVersionResource{{Group: "flows.knative.dev", Version: "v1", Resource: "sequences"}}
	parallelVersions = []schema.GroupVersionResource{{Group: "flows.knative.dev", Version: "v1", Resource: "parallels"}}
)

// configMapsGVR: a Kafka-class Broker's spec.config names one (Options.KafkaClasses).
var configMapsGVR = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// isKafkaClass reports whether a broker class is one of Knative's Kafka ones.
func isKafkaClass(class string) bool { return class == "Kafka" || class == "KafkaNamespaced" }

// isFlow reports whether gvr is a Sequence or a Parallel.
func isFlow(gvr schema.GroupVersionResource) bool { return gvr.Group == "flows.knative.dev" }

// AnnotationBrokerClass chooses a Broker's implementation; ours is Options.Class.
const AnnotationBrokerClass = "eventing.knative.dev/broker.class"

// resource is one watched object this replica routes with, and what became of it in the last build.
type resource struct {
	obj  *unstructured.Unstructured
	gvr  schema.GroupVersionResource
	name string // its document name in config errors: "Trigger default/orders"
	// broker is the Broker a Trigger or source belongs to ("ns/name"), the Broker's own key for a Broker.
	broker string
	// problems are the configuration errors found in it; excluded resources do not route.
	problems []*config.Error
	// brokerFailed is set on a Trigger or KafkaSource whose Broker was excluded.
	brokerFailed bool
	// brokerGone is set on a Trigger or KafkaSource whose Broker no longer exists but whose status
	// we wrote: it is told so instead of keeping a stale Ready.
	brokerGone bool
}

func (r *resource) key() string { return r.obj.GetNamespace() + "/" + r.obj.GetName() }

func (r *resource) excluded() bool { return len(r.problems) > 0 || r.brokerFailed || r.brokerGone }

// StatusWriterAnnotation marks, in status.annotations, the broker class whose controller wrote the
// status, so a Trigger left behind by a deleted Broker can still be told by the one that served it.
const StatusWriterAnnotation = "switchyard.dev/status-writer"

// statusWrittenBy reports the class recorded in obj's status annotations.
func statusWrittenBy(obj *unstructured.Unstructured) string {
	v, _, _ := unstructured.NestedString(obj.Object, "status", "annotations", StatusWriterAnnotation)
	return v
}

// document is the resource as the loader reads it: type, the metadata that matters, and spec.
// Status and server-set metadata stay behind: they are the controllers' output, not input.
func (r *resource) document() (config.Document, error) {
	meta := map[string]any{"name": r.obj.GetName(), "namespace": r.obj.GetNamespace()}
	if a := r.obj.GetAnnotations(); len(a) > 0 {
		meta["annotations"] = a
	}
	m := map[string]any{"apiVersion": r.obj.GetAPIVersion(), "kind": r.obj.GetKind(), "metadata": meta}
	if spec, ok := r.obj.Object["spec"]; ok {
		m["spec"] = spec
	}
	// Block-style YAML: the loader's YAML parser reads it faster than the same object as JSON.
	data, err := yaml.Marshal(m)
	if err != nil {
		return config.Document{}, fmt.Errorf("%s: %w", r.name, err)
	}
	return config.Document{Name: r.name, Data: data}, nil
}

func newResource(obj *unstructured.Unstructured, gvr schema.GroupVersionResource) *resource {
	return &resource{obj: obj, gvr: gvr, name: obj.GetKind() + " " + obj.GetNamespace() + "/" + obj.GetName()}
}

// triggerBroker is the "ns/name" of the Broker a Trigger names.
func triggerBroker(obj *unstructured.Unstructured) string {
	name, _, _ := unstructured.NestedString(obj.Object, "spec", "broker")
	return obj.GetNamespace() + "/" + name
}

// sinkBroker is the "ns/name" of the Broker a source's sink refers to, or "" for another sink.
func sinkBroker(obj *unstructured.Unstructured) string {
	ref, ok, _ := unstructured.NestedStringMap(obj.Object, "spec", "sink", "ref")
	if !ok || ref["kind"] != "Broker" || ref["apiVersion"] != "eventing.knative.dev/v1" {
		return ""
	}
	ns := ref["namespace"]
	if ns == "" {
		ns = obj.GetNamespace()
	}
	return ns + "/" + ref["name"]
}
