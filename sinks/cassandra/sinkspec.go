package cassandra

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/switchyard-events/switchyard/router/config"
)

// SinkSpec is a CassandraSink's spec (switchyard.dev/v1alpha1): which table an event becomes a row
// of, and how. docs/cassandra-sink.md describes each field.
type SinkSpec struct {
	// Hosts, when set, is the sink's own cluster; otherwise it writes to the result store's
	// (spec.results.cassandra), with its credentials and TLS.
	Hosts    []string `yaml:"hosts"`
	Keyspace string   `yaml:"keyspace"`
	Table    string   `yaml:"table"`
	// Columns maps each column to the path of its value in the event (sinkvalue.go).
	Columns map[string]string `yaml:"columns"`
	// Optional columns are left unset when their path has no value; any other missing value is an
	// error that names the column and the path.
	Optional    []string `yaml:"optional"`
	Consistency string   `yaml:"consistency"`
	// TTL is every row's time to live (Go duration; "" keeps rows).
	TTL string `yaml:"ttl"`
	// IfNotExists writes a row only when its primary key is new (a lightweight transaction): a
	// redelivery then keeps the first row rather than overwriting it.
	IfNotExists bool `yaml:"ifNotExists"`
	// CreateTable, when set, creates the table if it is missing, and checks an existing one.
	CreateTable *CreateTableSpec `yaml:"createTable"`
	// Concurrency bounds the writes in flight (default 16).
	Concurrency int `yaml:"concurrency"`
}

// CreateTableSpec declares the table: column types (CQL), partition key and clustering columns.
type CreateTableSpec struct {
	Columns map[string]string `yaml:"columns"`
	// PartitionKey defaults to the columns whose value is the event's id.
	PartitionKey  []string `yaml:"partitionKey"`
	ClusteringKey []string `yaml:"clusteringKey"`
}

// SinkKind registers CassandraSink with the configuration loader (cmd/switchyard's list of kinds).
type SinkKind struct{}

func (SinkKind) APIVersion() string { return "switchyard.dev/v1alpha1" }
func (SinkKind) Kind() string       { return "CassandraSink" }
func (SinkKind) NewSpec() any       { return &SinkSpec{Consistency: "LOCAL_QUORUM", Concurrency: 16} }

// SinkPathPrefix starts the ingress paths of CassandraSinks: {prefix}{namespace}/{name}.
const SinkPathPrefix = "/sinks/cassandra/"

// Path is where the ingress takes events for CassandraSink namespace/name.
func (SinkKind) Path(namespace, name string) string { return SinkPathPrefix + namespace + "/" + name }

var cqlName = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Validate checks what can be checked without Cassandra; the table itself is checked when the
// sink starts (docs/cassandra-sink.md).
func (SinkKind) Validate(spec any, components map[string]any, r config.Reporter) {
	s := spec.(*SinkSpec)
	if len(s.Hosts) == 0 && components[Component{}.Path()] == nil {
		r.Errorf("hosts", "a CassandraSink needs a cluster: its own hosts, or the result store's (spec.results.cassandra in a SwitchyardConfig, or --cassandra-hosts)")
	}
	if !cqlName.MatchString(s.Keyspace) {
		r.Errorf("keyspace", "%q is not a keyspace name (lower-case letters, digits and _, starting with a letter)", s.Keyspace)
	}
	if !cqlName.MatchString(s.Table) {
		r.Errorf("table", "%q is not a table name (lower-case letters, digits and _, starting with a letter)", s.Table)
	}
	if len(s.Columns) == 0 {
		r.Errorf("columns", "must map at least one column to a value of the event (e.g. id: id)")
	}
	for _, col := range sortedKeys(s.Columns) {
		if !cqlName.MatchString(col) {
			r.Errorf("columns."+col, "%q is not a column name (lower-case letters, digits and _)", col)
		}
		if problem := checkPath(s.Columns[col]); problem != "" {
			r.Errorf("columns."+col, "%s", problem)
		}
	}
	for i, col := range s.Optional {
		if _, ok := s.Columns[col]; !ok {
			r.Errorf(fmt.Sprintf("optional[%d]", i), "%q is not one of columns", col)
		}
	}
	if _, err := gocql.ParseConsistencyWrapper(strings.ToUpper(s.Consistency)); err != nil {
		r.Errorf("consistency", "%q is not a consistency level (e.g. LOCAL_QUORUM, QUORUM, ONE)", s.Consistency)
	}
	if s.TTL != "" {
		if d, err := time.ParseDuration(s.TTL); err != nil || d < time.Second {
			r.Errorf("ttl", "%q is not a duration of a second or more (Cassandra's TTL is in seconds)", s.TTL)
		}
	}
	if s.Concurrency <= 0 {
		r.Errorf("concurrency", "must be positive, got %d", s.Concurrency)
	}
	if ct := s.CreateTable; ct != nil {
		for _, col := range sortedKeys(ct.Columns) {
			if _, err := parseCQLType(ct.Columns[col]); err != nil {
				r.Errorf("createTable.columns."+col, "%v", err)
			}
			if _, ok := s.Columns[col]; !ok {
				r.Errorf("createTable.columns."+col, "is declared but not in columns: it would never be written")
			}
		}
		for _, col := range sortedKeys(s.Columns) {
			if _, ok := ct.Columns[col]; !ok {
				r.Errorf("createTable.columns", "lacks %s, which columns writes: declare its CQL type", col)
			}
		}
		if len(ct.PartitionKey) == 0 && len(s.idColumns()) == 0 {
			r.Errorf("createTable.partitionKey", "must be set: no column holds the event's id to default to")
		}
		for field, keys := range map[string][]string{"createTable.partitionKey": ct.PartitionKey, "createTable.clusteringKey": ct.ClusteringKey} {
			for i, k := range keys {
				if _, ok := ct.Columns[k]; !ok {
					r.Errorf(fmt.Sprintf("%s[%d]", field, i), "%q is not a declared column", k)
				}
				if slices.Contains(s.Optional, k) {
					r.Errorf(fmt.Sprintf("%s[%d]", field, i), "%q is a key column, so it cannot be optional", k)
				}
			}
		}
	}
}

// idColumns are the columns whose value is the event's id: the default partition key.
func (s *SinkSpec) idColumns() []string {
	var out []string
	for _, col := range sortedKeys(s.Columns) {
		if s.Columns[col] == "id" {
			out = append(out, col)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
