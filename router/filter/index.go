package filter

import (
	"slices"
	"strings"

	"github.com/cloudevents/sdk-go/v2/event"
)

// Index finds the filters an event passes. A filter that says what its events must meet (an exact
// value, one of several values, a prefix or a suffix of one attribute: see requirement) is filed
// under that attribute: exact values in a map, prefixes and suffixes in radix trees. An event then
// meets only the filters filed under its own values, the prefixes its values start with and the
// suffixes they end with, plus the filters that could not be filed. So 10,000 triggers cost a map
// lookup and a walk down a tree no deeper than the value is long, not 10,000 evaluations. Every
// candidate is still evaluated in full: filing only has to be a necessary condition.
type Index struct {
	filters []Filter
	keys    []indexedAttr
	scan    []int32 // filters with no requirement the index can use: always evaluated
	// multi marks the filters filed more than once (an `any`, under one requirement per child):
	// an event that meets several of them must still report the filter once. nil when none is.
	multi []bool
}

type indexedAttr struct {
	name     string
	byValue  map[string][]int32
	prefixes *affixNode // nil when no filter is filed under a prefix of this attribute
	suffixes *affixNode // suffixes are filed reversed
}

// preferredKeys are tried in order when a filter has several requirements: type is the most
// selective attribute in practice, then source and subject.
var preferredKeys = [...]string{"type", "source", "subject"}

// NewIndex indexes filters; Match reports positions in this slice.
func NewIndex(filters []Filter) *Index {
	ix := &Index{filters: filters}
	sharedBy := map[string]int{} // how many filters have each requirement
	for _, f := range filters {
		for _, r := range candidateRequirements(f) {
			sharedBy[r.id()]++
		}
	}
	for i, f := range filters {
		pos := int32(i)
		rs := filings(f, sharedBy)
		if len(rs) == 0 {
			ix.scan = append(ix.scan, pos)
			continue
		}
		if len(rs) > 1 {
			if ix.multi == nil {
				ix.multi = make([]bool, len(filters))
			}
			ix.multi[pos] = true
		}
		for _, r := range rs {
			ix.file(r, pos)
		}
	}
	return ix
}

// filings are the requirements f is filed under, one per way of passing it: an event that passes
// f meets at least one. A filter that requires something of one attribute (the dialects,
// `filter.attributes`, `all` of them, a CESQL AND chain) has one, chosen by indexRequirement. An
// `any` has one per child and cannot be filed when one of its children cannot; a CESQL OR chain
// has one per disjunct; an `all` that requires nothing itself takes the filings of the child that
// has the fewest. None (nil): f is evaluated for every event.
func filings(f Filter, sharedBy map[string]int) []requirement {
	switch f := f.(type) {
	case anyFilter:
		var out []requirement
		for _, c := range f {
			rs := filings(c, sharedBy)
			if len(rs) == 0 {
				return nil
			}
			out = append(out, rs...)
		}
		return out
	case allFilter:
		if r, ok := indexRequirement(f.requirements(), sharedBy); ok {
			return []requirement{r}
		}
		var fewest []requirement
		for _, c := range f {
			if rs := filings(c, sharedBy); len(rs) > 0 && (fewest == nil || len(rs) < len(fewest)) {
				fewest = rs
			}
		}
		return fewest
	case cesqlFilter:
		if len(f.alts) > 0 {
			return f.alts
		}
	}
	if k, ok := f.(keyer); ok {
		if r, ok := indexRequirement(k.requirements(), sharedBy); ok {
			return []requirement{r}
		}
	}
	return nil
}

