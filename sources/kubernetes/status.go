package kubernetes

import (
	"reflect"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/config"
)

// condition is Knative's apis.Condition as it appears in a resource's status.
type condition struct {
	Type               string `json:"type"`
	Status             string `json:"status"`
	Severity           string `json:"severity,omitempty"`
	LastTransitionTime string `json:"lastTransitionTime,omitempty"`
	Reason             string `json:"reason,omitempty"`
	Message            string `json:"message,omitempty"`
}

type addressable struct {
	Name string `json:"name,omitempty"`
	URL  string `json:"url"`
}

// The status shapes written back: the fields Knative's printer columns and clients read.
type brokerStatus struct {
	ObservedGeneration int64         `json:"observedGeneration,omitempty"`
	Conditions         []condition   `json:"conditions"`
	Address            *addressable  `json:"address,omitempty"`
	Addresses          []addressable `json:"addresses,omitempty"`
}

type triggerStatus struct {
	ObservedGeneration int64             `json:"observedGeneration,omitempty"`
	Annotations        map[string]string `json:"annotations,omitempty"`
	Conditions         []condition       `json:"conditions"`
	SubscriberURI      string            `json:"subscriberUri,omitempty"`
	DeadLetterSinkURI  string            `json:"deadLetterSinkUri,omitempty"`
}

type sourceStatus struct {
	ObservedGeneration int64             `json:"observedGeneration,omitempty"`
	Annotations        map[string]string `json:"annotations,omitempty"`
	Conditions         []condition       `json:"conditions"`
	SinkURI            string            `json:"sinkUri,omitempty"`
}

// flowStatus is a Sequence's or Parallel's: where it takes events, and whether it runs.
type flowStatus struct {
	ObservedGeneration int64             `json:"observedGeneration,omitempty"`
	Annotations        map[string]string `json:"annotations,omitempty"`
	Conditions         []condition       `json:"conditions"`
	Address            *addressable      `json:"address,omitempty"`
}

func ok(typ string) condition { return condition{Type: typ, Status: "True"} }

func failed(typ, reason, msg string) condition {
	return condition{Type: typ, Status: "False", Reason: reason, Message: msg}
}

// readyWith appends the Ready condition summing up the others and problems of no other condition:
// True when all are fine, otherwise False with the first failure's reason and message.
func readyWith(conds []condition, problems []*config.Error) []condition {
	for _, c := range conds {
		if c.Status != "True" {
			return append(conds, failed("Ready", c.Reason, c.Message))
		}
	}
	return append(conds, conditionFor("Ready", problems))
}

// describe joins a resource's problems into one message a person can act on.
func describe(problems []*config.Error) string {
	parts := make([]string, len(problems))
	for i, p := range problems {
		if p.Path == "" {
			parts[i] = p.Msg
		} else {
			parts[i] = p.Path + ": " + p.Msg
		}
	}
	return strings.Join(parts, "; ")
}

// reasonFor names, in Knative's CamelCase style, what kind of mistake a problem is.
func reasonFor(p *config.Error) string {
	switch path := p.Path; {
	case strings.HasPrefix(path, "spec.subscriber"):
		return "SubscriberUnresolved"
	case strings.HasPrefix(path, "spec.delivery.deadLetterSink"):
		return "DeadLetterSinkUnresolved"
	case strings.HasPrefix(path, "spec.delivery"):
		return "InvalidDelivery"
	case strings.HasPrefix(path, "spec.filter"):
		return "InvalidFilter"
	case strings.HasPrefix(path, "spec.sink"):
		return "SinkUnresolved"
	case strings.HasPrefix(path, "spec.config"):
		return "InvalidConfig" // a Kafka-class Broker's ConfigMap: missing, or a bad value in it
	case path == "metadata.name":
		return "Conflict"
	case strings.HasPrefix(path, "metadata.annotations"):
		return "InvalidAnnotation"
	default:
		return "InvalidSpec"
	}
}

// problemsUnder returns the problems whose path starts with prefix, and the rest.
func problemsUnder(problems []*config.Error, prefix string) (under, rest []*config.Error) {
	for _, p := range problems {
		if strings.HasPrefix(p.Path, prefix) {
			under = append(under, p)
		} else {
			rest = append(rest, p)
		}
	}
	return under, rest
}

// conditionFor is True without problems, else False with the first one's reason and all of them.
func conditionFor(typ string, problems []*config.Error) condition {
	if len(problems) == 0 {
		return ok(typ)
	}
	return failed(typ, reasonFor(problems[0]), describe(problems))
}

func (c *Controller) brokerStatus(r *resource) brokerStatus {
	st := brokerStatus{ObservedGeneration: r.obj.GetGeneration()}
	if r.excluded() {
		msg := describe(r.problems)
		st.Conditions = readyWith([]condition{
			conditionFor("IngressReady", r.problems),
			failed("Addressable", "NotServed", "the broker is not served: "+msg),
		}, nil)
		return st
	}
	url := c.ingressURL + "/" + r.obj.GetNamespace() + "/" + r.obj.GetName()
	st.Address = &addressable{Name: "http", URL: url}
	st.Addresses = []addressable{{Name: "http", URL: url}}
	st.Conditions = readyWith([]condition{ok("IngressReady"), ok("Addressable")}, nil)
	return st
}

