package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Files lists the YAML files a config path names: the path itself, or the *.yaml and *.yml files
// directly in that directory, sorted. Hidden entries are skipped: a Kubernetes ConfigMap volume
// keeps the real files in ..data and timestamped dot-directories, and links them from the top.
func Files(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("reading config directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		full := filepath.Join(path, name)
		if st, err := os.Stat(full); err != nil || st.IsDir() { // follows ConfigMap symlinks
			continue
		}
		files = append(files, full)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("reading config: no *.yaml or *.yml files in %s", path)
	}
	return files, nil
}

// Load reads and validates the configuration at path (a file or a directory). On invalid input the
// error is an Errors listing every problem found.
func Load(path string) (*Config, error) {
	return LoadSources(Sources{Path: path})
}

// Document is a manifest that does not come from a file, such as a watched Kubernetes resource.
type Document struct {
	// Name stands for the file name in errors, e.g. "Trigger default/orders".
	Name string
	// Data is the manifest, in YAML or JSON.
	Data []byte
}

// ObjectRef names the object a destination's ref points at, its namespace defaulted.
type ObjectRef struct {
	APIVersion, Kind, Namespace, Name string
}

// Sources is everything one configuration is built from: files, further documents, and how refs
// resolve. Files come first, so a document that redefines a file's broker is the one in error.
type Sources struct {
	// Path is a file or directory of YAML manifests, or "" for none.
	Path      string
	Documents []Document
	// Components are the parts of Switchyard with settings blocks of their own in
	// SwitchyardConfig (see Component); the loaded specs are Config.Components.
	Components []Component
	// Kinds are the components serving kinds of documents of their own (see KindComponent); the
	// loaded objects are Config.Objects.
	Kinds []KindComponent
	// Overrides are settings from the command line and environment: they win over the files'
	// SwitchyardConfig and are applied before anything is checked, so that they can satisfy a
	// check (a Kafka-class broker needs a cluster: --kafka-bootstrap-servers gives it one).
	Overrides *Overrides
	// ResolveRef, when set, turns every subscriber, dead-letter and sink ref (except refs to this
	// configuration's Brokers) into a URL, e.g. by reading the cluster; its error is reported on the
	// ref. Unset, refs to Services resolve to their cluster DNS name and others are errors.
	ResolveRef func(ObjectRef) (string, error)
	// RoutingOnly reads Brokers and Triggers alone (a dry run's candidate, of which only the
	// triggers' filters are compared): every other document is left alone, listed in Skipped,
	// and so is every file, secret, environment variable and URL it names. Loading such a
	// candidate reads nothing of the host's, so its errors cannot tell whether a file exists.
	// A Kafka-class broker needs no cluster then, nor an archive Cassandra.
	RoutingOnly bool
	// ConfigMapsComplete says Documents hold every ConfigMap there is (controller mode passes the
	// cluster's): a Kafka-class Broker whose spec.config names a missing one is then in error. In
	// files, such a ConfigMap may live in the cluster only, and the router's own settings apply.
	ConfigMapsComplete bool
}

// LoadSources reads and validates a configuration made of files and documents. Without a path and
// documents it is the defaults with no brokers.
func LoadSources(src Sources) (*Config, error) {
	var files []string
	if src.Path != "" {
		var err error
		if files, err = Files(src.Path); err != nil {
			return nil, err
		}
	}
	l := newLoader()
	l.resolveRef = src.ResolveRef
	l.overrides = src.Overrides
	l.components = src.Components
	l.kinds = src.Kinds
	l.routingOnly = src.RoutingOnly
	l.configMapsComplete = src.ConfigMapsComplete
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
		l.parseFile(f, data)
	}
	for _, d := range src.Documents {
		l.parseFile(d.Name, d.Data)
	}
	return l.compile(files)
}

// Parse validates one configuration file's content; name is used in error messages.
func Parse(name string, data []byte) (*Config, error) {
	l := newLoader()
	l.parseFile(name, data)
	return l.compile([]string{name})
}

// doc is one YAML document and where it came from.
type doc struct {
	file string
	root *yaml.Node
	// item is "items[3]" for the fourth object of a kind: List, so that errors name it; "" for a
	// document of its own.
	item string
}

func (d *doc) line(path string) int { return nodeAt(d.root, path).Line }