// candidateRequirements are the requirements filings may choose from for f, counted across all
// filters to find the least shared.
func candidateRequirements(f Filter) []requirement {
	switch f := f.(type) {
	case anyFilter:
		var out []requirement
		for _, c := range f {
			out = append(out, candidateRequirements(c)...)
		}
		return out
	case allFilter:
		out := f.requirements()
		for _, c := range f {
			if _, isKeyer := c.(keyer); !isKeyer {
				out = append(out, candidateRequirements(c)...)
			}
		}
		return out
	case cesqlFilter:
		if len(f.alts) > 0 {
			return f.alts
		}
	}
	if k, ok := f.(keyer); ok {
		return k.requirements()
	}
	return nil
}

// file files the filter at pos under r.
func (ix *Index) file(r requirement, pos int32) {
	a := ix.attr(r.Key)
	switch r.Kind {
	case exactMatch:
		for j, v := range r.Values {
			if !slices.Contains(r.Values[:j], v) { // IN ('a', 'a') files it once
				a.byValue[v] = append(a.byValue[v], pos)
			}
		}
	case prefixMatch:
		if a.prefixes == nil {
			a.prefixes = &affixNode{}
		}
		a.prefixes.insert(r.Values[0], pos)
	case suffixMatch:
		if a.suffixes == nil {
			a.suffixes = &affixNode{}
		}
		a.suffixes.insert(reverse(r.Values[0]), pos)
	}
}

func (ix *Index) attr(name string) *indexedAttr {
	for i := range ix.keys {
		if ix.keys[i].name == name {
			return &ix.keys[i]
		}
	}
	ix.keys = append(ix.keys, indexedAttr{name: name, byValue: map[string][]int32{}})
	return &ix.keys[len(ix.keys)-1]
}

// indexRequirement chooses the requirement to file a filter under, of those it has: the one the
// fewest filters share, since every filter filed under a value is evaluated for each event that has
// it (an `all` of a source every trigger names and a type prefix of its own is filed under the
// prefix, not beside 10,000 others under the source). Among equally shared ones: an exact value
// before a set of values before a prefix or suffix (the narrower lookups first), then type, source,
// subject before extensions, then the longer prefix or suffix; ties go to the smaller name, so the
// choice does not depend on map order.
func indexRequirement(reqs []requirement, sharedBy map[string]int) (requirement, bool) {
	if len(reqs) == 0 {
		return requirement{}, false
	}
	best, bestShared := reqs[0], sharedBy[reqs[0].id()]
	for _, r := range reqs[1:] {
		n := sharedBy[r.id()]
		if n < bestShared || n == bestShared && requirementLess(r, best) {
			best, bestShared = r, n
		}
	}
	return best, true
}

func requirementLess(a, b requirement) bool {
	if ra, rb := kindRank(a), kindRank(b); ra != rb {
		return ra < rb
	}
	if ka, kb := keyRank(a.Key), keyRank(b.Key); ka != kb {
		return ka < kb
	}
	if a.Key != b.Key {
		return a.Key < b.Key
	}
	if a.Kind != exactMatch && len(a.Values[0]) != len(b.Values[0]) {
		return len(a.Values[0]) > len(b.Values[0])
	}
	return a.Values[0] < b.Values[0]
}

func kindRank(r requirement) int {
	switch {
	case r.Kind == exactMatch && len(r.Values) == 1:
		return 0
	case r.Kind == exactMatch:
		return 1
	default:
		return 2
	}
}

func keyRank(key string) int {
	for i, k := range preferredKeys {
		if k == key {
			return i
		}
	}
	return len(preferredKeys)
}

// Len is the number of indexed filters.
func (ix *Index) Len() int { return len(ix.filters) }

// Match appends to dst the positions of the filters e passes, and returns it. Reusing dst across
// calls makes matching allocation-free.
func (ix *Index) Match(e *event.Event, dst []int32) []int32 {
	start := len(dst)
	for i := range ix.keys {
		a := &ix.keys[i]
		v, ok := Attribute(e, a.name)
		if !ok {
			continue
		}
		for _, pos := range a.byValue[v] {
			dst = ix.try(pos, e, dst, start)
		}
		if a.prefixes != nil {
			dst = ix.matchAffixes(a.prefixes, v, false, e, dst, start)
		}
		if a.suffixes != nil {
			dst = ix.matchAffixes(a.suffixes, v, true, e, dst, start)
		}
	}
	for _, pos := range ix.scan {
		if ix.filters[pos].Match(e) {
			dst = append(dst, pos)
		}
	}
	return dst
}

