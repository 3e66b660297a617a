package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/switchyard-events/switchyard/router"
)

// Component is a part of Switchyard whose settings are a block of SwitchyardConfig's spec (the
// Cassandra result store's is results.cassandra) and belong to the component's own package: its
// spec type with defaults, how the command line overrides it, and its validation. cmd/switchyard
// lists the components in one place and hands them to the loader (Sources.Components), which
// decodes each block strictly into the component's spec, applies the overrides, and has the
// component check the result, every problem reported with its file, line and field path like any
// other. Adding a component is its package, a line in that list, and its docs.
type Component interface {
	// Path is the block's place under spec, e.g. "results.cassandra".
	Path() string
	// NewSpec returns a pointer to a new spec holding the component's defaults: what the block
	// decodes into.
	NewSpec() any
	// Override applies the command line's settings to spec, and reports whether they ask for the
	// component, so that a flag alone (--cassandra-hosts) can turn it on.
	Override(spec any, o *Overrides) bool
	// Validate reports every problem of spec, at field paths relative to the block.
	Validate(spec any, r Reporter)
}

// Reporter takes a component's problems: field is a path within its block ("hosts",
// "tls.caFile"); the loader adds the block's path, the file and the line.
type Reporter interface {
	Errorf(field, format string, args ...any)
}

// componentBlock is a component's block as found in the SwitchyardConfig document.
type componentBlock struct {
	d    *doc
	node *yaml.Node
}

// takeComponentBlocks removes the registered components' blocks from a SwitchyardConfig
// document before its strict walk (which knows nothing of them) and keeps them for
// compileComponents.
func (l *loader) takeComponentBlocks(d *doc) {
	spec := mapValue(d.root.Content[0], "spec")
	for _, c := range l.components {
		segs := strings.Split(c.Path(), ".")
		parent := spec
		for _, s := range segs[:len(segs)-1] {
			if parent == nil {
				break
			}
			parent = mapValue(parent, s)
		}
		if parent == nil || parent.Kind != yaml.MappingNode {
			continue
		}
		key := segs[len(segs)-1]
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == key {
				if l.blocks[c.Path()] == nil {
					l.blocks[c.Path()] = &componentBlock{d: d, node: parent.Content[i+1]}
				}
				parent.Content = append(parent.Content[:i:i], parent.Content[i+2:]...)
				break
			}
		}
	}
}

// blockReporter reports a component's problems at its block's file, line and path.
type blockReporter struct {
	l    *loader
	d    *doc
	node *yaml.Node // nil: the block comes from the command line only
	path string     // "spec.results.cassandra"
	n    int
}

func (r *blockReporter) Errorf(field, format string, args ...any) {
	r.n++
	e := &Error{File: r.d.file, Path: joinPath(r.path, field), Msg: fmt.Sprintf(format, args...)}
	if r.node != nil {
		e.Line = nodeAt(r.node, field).Line
	}
	r.l.errs = append(r.l.errs, e)
}

// compileComponents decodes, overrides and validates every registered component's settings into
// specs, by path. A component with no block and no override is absent (nil).
func (l *loader) compileComponents() map[string]any {
	out := map[string]any{}
	flags := &doc{file: "command line", root: &yaml.Node{}}
	for _, c := range l.components {
		spec := c.NewSpec()
		present := false
		path := "spec." + c.Path()
		rep := &blockReporter{l: l, d: flags, path: path}
		if b := l.blocks[c.Path()]; b != nil {
			present = true
			rep.d, rep.node = b.d, b.node
			before := len(l.errs)
			unknownFields(b.node, reflect.TypeOf(spec), path, func(n *yaml.Node, p, msg string) {
				l.errs = append(l.errs, &Error{File: b.d.file, Line: n.Line, Path: p, Msg: msg})
			})
			if err := b.node.Decode(spec); err != nil {
				var te *yaml.TypeError
				if !errors.As(err, &te) {
					l.errs = append(l.errs, &Error{File: b.d.file, Line: b.node.Line, Path: path, Msg: err.Error()})
				} else {
					for _, e := range te.Errors {
						line := b.node.Line
						if m := yamlLine.FindStringSubmatch(e); m != nil {
							line, _ = strconv.Atoi(m[1])
							e = strings.Replace(e, m[0], "", 1)
						}
						p, _ := pathAtLine(b.node, line, path)
						l.errs = append(l.errs, &Error{File: b.d.file, Line: line, Path: p, Msg: e})
					}
				}
			}
			if len(l.errs) > before {
				continue // validating a half-decoded spec would only repeat the problems
			}
		}
		if l.overrides != nil && c.Override(spec, l.overrides) {
			present = true
		}
		if !present {
			continue
		}
		c.Validate(spec, rep)
		out[c.Path()] = spec
	}
	return out
}