type loader struct {
	resolveRef func(ObjectRef) (string, error)
	errs       Errors
	settings   []settingsDoc
	brokers    []brokerDoc
	triggers   []triggerDoc
	webhooks   []webhookDoc
	github     []gitHubDoc
	kafkaSrc   []kafkaSourceDoc
	pingSrc    []pingSourceDoc
	sequences  []sequenceDoc
	parallels  []parallelDoc
	skipped    []Skipped
	// configMaps are the v1 ConfigMap documents by namespace/name, for Kafka-class Brokers'
	// spec.config; configMapsComplete: Sources.ConfigMapsComplete.
	configMaps         map[string]*configMapDoc
	configMapsComplete bool
	overrides          *Overrides
	// components are the registered components; blocks their blocks taken from the
	// SwitchyardConfig document.
	components []Component
	kinds      []KindComponent
	objects    []objectDoc
	blocks     map[string]*componentBlock
	// destTLS collects destinations' TLS by URL while compiling.
	destTLS map[string]*destTLSDoc
	// routingOnly: Sources.RoutingOnly.
	routingOnly bool
}

type kafkaSourceDoc struct {
	d *doc
	m kafkaSourceManifest
}

type webhookDoc struct {
	d *doc
	m webhookSourceManifest
}

type gitHubDoc struct {
	d *doc
	m gitHubSourceManifest
}

type settingsDoc struct {
	d *doc
	m settingsManifest
}

type brokerDoc struct {
	d *doc
	m brokerManifest
}

type triggerDoc struct {
	d *doc
	m triggerManifest
}

func newLoader() *loader { return &loader{blocks: map[string]*componentBlock{}} }

func (l *loader) errAt(d *doc, path, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: d.file, Line: d.line(path), Path: d.itemPath(path), Msg: fmt.Sprintf(format, args...)})
}

// itemPath is path within the document, prefixed with the List item it is in.
func (d *doc) itemPath(path string) string {
	switch {
	case d.item == "":
		return path
	case path == "":
		return d.item
	}
	return d.item + "." + path
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

func (l *loader) parseFile(name string, data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			line := 0
			msg := strings.TrimPrefix(err.Error(), "yaml: ")
			if m := yamlLine.FindStringSubmatch(msg); m != nil {
				line, _ = strconv.Atoi(m[1])
				msg = strings.Replace(msg, m[0], "", 1)
			}
			l.errs = append(l.errs, &Error{File: name, Line: line, Msg: "invalid YAML: " + msg})
			return // the decoder cannot resume after a syntax error
		}
		if len(root.Content) == 0 || root.Content[0].Tag == "!!null" {
			continue // an empty document, e.g. after a trailing ---
		}
		if a := aliasExpansion(&root); a != nil {
			l.errs = append(l.errs, &Error{File: name, Line: a.Line, Msg: fmt.Sprintf(
				"aliases expand this document by more than %d nodes (a YAML alias bomb?): the document is not read", maxAliasNodes)})
			continue
		}
		l.parseDoc(&doc{file: name, root: &root})
	}
}

