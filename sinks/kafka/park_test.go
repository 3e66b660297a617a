package kafka

import (
	"testing"

	"github.com/switchyard-events/switchyard/router"
)

// A park topic's name leads back to its trigger, dots in the trigger's name included, and only the
// broker's own park topics are taken for one.
func TestParkTopicNames(t *testing.T) {
	ref := router.TriggerRef{Namespace: "team-a", Name: "orders.v2"}
	name := parkTopic("knative-broker-team-a-default", ref)
	if name != "knative-broker-team-a-default.park.team-a.orders.v2" {
		t.Fatalf("park topic %q", name)
	}
	if got, ok := parkedTriggerOf("knative-broker-team-a-default", name); !ok || got != ref {
		t.Fatalf("parkedTriggerOf(%q) = %v, %v; want %v", name, got, ok, ref)
	}
	for _, other := range []string{"knative-broker-team-a-default", "knative-broker-team-a-default-2.park.team-a.x",
		"knative-broker-team-a-default.park.", "knative-broker-team-a-default.park.team-a", "knative-broker-team-a-default.park..x"} {
		if got, ok := parkedTriggerOf("knative-broker-team-a-default", other); ok {
			t.Errorf("%q taken for the park topic of %v", other, got)
		}
	}
}
