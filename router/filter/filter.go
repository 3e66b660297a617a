package filter

import (
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/switchyard-events/switchyard/router"
)

// Filter decides whether an event passes. Implementations are immutable and safe for concurrent use.
type Filter interface {
	Match(e *event.Event) bool
}

// Attribute returns the named context attribute of e in its canonical string form, and whether it
// is present. Unset optional attributes and missing extensions are absent. Comparing canonical
// strings makes an extension sent as the JSON number 5 in structured mode equal to "5" sent as a
// header in binary mode.
func Attribute(e *event.Event, name string) (string, bool) {
	switch name {
	case "specversion":
		return e.SpecVersion(), true
	case "id":
		return e.ID(), true
	case "source":
		return e.Source(), true
	case "type":
		return e.Type(), true
	case "subject":
		s := e.Subject()
		return s, s != ""
	case "datacontenttype":
		s := e.DataContentType()
		return s, s != ""
	case "dataschema":
		s := e.DataSchema()
		return s, s != ""
	case "time":
		t := e.Time()
		if t.IsZero() {
			return "", false
		}
		return t.UTC().Format(time.RFC3339Nano), true
	}
	v, ok := router.Extension(e, name)
	if !ok {
		return "", false
	}
	if s, isString := v.(string); isString {
		return s, true
	}
	s, err := types.Format(v)
	if err != nil {
		return "", false
	}
	return s, true
}

// KV is one attribute and the exact value a filter requires it to have.
type KV struct{ Key, Value string }

// requirement is a condition on one attribute that every event a filter passes meets: its value
// equals one of Values (exact), or starts (prefix) or ends (suffix) with Values[0]. The Index files
// a filter under one of its requirements and evaluates it only for events that meet it.
type requirement struct {
	Key    string
	Kind   matchKind
	Values []string
}

// id names a requirement by its kind, attribute and values, to count the filters that share it.
func (r requirement) id() string {
	return string(rune('0'+r.Kind)) + r.Key + "\x00" + strings.Join(r.Values, "\x00")
}

// keyer is implemented by filters that can say what their events must meet: the Index looks such
// a filter up instead of evaluating it for every event.
type keyer interface {
	requirements() []requirement
}

func exactRequirement(kv KV) requirement {
	return requirement{Key: kv.Key, Kind: exactMatch, Values: []string{kv.Value}}
}

// attributesFilter is the legacy filter.attributes: exact, ANDed; "" matches any present value.
type attributesFilter []KV

// Attributes compiles a filter.attributes map. An empty map passes everything.
func Attributes(attrs map[string]string) Filter {
	f := make(attributesFilter, 0, len(attrs))
	for k, v := range attrs {
		f = append(f, KV{k, v})
	}
	return f
}

func (f attributesFilter) Match(e *event.Event) bool {
	for _, kv := range f {
		v, ok := Attribute(e, kv.Key)
		if !ok || (kv.Value != "" && v != kv.Value) {
			return false
		}
	}
	return true
}

func (f attributesFilter) requirements() []requirement {
	var out []requirement
	for _, kv := range f {
		if kv.Value != "" {
			out = append(out, exactRequirement(kv))
		}
	}
	return out
}

// matchKind is the comparison of the exact, prefix and suffix dialects.
type matchKind uint8

const (
	exactMatch matchKind = iota
	prefixMatch
	suffixMatch
)

type compareFilter struct {
	kind matchKind
	kvs  []KV
}

// Exact passes events whose attributes equal every given value.
func Exact(attrs map[string]string) Filter { return newCompare(exactMatch, attrs) }

// Prefix passes events whose attributes start with every given value.
func Prefix(attrs map[string]string) Filter { return newCompare(prefixMatch, attrs) }

// Suffix passes events whose attributes end with every given value.
func Suffix(attrs map[string]string) Filter { return newCompare(suffixMatch, attrs) }

func newCompare(kind matchKind, attrs map[string]string) *compareFilter {
	f := &compareFilter{kind: kind, kvs: make([]KV, 0, len(attrs))}
	for k, v := range attrs {
		f.kvs = append(f.kvs, KV{k, v})
	}
	return f
}

func (f *compareFilter) Match(e *event.Event) bool {
	for _, kv := range f.kvs {
		v, ok := Attribute(e, kv.Key)
		if !ok {
			return false
		}
		switch f.kind {
		case exactMatch:
			if v != kv.Value {
				return false
			}
		case prefixMatch:
			if !strings.HasPrefix(v, kv.Value) {
				return false
			}
		case suffixMatch:
			if !strings.HasSuffix(v, kv.Value) {
				return false
			}
		}
	}
	return true
}

func (f *compareFilter) requirements() []requirement {
	out := make([]requirement, 0, len(f.kvs))
	for _, kv := range f.kvs {
		if f.kind != exactMatch && kv.Value == "" {
			continue // every value starts and ends with ""
		}
		out = append(out, requirement{Key: kv.Key, Kind: f.kind, Values: []string{kv.Value}})
	}
	return out
}

type allFilter []Filter

// All passes events that pass every child; with no children it passes everything. The filters array
// of a trigger is an All.
func All(children ...Filter) Filter { return allFilter(children) }

func (f allFilter) Match(e *event.Event) bool {
	for _, c := range f {
		if !c.Match(e) {
			return false
		}
	}
	return true
}

func (f allFilter) requirements() []requirement {
	var out []requirement
	for _, c := range f {
		if k, ok := c.(keyer); ok {
			out = append(out, k.requirements()...)
		}
	}
	return out
}

type anyFilter []Filter

// Any passes events that pass at least one child; with no children it passes nothing.
func Any(children ...Filter) Filter { return anyFilter(children) }

func (f anyFilter) Match(e *event.Event) bool {
	for _, c := range f {
		if c.Match(e) {
			return true
		}
	}
	return false
}

type notFilter struct{ child Filter }

// Not passes events that child rejects.
func Not(child Filter) Filter { return notFilter{child} }

func (f notFilter) Match(e *event.Event) bool { return !f.child.Match(e) }

// Interface guards.
var (
	_ keyer  = attributesFilter(nil)
	_ keyer  = (*compareFilter)(nil)
	_ keyer  = allFilter(nil)
	_ Filter = anyFilter(nil)
	_ Filter = notFilter{}
)
