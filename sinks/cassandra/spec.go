package cassandra

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/router/secret"
	"github.com/switchyard-events/switchyard/router/tlsfiles"
)

// Spec is the Cassandra result store's settings: the results.cassandra block of a
// SwitchyardConfig, with its defaults (DefaultSpec), the command line's --cassandra-hosts
// (Component.Override) and its checks (Component.Validate). docs/cassandra.md describes each field.
type Spec struct {
	Hosts             []string          `yaml:"hosts"`
	Keyspace          string            `yaml:"keyspace"`
	Replication       string            `yaml:"replication"`
	Consistency       string            `yaml:"consistency"`
	LocalDC           string            `yaml:"localDC"`
	DisableHostLookup bool              `yaml:"disableHostLookup"`
	Username          *secret.FileOrEnv `yaml:"username"`
	Password          *secret.FileOrEnv `yaml:"password"`
	TLS               *TLSSpec          `yaml:"tls"`
	// Retention (the TTL of every row) and Bucket (the time span of a per-trigger partition)
	// are Go durations.
	Retention string `yaml:"retention"`
	Bucket    string `yaml:"bucket"`
	Writers   int    `yaml:"writers"`
	Buffer    int    `yaml:"buffer"`
	Journal   struct {
		// Dir holds outcomes Cassandra could not take yet ("" : $TMPDIR/switchyard-results-journal).
		Dir      string `yaml:"dir"`
		MaxBytes int64  `yaml:"maxBytes"`
		// SegmentBytes is the size of one journal file (0: a sixteenth of maxBytes, 1 to 64 MiB).
		SegmentBytes int64 `yaml:"segmentBytes"`
	} `yaml:"journal"`
}

// TLSSpec are the PEM files of a TLS connection to Cassandra.
type TLSSpec struct {
	CAFile             string `yaml:"caFile"`
	CertFile           string `yaml:"certFile"`
	KeyFile            string `yaml:"keyFile"`
	ServerName         string `yaml:"serverName"`
	InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
}

// DefaultSpec is the store's settings before the configuration says anything.
func DefaultSpec() *Spec {
	s := &Spec{Keyspace: "switchyard", Replication: "{'class': 'SimpleStrategy', 'replication_factor': 1}", Consistency: "LOCAL_QUORUM",
		Retention: "168h", Bucket: "1h", Writers: 64, Buffer: 10000}
	s.Journal.MaxBytes = 1 << 30
	return s
}

// Component registers the store's settings with the configuration loader (cmd/switchyard's list
// of components).
type Component struct{}

// Path is the block's place in SwitchyardConfig's spec.
func (Component) Path() string { return "results.cassandra" }

// NewSpec returns the defaults, to decode the block into.
func (Component) NewSpec() any { return DefaultSpec() }

// Override applies --cassandra-hosts, which turns the store on when the configuration did not.
func (Component) Override(spec any, o *config.Overrides) bool {
	if len(o.CassandraHosts) == 0 {
		return false
	}
	spec.(*Spec).Hosts = o.CassandraHosts
	return true
}

// Validate reports every problem of the settings, secrets and files included (they are read now,
// so that a mistake shows at validate and start-up, not at the first outcome).
func (Component) Validate(spec any, r config.Reporter) {
	s := spec.(*Spec)
	if len(s.Hosts) == 0 {
		r.Errorf("hosts", "must name at least one Cassandra host (host or host:port)")
	}
	if !keyspaceName.MatchString(s.Keyspace) {
		r.Errorf("keyspace", "%q is not a keyspace name (letters, digits, _; up to 48)", s.Keyspace)
	}
	if _, err := gocql.ParseConsistencyWrapper(strings.ToUpper(s.Consistency)); err != nil {
		r.Errorf("consistency", "%q is not a consistency level (e.g. LOCAL_QUORUM, QUORUM, ONE)", s.Consistency)
	}
	for field, sec := range map[string]*secret.FileOrEnv{"username": s.Username, "password": s.Password} {
		if sec == nil {
			continue
		}
		if sub, problem := sec.Check(); problem != "" {
			r.Errorf(strings.TrimSuffix(field+"."+sub, "."), "%s", problem)
		}
	}
	if t := s.TLS; t != nil {
		if (t.CertFile == "") != (t.KeyFile == "") {
			r.Errorf("tls", "certFile and keyFile go together")
		}
		for field, f := range map[string]string{"caFile": t.CAFile, "certFile": t.CertFile, "keyFile": t.KeyFile} {
			if f == "" {
				continue
			}
			if _, err := os.Stat(f); err != nil {
				r.Errorf("tls."+field, "cannot read %s: %v", f, err.(*os.PathError).Err)
			}
		}
	}
	for field, v := range map[string]string{"retention": s.Retention, "bucket": s.Bucket} {
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			r.Errorf(field, "%q is not a positive duration such as 168h", v)
		} else if field == "retention" && d < time.Second {
			r.Errorf(field, "must be at least 1s (Cassandra's TTL is in seconds)")
		}
	}
	for field, v := range map[string]int64{"writers": int64(s.Writers), "buffer": int64(s.Buffer), "journal.maxBytes": s.Journal.MaxBytes} {
		if v <= 0 {
			r.Errorf(field, "must be positive, got %d", v)
		}
	}
	if s.Journal.SegmentBytes < 0 {
		r.Errorf("journal.segmentBytes", "must be positive (or 0 for the default), got %d", s.Journal.SegmentBytes)
	}
}

// Config is the store's runtime configuration from valid settings: secrets read, TLS built.
func (s *Spec) Config(logger *zap.Logger, reg prometheus.Registerer) (Config, error) {
	retention, _ := time.ParseDuration(s.Retention)
	bucket, _ := time.ParseDuration(s.Bucket)
	cfg := Config{
		Hosts: s.Hosts, Keyspace: s.Keyspace, Replication: s.Replication, Consistency: s.Consistency,
		LocalDC: s.LocalDC, DisableHostLookup: s.DisableHostLookup, Retention: retention, Bucket: bucket,
		Writers: s.Writers, Buffer: s.Buffer, JournalDir: s.Journal.Dir, JournalMaxBytes: s.Journal.MaxBytes,
		JournalSegmentBytes: s.Journal.SegmentBytes,
		Logger:              logger, Registerer: reg,
	}
	if cfg.JournalDir == "" {
		cfg.JournalDir = filepath.Join(os.TempDir(), "switchyard-results-journal")
	}
	for _, c := range []struct {
		from *secret.FileOrEnv
		to   *string
	}{{s.Username, &cfg.Username}, {s.Password, &cfg.Password}} {
		if c.from == nil {
			continue
		}
		v, err := c.from.Ref().Read("")
		if err != nil {
			return cfg, fmt.Errorf("cassandra credentials: %w", err)
		}
		*c.to = string(v)
	}
	if t := s.TLS; t != nil {
		client := tlsfiles.Client{CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify}
		if t.CAFile != "" {
			ca, err := os.ReadFile(t.CAFile)
			if err != nil {
				return cfg, fmt.Errorf("cassandra tls: %w", err)
			}
			client.CAPEM = ca
		}
		tc, err := tlsfiles.ClientConfig(client)
		if err != nil {
			return cfg, fmt.Errorf("cassandra tls: %w", err)
		}
		cfg.TLS = tc
	}
	return cfg, nil
}

var _ config.Component = Component{}
