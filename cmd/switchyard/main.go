// Command switchyard is the Switchyard CloudEvents router.
//
//	switchyard serve --config PATH       run the router
//	switchyard validate --config PATH    check a configuration exactly as serve would load it
//	switchyard send URL --type T ...     send one CloudEvent and print the answer
//	switchyard function --addr ADDR      a tiny demo subscriber that prints what it receives
//	switchyard events get ID             every trigger's outcome for an event (asks a running router)
//	switchyard redrive --trigger NS/NAME re-queue a trigger's failed events (asks a running router)
//	switchyard migrate --config PATH     create the Cassandra keyspace and tables
//	switchyard version
//
// Every flag can also be set through an environment variable: --admin-addr is
// SWITCHYARD_ADMIN_ADDR, and so on. A flag on the command line wins over the variable.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// version is stamped at build time: -ldflags "-X main.version=...".
var version = "dev"

// commands is the explicit list of subcommands.
var commands = map[string]func(args []string, stdout, stderr io.Writer) int{
	"serve":    runServe,
	"validate": runValidate,
	"send":     runSend,
	"function": runFunction,
	"events":   runEvents,
	"redrive":  runRedrive,
	"migrate":  runMigrate,
	"version": func(_ []string, stdout, _ io.Writer) int {
		fmt.Fprintln(stdout, "switchyard", version)
		return 0
	},
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		usage(os.Stderr)
		os.Exit(2)
	}
	os.Exit(commands[os.Args[1]](os.Args[2:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: switchyard <command> [flags]

commands:
  serve      run the router:                  switchyard serve --config examples/demo.yaml
  validate   check a configuration:           switchyard validate --config PATH
  send       send a CloudEvent:               switchyard send http://localhost:8080/default/default --type T --source S
  function   run a demo subscriber function:  switchyard function --addr 127.0.0.1:8081
  events     where did an event go:           switchyard events get ID
  redrive    re-queue failed events:          switchyard redrive --trigger NS/NAME [--since T] [--event ID]
  migrate    create the Cassandra schema:     switchyard migrate --config PATH [--cassandra-hosts H]
  version    print the version

Run 'switchyard <command> -h' for a command's flags.
`)
}

// newFlagSet returns a subcommand's flag set; parseWithEnv then reads each flag's SWITCHYARD_*
// variable before the command line.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// envName is the environment variable of a flag: admin-addr -> SWITCHYARD_ADMIN_ADDR.
func envName(flagName string) string {
	return "SWITCHYARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv parses args after applying SWITCHYARD_* variables, and returns the names of the flags
// that were set by either (so they override the configuration file).
func parseWithEnv(fs *flag.FlagSet, args []string) (map[string]bool, error) {
	set := map[string]bool{}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v, ok := os.LookupEnv(envName(f.Name)); ok && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
			set[f.Name] = true
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set, nil
}
