package filter

import (
	"slices"
	"strconv"
	"strings"
)

// Describe writes f in the terms of the manifest it came from, on one line: Knative's filter
// dialects as a reader of the Trigger would recognise them, e.g.
// `all: [exact: {type: "order.created"}, cesql: "subject LIKE 'eu-%'"]`. The console shows it
// beside a trigger's counters; nil (no filter) passes everything.
func Describe(f Filter) string {
	var b strings.Builder
	describe(&b, f)
	return b.String()
}

func describe(b *strings.Builder, f Filter) {
	kvs := func(kvs []KV) {
		kvs = slices.SortedFunc(slices.Values(kvs), func(x, y KV) int { return strings.Compare(x.Key, y.Key) })
		b.WriteByte('{')
		for i, kv := range kvs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(kv.Key)
			b.WriteString(": ")
			b.WriteString(strconv.Quote(kv.Value))
		}
		b.WriteByte('}')
	}
	list := func(name string, fs []Filter) {
		b.WriteString(name)
		b.WriteString(": [")
		for i, c := range fs {
			if i > 0 {
				b.WriteString(", ")
			}
			describe(b, c)
		}
		b.WriteByte(']')
	}
	switch f := f.(type) {
	case nil:
		b.WriteString("none: every event passes")
	case attributesFilter:
		b.WriteString("attributes: ")
		kvs(f)
	case *compareFilter:
		b.WriteString([...]string{exactMatch: "exact", prefixMatch: "prefix", suffixMatch: "suffix"}[f.kind])
		b.WriteString(": ")
		kvs(f.kvs)
	case allFilter:
		if len(f) == 0 {
			b.WriteString("none: every event passes") // how a trigger without a filter compiles
			return
		}
		list("all", f)
	case anyFilter:
		list("any", f)
	case notFilter:
		b.WriteString("not: ")
		describe(b, f.child)
	case cesqlFilter:
		b.WriteString("cesql: ")
		b.WriteString(strconv.Quote(f.text))
	default:
		b.WriteString("a filter of its own kind")
	}
}