func (c *Controller) triggerStatus(r *resource, cfg *config.Config) triggerStatus {
	st := triggerStatus{ObservedGeneration: r.obj.GetGeneration(), Annotations: map[string]string{StatusWriterAnnotation: c.opts.Class}}
	brokerReady := brokerCondition(r, "BrokerReady", "BrokerNotReady")
	subscriber, rest := problemsUnder(r.problems, "spec.subscriber")
	deadLetter, rest := problemsUnder(rest, "spec.delivery.deadLetterSink")
	dls := conditionFor("DeadLetterSinkResolved", deadLetter)
	if tr := findTrigger(cfg, r); tr != nil {
		st.SubscriberURI = tr.Subscriber
		st.DeadLetterSinkURI = tr.Delivery.DeadLetterSink
		if st.DeadLetterSinkURI == "" {
			dls.Reason = "DeadLetterSinkNotConfigured"
		}
	}
	conds := []condition{brokerReady, dls, ok("DependencyReady"), conditionFor("SubscriberResolved", subscriber)}
	// Filter and delivery problems have no condition of their own in Knative: they show on Ready,
	// where `kubectl get triggers` reads them.
	st.Conditions = readyWith(conds, rest)
	return st
}

// brokerCondition is condition typ of a resource that depends on its Broker: False when the Broker
// is gone or not ready (with notReady as the reason), else True.
func brokerCondition(r *resource, typ, notReady string) condition {
	switch {
	case r.brokerGone:
		return failed(typ, "BrokerDoesNotExist", "Broker "+r.broker+" does not exist")
	case r.brokerFailed:
		return failed(typ, notReady, "Broker "+r.broker+" is not ready; see its status")
	}
	return ok(typ)
}

func (c *Controller) sourceStatus(r *resource) sourceStatus {
	st := sourceStatus{ObservedGeneration: r.obj.GetGeneration(), Annotations: map[string]string{StatusWriterAnnotation: c.opts.Class}}
	sink := brokerCondition(r, "SinkProvided", "SinkNotReady")
	switch {
	case sink.Status != "True": // the Broker explains it
	case len(r.problems) > 0:
		sink = conditionFor("SinkProvided", r.problems)
	default:
		st.SinkURI = c.ingressURL + "/" + r.broker
	}
	st.Conditions = readyWith([]condition{sink}, nil)
	return st
}

func (c *Controller) flowStatus(r *resource) flowStatus {
	st := flowStatus{ObservedGeneration: r.obj.GetGeneration(), Annotations: map[string]string{StatusWriterAnnotation: c.opts.Class}}
	reachable := conditionFor("Addressable", r.problems)
	if reachable.Status == "True" {
		entry := config.SequenceBroker(r.obj.GetName(), 0)
		if r.obj.GetKind() == "Parallel" {
			entry = config.ParallelBroker(r.obj.GetName())
		}
		st.Address = &addressable{URL: c.ingressURL + "/" + r.obj.GetNamespace() + "/" + entry}
	}
	st.Conditions = readyWith([]condition{reachable}, nil)
	return st
}

func findTrigger(cfg *config.Config, r *resource) *config.Trigger {
	if cfg == nil {
		return nil
	}
	ref := router.TriggerRef{Namespace: r.obj.GetNamespace(), Name: r.obj.GetName()}
	for _, t := range cfg.Triggers {
		if t.Ref == ref {
			return t
		}
	}
	return nil
}

// withTransitions returns status (a pointer to a struct above) as an unstructured map, keeping each condition's
// lastTransitionTime from old when its status did not change, as Knative does.
func withTransitions(status any, old map[string]any, now time.Time) (map[string]any, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(status)
	if err != nil {
		return nil, err
	}
	before := map[string]map[string]any{}
	oldConds, _, _ := unstructured.NestedSlice(old, "conditions")
	for _, c := range oldConds {
		if cm, ok := c.(map[string]any); ok {
			if t, ok := cm["type"].(string); ok {
				before[t] = cm
			}
		}
	}
	conds, _, _ := unstructured.NestedSlice(m, "conditions")
	for i, c := range conds {
		cm := c.(map[string]any)
		prev := before[cm["type"].(string)]
		if prev != nil && prev["status"] == cm["status"] && prev["lastTransitionTime"] != nil {
			cm["lastTransitionTime"] = prev["lastTransitionTime"]
		} else {
			cm["lastTransitionTime"] = now.UTC().Format(time.RFC3339)
		}
		conds[i] = cm
	}
	if err := unstructured.SetNestedSlice(m, conds, "conditions"); err != nil {
		return nil, err
	}
	return m, nil
}

// sameStatus tells whether writing next would change nothing.
func sameStatus(old, next map[string]any) bool { return reflect.DeepEqual(old, next) }