// KindComponent is a component that serves a kind of document of its own (sinks/cassandra's
// CassandraSink): the loader decodes each such document's spec strictly into the component's spec
// type, has the component check it, and resolves refs to it (a Trigger's subscriber, a dead-letter
// sink, a source's sink, a flow's step) to the path the component serves it at on this router's
// ingress. cmd/switchyard lists them beside the Components.
type KindComponent interface {
	APIVersion() string
	Kind() string
	// NewSpec returns a pointer to a new spec with the kind's defaults.
	NewSpec() any
	// Validate reports every problem of one object's spec (fields relative to spec); components
	// are the loaded SwitchyardConfig blocks by path (a CassandraSink connects to the result
	// store's cluster unless it names its own).
	Validate(spec any, components map[string]any, r Reporter)
	// Path is where the ingress takes events for object namespace/name, e.g.
	// "/sinks/cassandra/ns/name".
	Path(namespace, name string) string
}

// Object is a validated document of a KindComponent's kind.
type Object struct {
	Namespace, Name string
	// Spec is the pointer NewSpec made, decoded and checked.
	Spec any
	File string
	Line int
}

// objectManifest is a KindComponent's document: Kubernetes' envelope around the component's spec.
type objectManifest struct {
	typeMeta `yaml:",inline"`
	Metadata objectMeta `yaml:"metadata"`
	Spec     yaml.Node  `yaml:"spec"`
	Status   yaml.Node  `yaml:"status"`
}

type objectDoc struct {
	d    *doc
	m    objectManifest
	kind KindComponent
}

// kindFor is the registered KindComponent of tm, or nil.
func (l *loader) kindFor(tm typeMeta) KindComponent {
	for _, k := range l.kinds {
		if k.APIVersion() == tm.APIVersion && k.Kind() == tm.Kind {
			return k
		}
	}
	return nil
}

// kindRef is the registered KindComponent a ref names when the configuration defines the object,
// else nil.
func (l *loader) kindRef(r *kReference, ns string) KindComponent {
	for i := range l.objects {
		o := &l.objects[i]
		if o.kind.APIVersion() == r.APIVersion && o.kind.Kind() == r.Kind && o.m.Metadata.Name == r.Name && orDefault(o.m.Metadata.Namespace) == ns {
			return o.kind
		}
	}
	return nil
}

// compileObjects decodes and validates every KindComponent document into cfg.Objects, by kind.
func (l *loader) compileObjects(cfg *Config) {
	seen := map[string]map[router.BrokerRef]bool{} // by kind
	for i := range l.objects {
		od := &l.objects[i]
		kind := od.kind.Kind()
		if seen[kind] == nil {
			seen[kind] = map[router.BrokerRef]bool{}
		}
		ref, ok := l.uniqueRef(od.d, &od.m.Metadata, kind, seen[kind])
		if !ok {
			continue
		}
		spec := od.kind.NewSpec()
		before := len(l.errs)
		node := &od.m.Spec
		if node.Kind == 0 {
			l.errAt(od.d, "spec", "must be set")
			continue
		}
		unknownFields(node, reflect.TypeOf(spec), "spec", func(n *yaml.Node, p, msg string) {
			l.errs = append(l.errs, &Error{File: od.d.file, Line: n.Line, Path: p, Msg: msg})
		})
		if err := node.Decode(spec); err != nil {
			l.errAt(od.d, "spec", "%v", err)
		}
		if len(l.errs) > before {
			continue
		}
		od.kind.Validate(spec, cfg.Components, &blockReporter{l: l, d: od.d, node: node, path: "spec"})
		if cfg.Objects == nil {
			cfg.Objects = map[string][]*Object{}
		}
		cfg.Objects[kind] = append(cfg.Objects[kind], &Object{Namespace: ref.Namespace, Name: ref.Name, Spec: spec, File: od.d.file, Line: od.d.line("")})
	}
}
