package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/switchyard-events/switchyard/router/config"
)

func runValidate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("validate", stderr)
	path := fs.String("config", "", "configuration file or directory (env SWITCHYARD_CONFIG)")
	if _, err := parseWithEnv(fs, args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "validate: --config is required")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w.Error())
	}
	fmt.Fprintf(stdout, "%s: valid: %d broker(s), %d trigger(s) in %d file(s)\n", *path, len(cfg.Brokers), len(cfg.Triggers), len(cfg.Files))
	return 0
}

// printConfigError prints one line per problem: file:line: field.path: message.
func printConfigError(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		return
	}
	fmt.Fprintln(w, err)
}
