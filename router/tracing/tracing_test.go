package tracing

import (
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
)

func TestValidTraceparent(t *testing.T) {
	for _, tc := range []struct {
		v  string
		ok bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", true},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", false}, // version 00 has no more fields
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", false},
		{"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false}, // upper case
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", false},
		{"00-" + strings.Repeat("a", 3<<20), false},
		{"", false},
	} {
		if got := ValidTraceparent(tc.v); got != tc.ok {
			t.Errorf("%.70q: %v, want %v", tc.v, got, tc.ok)
		}
	}
}

// The trace id an outcome keeps is a copy, and an invalid traceparent gives none (issue #36,
// case 3: a 3 MiB traceparent stayed alive through the 32-byte substring every outcome kept).
func TestTraceIDAndInvalidTraceContext(t *testing.T) {
	e := event.New()
	e.SetExtension("traceparent", "00-"+strings.Repeat("a", 32)+"-"+strings.Repeat("b", 3<<20))
	e.SetExtension("tracestate", "k=v")
	if id := TraceID(&e); id != "" {
		t.Errorf("trace id %q from an invalid traceparent", id)
	}
	DropInvalidTraceContext(&e)
	if _, ok := e.Extensions()["traceparent"]; ok {
		t.Error("invalid traceparent kept")
	}
	if _, ok := e.Extensions()["tracestate"]; ok {
		t.Error("tracestate kept beside an invalid traceparent")
	}
	valid := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	e.SetExtension("traceparent", valid)
	DropInvalidTraceContext(&e)
	if id := TraceID(&e); id != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %q", id)
	}
}
