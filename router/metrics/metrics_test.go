package metrics

import (
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// TestEventTypeLabelIsBounded: producers choose event types, so the event_type label is capped per
// broker, the rest counted under OverflowEventType; and a type that is not valid UTF-8 (which the
// Prometheus client panics on) is made valid.
func TestEventTypeLabelIsBounded(t *testing.T) {
	m := New()
	m.SetMaxEventTypes(3)
	for i := range 10 {
		typ := fmt.Sprintf("t%d", i)
		label := m.EventTypeLabel("ns", "b", typ)
		m.CountIngress("ns", "b", typ, 202)
		if want := map[bool]string{true: typ, false: OverflowEventType}[i < 3]; label != want {
			t.Errorf("type %s: label %q, want %q", typ, label, want)
		}
	}
	if got := m.EventTypeLabel("ns", "b", "t1"); got != "t1" {
		t.Errorf("a type given a label keeps it: got %q", got)
	}
	if got := m.EventTypeLabel("ns", "other", "t9"); got != "t9" {
		t.Errorf("the bound is per broker: got %q", got)
	}
	if n := len(family(t, m, "switchyard_broker_event_count").GetMetric()); n != 4 {
		t.Errorf("%d ingress series, want 3 types + the overflow", n)
	}
	if got := family(t, m, "switchyard_event_type_overflow_total").GetMetric()[0].GetCounter().GetValue(); got != 7 {
		t.Errorf("overflow counted %v times, want 7", got)
	}

	label := m.EventTypeLabel("ns", "utf8", "com.example.\xff")
	if !strings.HasPrefix(label, "com.example.") || strings.Contains(label, "\xff") {
		t.Fatalf("label %q", label)
	}
	m.IngressEvents.WithLabelValues("ns", "utf8", label, "202", "2xx").Inc() // panics on invalid UTF-8
	if _, err := m.Registry.Gather(); err != nil {
		t.Fatal(err)
	}
}

// A long event type gets no label value of its own (issue #36, case 4: 100 types of 1 MB each
// made /metrics answer 3.5 GB): it is counted under OverflowEventType, and the exposition stays
// small whatever the types' lengths.
func TestLongEventTypesAreNotLabels(t *testing.T) {
	m := New()
	long := strings.Repeat("t", MaxEventTypeBytes)
	if got := m.EventTypeLabel("ns", "b", long); got != long {
		t.Errorf("a type of %d bytes: label of %d bytes, want itself", len(long), len(got))
	}
	for i := range 100 {
		typ := fmt.Sprintf("%d%s", i, strings.Repeat("x", 1<<20))
		m.CountIngress("ns", "b", typ, 202)
		if got := m.EventTypeLabel("ns", "b", typ); got != OverflowEventType {
			t.Fatalf("a type of %d bytes: label of %d bytes, want %q", len(typ), len(got), OverflowEventType)
		}
	}
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var size int
	for _, f := range families {
		size += len(f.String())
	}
	if size > 1<<20 {
		t.Errorf("the metrics are %d bytes after 100 types of 1 MB", size)
	}
}

func family(t *testing.T, m *Metrics, name string) *dto.MetricFamily {
	t.Helper()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
