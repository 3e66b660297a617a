package main

import (
	"fmt"
	"io"

	"go.uber.org/zap"

	"github.com/switchyard-events/switchyard/router/config"
	"github.com/switchyard-events/switchyard/sinks/cassandra"
)

// runMigrate creates the Cassandra keyspace and tables the configuration's result store needs. It
// is idempotent; serve does the same at start-up.
func runMigrate(args []string, stdout, stderr io.Writer) int {
	var f settingsFlags
	fs := newFlagSet("migrate", stdout, stderr)
	f.register(fs.FlagSet)
	set, err := parseWithEnv(fs, args)
	if err != nil {
		return exitCode(err)
	}
	f.set = set
	loaded, err := f.load(config.Sources{}) // without --config: the defaults and the flags
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	spec := cassandraSpec(loaded)
	if spec == nil {
		fmt.Fprintln(stderr, "migrate: no Cassandra configured: set spec.results.cassandra in a SwitchyardConfig or --cassandra-hosts")
		return 2
	}
	cfg, err := spec.Config(zap.NewNop(), nil)
	if err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return 1
	}
	if err := cassandra.Migrate(cfg); err != nil {
		fmt.Fprintln(stderr, "migrate:", err)
		return 1
	}
	fmt.Fprintf(stdout, "schema of keyspace %s is up to date\n", spec.Keyspace)
	return 0
}
