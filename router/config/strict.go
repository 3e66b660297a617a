package config

import (
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

var yamlNodeType = reflect.TypeOf(yaml.Node{})

// unknownFields walks n alongside the Go type t and reports every mapping key that t has no field
// for. yaml.v3 can only be strict when decoding a whole stream, and then stops at the first unknown
// field; walking the node tree ourselves reports all of them, each with its line and path.
func unknownFields(n *yaml.Node, t reflect.Type, path string, report func(n *yaml.Node, path, msg string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if t == yamlNodeType {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error, which decoding reports
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			ft, ok := fields[key.Value]
			if !ok {
				report(key, joinPath(path, key.Value), "unknown field (known: "+strings.Join(sortedKeys(fields), ", ")+")")
				continue
			}
			unknownFields(val, ft, joinPath(path, key.Value), report)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, item := range n.Content {
			unknownFields(item, t.Elem(), path+"["+strconv.Itoa(i)+"]", report)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			unknownFields(n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value), report)
		}
	}
}

// fieldCache holds yamlFields' answers: a controller-mode rebuild decodes thousands of documents
// of the same few types.
var fieldCache sync.Map // reflect.Type -> map[string]reflect.Type

// yamlFields maps the YAML keys of struct t (inline embedded structs included) to their types.
// The map is shared: callers must not change it.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]reflect.Type)
	}
	m := structFields(t)
	fieldCache.Store(t, m)
	return m
}

func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if opts == "inline" {
			for k, v := range structFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func sortedKeys(m map[string]reflect.Type) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// nodeAt returns the node at a field path such as spec.filters[0].prefix below root, or the deepest
// node on that path that exists, so every error can name a line.
func nodeAt(root *yaml.Node, path string) *yaml.Node {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for _, seg := range strings.Split(path, ".") {
		if seg == "" {
			continue
		}
		name, rest, _ := strings.Cut(seg, "[")
		if name != "" {
			next := mapValue(n, name)
			if next == nil {
				return n
			}
			n = next
		}
		for rest != "" {
			idx, after, _ := strings.Cut(rest, "]")
			i, err := strconv.Atoi(idx)
			if err != nil || n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return n
			}
			n = n.Content[i]
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return n
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// pathAtLine returns the field path of the first value on line below n, for errors that yaml.v3
// reports by line only.
func pathAtLine(n *yaml.Node, line int, path string) (string, bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if p, ok := pathAtLine(c, line, path); ok {
				return p, true
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			p := joinPath(path, key.Value)
			if found, ok := pathAtLine(val, line, p); ok {
				return found, true
			}
			if key.Line == line || val.Line == line {
				return p, true
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if found, ok := pathAtLine(c, line, p); ok {
				return found, true
			}
			if c.Line == line {
				return p, true
			}
		}
	}
	return "", false
}

// maxAliasNodes is how many nodes aliases may add to a document once expanded. Anchors and
// aliases are fine for sharing a delivery block; a "billion laughs" document, where each alias
// names a list of aliases, expands a few hundred bytes into billions of nodes, and every walk over
// it (ours, then yaml.v3's decode) would run for minutes.
const maxAliasNodes = 100_000

// aliasExpansion reports the first alias of the document whose expansion pushes the nodes aliases
// add past maxAliasNodes, or nil. It counts each node's expanded size once (memoised), so it is
// linear in the document, not in its expansion.
func aliasExpansion(root *yaml.Node) *yaml.Node {
	sizes := map[*yaml.Node]int64{}
	var added int64
	var culprit *yaml.Node
	var size func(n *yaml.Node, depth int) int64
	size = func(n *yaml.Node, depth int) int64 {
		if s, ok := sizes[n]; ok {
			return s
		}
		if depth > 10_000 { // an alias cycle yaml.v3 let through, or absurd nesting
			return maxAliasNodes + 1
		}
		var s int64 = 1
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			s = size(n.Alias, depth+1)
			added += s
			if added > maxAliasNodes && culprit == nil {
				culprit = n
			}
		} else {
			for _, c := range n.Content {
				s += size(c, depth+1)
				if s > 1<<40 {
					s = 1 << 40 // saturate: it only needs to exceed the bound
				}
			}
		}
		sizes[n] = s
		return s
	}
	size(root, 0)
	return culprit
}