// matchAffixes walks tree along v (from its end when fromEnd: the tree of suffixes, filed
// reversed) and evaluates the filters filed at every node on the way: those whose prefix (suffix)
// v has.
func (ix *Index) matchAffixes(n *affixNode, v string, fromEnd bool, e *event.Event, dst []int32, start int) []int32 {
	consumed := 0
	for {
		for _, pos := range n.filters {
			dst = ix.try(pos, e, dst, start)
		}
		if consumed == len(v) || len(n.children) == 0 {
			return dst
		}
		c := n.child(byteAt(v, consumed, fromEnd))
		if c == nil || len(c.label) > len(v)-consumed {
			return dst
		}
		for j := 1; j < len(c.label); j++ { // label[0] matched in child
			if c.label[j] != byteAt(v, consumed+j, fromEnd) {
				return dst
			}
		}
		consumed += len(c.label)
		n = c
	}
}

// try appends pos to dst when e passes its filter, unless the filter is filed more than once and
// this Match (the positions from start) reported it already.
func (ix *Index) try(pos int32, e *event.Event, dst []int32, start int) []int32 {
	if ix.multi != nil && ix.multi[pos] && slices.Contains(dst[start:], pos) {
		return dst
	}
	if ix.filters[pos].Match(e) {
		dst = append(dst, pos)
	}
	return dst
}

// byteAt is v's i-th byte counted from its start, or from its end.
func byteAt(v string, i int, fromEnd bool) byte {
	if fromEnd {
		return v[len(v)-1-i]
	}
	return v[i]
}

// affixNode is a node of a radix tree of prefixes (or reversed suffixes): the edge into it is
// label, and filters are filed at the node where their prefix ends.
type affixNode struct {
	label    string
	filters  []int32
	children []*affixNode // sorted by label[0]; labels of siblings start with different bytes
}

// child returns the child whose label starts with b, or nil.
func (n *affixNode) child(b byte) *affixNode {
	i := n.search(b)
	if i < len(n.children) && n.children[i].label[0] == b {
		return n.children[i]
	}
	return nil
}

// search is the position of the first child whose label starts with b or a later byte.
func (n *affixNode) search(b byte) int {
	lo, hi := 0, len(n.children)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if n.children[mid].label[0] < b {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// insert files pos under key, splitting an edge where key leaves it.
func (n *affixNode) insert(key string, pos int32) {
	for key != "" {
		i := n.search(key[0])
		if i == len(n.children) || n.children[i].label[0] != key[0] {
			n.children = append(n.children, nil)
			copy(n.children[i+1:], n.children[i:])
			n.children[i] = &affixNode{label: key, filters: []int32{pos}}
			return
		}
		c := n.children[i]
		common := commonPrefixLen(c.label, key)
		if common < len(c.label) {
			split := &affixNode{label: c.label[:common], children: []*affixNode{c}}
			c.label = c.label[common:]
			n.children[i] = split
			c = split
		}
		n, key = c, key[common:]
	}
	n.filters = append(n.filters, pos)
}

func commonPrefixLen(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

func reverse(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := len(s) - 1; i >= 0; i-- {
		b.WriteByte(s[i])
	}
	return b.String()
}

// ExactType is the one event type f requires, or "any": Knative's filter_type metric label.
func ExactType(f Filter) string {
	if k, ok := f.(keyer); ok {
		for _, r := range k.requirements() {
			if r.Key == "type" && r.Kind == exactMatch && len(r.Values) == 1 {
				return r.Values[0]
			}
		}
	}
	return "any"
}
