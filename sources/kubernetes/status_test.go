package kubernetes

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/switchyard-events/switchyard/router/config"
)

func trigger(name string) *resource {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
		"metadata": map[string]any{"name": name, "namespace": "ns", "generation": int64(3)},
		"spec":     map[string]any{"broker": "default"},
	}}
	r := newResource(obj, triggersGVR)
	r.broker = triggerBroker(obj)
	return r
}

func conditionsByType(t *testing.T, conds []condition) map[string]condition {
	t.Helper()
	out := map[string]condition{}
	for _, c := range conds {
		out[c.Type] = c
	}
	if conds[len(conds)-1].Type != "Ready" {
		t.Errorf("Ready is not the last condition: %+v", conds)
	}
	return out
}

func TestTriggerStatusReasons(t *testing.T) {
	c := &Controller{}
	cases := []struct {
		name       string
		problems   []*config.Error
		brokerDown bool
		failing    string // the condition besides Ready that is False, "" for none
		reason     string
	}{
		{"filter", []*config.Error{{Path: "spec.filters[0].cesql", Msg: "must be boolean"}}, false, "", "InvalidFilter"},
		{"subscriber", []*config.Error{{Path: "spec.subscriber.ref", Msg: "Service ns/x not found"}}, false, "SubscriberResolved", "SubscriberUnresolved"},
		{"dead letter", []*config.Error{{Path: "spec.delivery.deadLetterSink.ref", Msg: "gone"}}, false, "DeadLetterSinkResolved", "DeadLetterSinkUnresolved"},
		{"delivery", []*config.Error{{Path: "spec.delivery.retry", Msg: "must be >= 0"}}, false, "", "InvalidDelivery"},
		{"broker", nil, true, "BrokerReady", "BrokerNotReady"},
		// The broker's state explains more than the trigger's own problems, so it comes first.
		{"broker and filter", []*config.Error{{Path: "spec.filter.attributes", Msg: "bad"}}, true, "BrokerReady", "BrokerNotReady"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := trigger("t")
			r.problems, r.brokerFailed = tc.problems, tc.brokerDown
			st := c.triggerStatus(r, nil)
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d", st.ObservedGeneration)
			}
			conds := conditionsByType(t, st.Conditions)
			if got := conds["Ready"]; got.Status != "False" || got.Reason != tc.reason || got.Message == "" {
				t.Errorf("Ready = %+v, want False/%s with a message", got, tc.reason)
			}
			for typ, cond := range conds {
				wantFalse := typ == "Ready" || typ == tc.failing
				if (cond.Status == "False") != wantFalse {
					t.Errorf("%s = %s, want False only for Ready and %q", typ, cond.Status, tc.failing)
				}
			}
		})
	}
}

func TestTriggerStatusReady(t *testing.T) {
	c := &Controller{}
	cfg := &config.Config{Triggers: []*config.Trigger{{Subscriber: "http://fn.ns.svc.cluster.local/"}}}
	cfg.Triggers[0].Ref.Namespace, cfg.Triggers[0].Ref.Name = "ns", "t"
	st := c.triggerStatus(trigger("t"), cfg)
	if st.SubscriberURI != "http://fn.ns.svc.cluster.local/" {
		t.Errorf("subscriberUri = %q", st.SubscriberURI)
	}
	conds := conditionsByType(t, st.Conditions)
	for typ, cond := range conds {
		if cond.Status != "True" {
			t.Errorf("%s = %+v, want True", typ, cond)
		}
	}
	if conds["DeadLetterSinkResolved"].Reason != "DeadLetterSinkNotConfigured" {
		t.Errorf("DeadLetterSinkResolved without a sink: %+v", conds["DeadLetterSinkResolved"])
	}
}

func TestTransitionTimesKeptWhileStatusHolds(t *testing.T) {
	c := &Controller{ingressURL: "http://switchyard.sy.svc.cluster.local"}
	b := newResource(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
		"metadata": map[string]any{"name": "default", "namespace": "ns", "generation": int64(1)},
	}}, brokersGVR)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st := c.brokerStatus(b)
	first, err := withTransitions(&st, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if url, _, _ := unstructured.NestedString(first, "address", "url"); url != "http://switchyard.sy.svc.cluster.local/ns/default" {
		t.Errorf("address.url = %q", url)
	}
	again, _ := withTransitions(&st, first, t0.Add(time.Hour))
	if !sameStatus(first, again) {
		t.Errorf("an unchanged status is rewritten:\n%v\n%v", first, again)
	}
	b.problems = []*config.Error{{Path: "spec.delivery.retry", Msg: "must be >= 0"}}
	failed := c.brokerStatus(b)
	later, _ := withTransitions(&failed, first, t0.Add(time.Hour))
	conds, _, _ := unstructured.NestedSlice(later, "conditions")
	for _, cond := range conds {
		m := cond.(map[string]any)
		if m["status"] == "False" && m["lastTransitionTime"] != "2026-01-01T01:00:00Z" {
			t.Errorf("%s changed status but kept its transition time %v", m["type"], m["lastTransitionTime"])
		}
	}
	if _, found := later["address"]; found {
		t.Errorf("a broker that is not served still has an address: %v", later["address"])
	}
}

func TestTriggerOfADeletedBroker(t *testing.T) {
	c := &Controller{opts: Options{Class: DefaultClass}}
	r := trigger("t")
	r.brokerGone = true
	st := c.triggerStatus(r, nil)
	conds := conditionsByType(t, st.Conditions)
	if b := conds["BrokerReady"]; b.Status != "False" || b.Reason != "BrokerDoesNotExist" || b.Message != "Broker ns/default does not exist" {
		t.Errorf("BrokerReady = %+v", b)
	}
	if conds["Ready"].Reason != "BrokerDoesNotExist" {
		t.Errorf("Ready = %+v", conds["Ready"])
	}
	if st.Annotations[StatusWriterAnnotation] != DefaultClass {
		t.Errorf("status annotations %v do not name the writer", st.Annotations)
	}
}