func (l *loader) parseDoc(d *doc) {
	top := d.root.Content[0]
	if top.Kind != yaml.MappingNode {
		l.errAt(d, "", "a document must be a mapping with apiVersion and kind")
		return
	}
	var tm typeMeta
	_ = top.Decode(&tm) // non-string values simply leave these empty, reported below
	switch {
	case tm.APIVersion == "" || tm.Kind == "":
		l.errAt(d, "", "a document needs apiVersion and kind")
	case tm.APIVersion == "v1" && strings.HasSuffix(tm.Kind, "List"):
		l.parseList(d, top)
	case l.routingOnly && (tm.APIVersion != knativeEventingV1 || tm.Kind != "Broker" && tm.Kind != "Trigger"):
		var meta struct {
			Metadata objectMeta `yaml:"metadata"`
		}
		_ = top.Decode(&meta) // best effort: only for the listing
		l.skipped = append(l.skipped, Skipped{File: d.file, Line: d.line(""), APIVersion: tm.APIVersion, Kind: tm.Kind,
			Namespace: meta.Metadata.Namespace, Name: meta.Metadata.Name, Why: "only brokers and triggers are read here: nothing this names is read"})
	case tm.APIVersion == knativeEventingV1 && tm.Kind == "Broker":
		decodeDoc(l, d, &l.brokers, func(b *brokerDoc) any { b.d = d; return &b.m })
	case tm.APIVersion == knativeEventingV1 && tm.Kind == "Trigger":
		decodeDoc(l, d, &l.triggers, func(t *triggerDoc) any { t.d = d; return &t.m })
	case tm.APIVersion == switchyardV1alpha1 && tm.Kind == "SwitchyardConfig":
		l.takeComponentBlocks(d)
		decodeDoc(l, d, &l.settings, func(s *settingsDoc) any { s.d = d; return &s.m })
	case tm.APIVersion == switchyardV1alpha1 && tm.Kind == "WebhookSource":
		decodeDoc(l, d, &l.webhooks, func(w *webhookDoc) any { w.d = d; return &w.m })
	case (tm.APIVersion == knativeSourcesV1 || tm.APIVersion == knativeSourcesV1beta1 || tm.APIVersion == switchyardV1alpha1) && tm.Kind == "KafkaSource":
		// Our own kind takes Knative's spec as it is: one shape to learn, three apiVersions.
		decodeDoc(l, d, &l.kafkaSrc, func(k *kafkaSourceDoc) any { k.d = d; return &k.m })
	case (tm.APIVersion == knativeSourcesV1 || tm.APIVersion == knativeSourcesV1beta2) && tm.Kind == "PingSource":
		// v1beta2 has v1's shape; v1beta1's jsonData is not read.
		decodeDoc(l, d, &l.pingSrc, func(p *pingSourceDoc) any { p.d = d; return &p.m })
	case tm.APIVersion == flowsV1 && tm.Kind == "Sequence":
		decodeDoc(l, d, &l.sequences, func(s *sequenceDoc) any { s.d = d; return &s.m })
	case tm.APIVersion == flowsV1 && tm.Kind == "Parallel":
		decodeDoc(l, d, &l.parallels, func(p *parallelDoc) any { p.d = d; return &p.m })
	case tm.APIVersion == knativeSourcesV1alpha1 && tm.Kind == "GitHubSource":
		decodeDoc(l, d, &l.github, func(g *gitHubDoc) any { g.d = d; return &g.m })
	case l.kindFor(tm) != nil:
		k := l.kindFor(tm)
		decodeDoc(l, d, &l.objects, func(o *objectDoc) any { o.d, o.kind = d, k; return &o.m })
	default:
		l.sortOut(d, top, tm)
	}
}

// parseList reads a kind: List (what kubectl get -o yaml writes) item by item, each as a document
// of its own whose errors name the item.
func (l *loader) parseList(d *doc, top *yaml.Node) {
	items := mapValue(top, "items")
	if items == nil {
		return // an empty List
	}
	if items.Kind != yaml.SequenceNode {
		l.errAt(d, "items", "must be a list of objects")
		return
	}
	for i, item := range items.Content {
		l.parseDoc(&doc{file: d.file, root: &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{item}}, item: d.itemPath(fmt.Sprintf("items[%d]", i))})
	}
}

const (
	knativeEventingV1      = "eventing.knative.dev/v1"
	knativeSourcesV1       = "sources.knative.dev/v1"
	knativeSourcesV1beta2  = "sources.knative.dev/v1beta2"
	knativeSourcesV1alpha1 = "sources.knative.dev/v1alpha1"
	knativeSourcesV1beta1  = "sources.knative.dev/v1beta1"
	switchyardV1alpha1     = "switchyard.dev/v1alpha1"
)

// decodeDoc decodes d into a new element of list when it is valid; bind ties the element to d and
// returns the manifest to decode into.
func decodeDoc[T any](l *loader, d *doc, list *[]T, bind func(*T) any) {
	var elem T
	if l.decode(d, bind(&elem)) {
		*list = append(*list, elem)
	}
}

// decode checks d for unknown fields, then decodes it into v. It reports false when the document
// has errors, which are recorded.
func (l *loader) decode(d *doc, v any) bool {
	before := len(l.errs)
	unknownFields(d.root.Content[0], reflect.TypeOf(v), "", func(n *yaml.Node, path, msg string) {
		l.errs = append(l.errs, &Error{File: d.file, Line: n.Line, Path: path, Msg: msg})
	})
	if err := d.root.Content[0].Decode(v); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			l.errAt(d, "", "%v", err)
			return false
		}
		for _, e := range te.Errors {
			line := 0
			if m := yamlLine.FindStringSubmatch(e); m != nil {
				line, _ = strconv.Atoi(m[1])
				e = strings.Replace(e, m[0], "", 1)
			}
			path, _ := pathAtLine(d.root, line, "")
			l.errs = append(l.errs, &Error{File: d.file, Line: line, Path: path, Msg: e})
		}
	}
	return len(l.errs) == before
}
