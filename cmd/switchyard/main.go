// Command switchyard is the Switchyard CloudEvents router.
//
//	switchyard serve --config PATH       run the router
//	switchyard validate --config PATH    check a configuration exactly as serve would load it
//	switchyard send URL --type T ...     send one CloudEvent and print the answer
//	switchyard function --addr ADDR      a tiny demo subscriber that prints what it receives
//	switchyard events get ID             every trigger's outcome for an event (asks a running router)
//	switchyard events explain --broker NS/NAME --type T --source S   which triggers match an event, and why not
//	switchyard triggers [-o json]        every trigger with its counters (asks a running router)
//	switchyard redrive --trigger NS/NAME re-queue a trigger's failed events (asks a running router)
//	switchyard trigger pause|resume NS/NAME   hold a trigger's deliveries, or let them go (asks a running router)
//	switchyard migrate --config PATH     create the Cassandra keyspace and tables
//	switchyard version
//
// Every flag can also be set through an environment variable: --admin-addr is
// SWITCHYARD_ADMIN_ADDR, and so on. A flag on the command line wins over the variable.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	// PingSources name IANA timezones; images without a zoneinfo database still know them.
	_ "time/tzdata"
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
	"triggers": runTriggers,
	"redrive":  runRedrive,
	"trigger":  runTrigger,
	"replay":   runReplay,
	"migrate":  runMigrate,
	"version": func(_ []string, stdout, _ io.Writer) int {
		fmt.Fprintln(stdout, "switchyard", version)
		return 0
	},
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is the command line: help asked for goes to stdout with status 0, a mistake to stderr with
// status 2, as command-line tools do.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	case "-version", "--version":
		args[0] = "version"
	}
	cmd := commands[args[0]]
	if cmd == nil {
		fmt.Fprintf(stderr, "switchyard: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return cmd(args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: switchyard <command> [flags]

commands:
  serve      run the router:                  switchyard serve --config examples/demo.yaml
  validate   check a configuration:           switchyard validate --config PATH
  send       send a CloudEvent:               switchyard send http://localhost:8080/default/default --type T --source S
  function   run a demo subscriber function:  switchyard function --addr 127.0.0.1:8081
  events     where it went, or why not:       switchyard events get ID | events explain --broker NS/NAME --type T --source S
  triggers   every trigger and its counters:  switchyard triggers [-o json]
  redrive    re-queue failed events:          switchyard redrive --trigger NS/NAME|--broker NS/NAME [--event ID] [--since T] [--until T] [--type T] [--source S] [--status S] [--dry-run]
  trigger    pause or resume a trigger:       switchyard trigger pause NS/NAME | trigger resume NS/NAME
  replay     replay a broker's archive:       switchyard replay --broker NS/NAME --from T --trigger NS/NAME [--follow] | --dry-run --config FILE | status ID | cancel ID | list
  migrate    create the Cassandra schema:     switchyard migrate --config PATH [--cassandra-hosts H]
  version    print the version (also --version)

Run 'switchyard <command> -h' for a command's flags.
`)
}

// cmdFlags is a subcommand's flag set, with where its help goes when asked for (-h).
type cmdFlags struct {
	*flag.FlagSet
	stdout io.Writer
}

// newFlagSet returns a subcommand's flag set; parseWithEnv then reads each flag's SWITCHYARD_*
// variable before the command line.
func newFlagSet(name string, stdout, stderr io.Writer) *cmdFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &cmdFlags{FlagSet: fs, stdout: stdout}
}

// exitCode is a command's status for a parse error: 0 when the error is that help was asked for
// (and printed on stdout), 2 for a mistake.
func exitCode(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

// helpAsked reports whether args ask for help before any "--".
func helpAsked(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// envName is the environment variable of a flag: admin-addr -> SWITCHYARD_ADMIN_ADDR.
func envName(flagName string) string {
	return "SWITCHYARD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseWithEnv parses args after applying SWITCHYARD_* variables, and returns the names of the flags
// that were set by either (so they override the configuration file).
func parseWithEnv(fs *cmdFlags, args []string) (map[string]bool, error) {
	if helpAsked(args) {
		fs.SetOutput(fs.stdout) // asked for, help is the output, not an error
	}
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
