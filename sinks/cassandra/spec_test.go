package cassandra

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/router/config"
)

// load reads a SwitchyardConfig whose spec holds results, with the Cassandra component registered
// as cmd/switchyard registers it.
func load(t *testing.T, results string, o *config.Overrides) (*config.Config, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	doc := "apiVersion: switchyard.dev/v1alpha1\nkind: SwitchyardConfig\nmetadata: {name: s}\nspec:\n  results:\n" + results
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return config.LoadSources(config.Sources{Path: path, Components: []config.Component{Component{}}, Overrides: o})
}

// TestSpec (issue #17): the Cassandra store's settings, defaults and checks live here; the loader
// reports them with the file, line and path of the block like any other.
func TestSpec(t *testing.T) {
	cfg, err := load(t, "    cassandra:\n      hosts: [db-0:9042]\n      consistency: one\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Components["results.cassandra"].(*Spec)
	if s.Keyspace != "switchyard" || s.Retention != "168h" || s.Writers != 64 || s.Journal.MaxBytes != 1<<30 || s.Hosts[0] != "db-0:9042" {
		t.Errorf("defaults under the block: %+v", s)
	}
	c, err := s.Config(nil, nil)
	if err != nil || c.Retention.Hours() != 168 || c.JournalDir == "" {
		t.Errorf("runtime config: %+v %v", c, err)
	}

	_, err = load(t, "    cassandra:\n      hosts: []\n      consistncy: ONE\n      retention: forever\n      writers: 0\n      username: {env: SY_UNSET_CASSANDRA_USER}\n", nil)
	if err == nil {
		t.Fatal("bad settings accepted")
	}
	for _, want := range []string{
		"c.yaml:8: spec.results.cassandra.consistncy: unknown field (known: ",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors %q lack %q", err, want)
		}
	}
	_, err = load(t, "    cassandra:\n      hosts: []\n      retention: forever\n      writers: 0\n      username: {env: SY_UNSET_CASSANDRA_USER}\n      consistency: SOMETIMES\n", nil)
	for _, want := range []string{
		"c.yaml:7: spec.results.cassandra.hosts: must name at least one Cassandra host",
		`c.yaml:8: spec.results.cassandra.retention: "forever" is not a positive duration`,
		"c.yaml:9: spec.results.cassandra.writers: must be positive, got 0",
		"c.yaml:10: spec.results.cassandra.username.env: environment variable SY_UNSET_CASSANDRA_USER is not set",
		`c.yaml:11: spec.results.cassandra.consistency: "SOMETIMES" is not a consistency level`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors %v lack %q", err, want)
		}
	}

	// --cassandra-hosts alone turns the store on, with the defaults; without it there is none.
	cfg, err = load(t, "    memory: {maxOutcomes: 10}\n", &config.Overrides{CassandraHosts: []string{"flag-db:9042"}})
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := cfg.Components["results.cassandra"].(*Spec); !ok || s.Hosts[0] != "flag-db:9042" || s.Keyspace != "switchyard" {
		t.Errorf("--cassandra-hosts alone: %+v", cfg.Components)
	}
	cfg, err = load(t, "    memory: {maxOutcomes: 10}\n", nil)
	if err != nil || cfg.Components["results.cassandra"] != nil {
		t.Errorf("no block, no flag: %+v %v", cfg.Components, err)
	}
}
