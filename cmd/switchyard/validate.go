package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/switchyard-events/switchyard/router/config"
)

func runValidate(args []string, stdout, stderr io.Writer) int {
	var f settingsFlags
	fs := newFlagSet("validate", stdout, stderr)
	f.register(fs.FlagSet)
	set, err := parseWithEnv(fs, args)
	if err != nil {
		return exitCode(err)
	}
	f.set = set
	if f.config == "" && fs.NArg() == 1 {
		f.config = fs.Arg(0) // validate FILE
	}
	if f.config == "" || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "validate: name the configuration: switchyard validate PATH, or --config PATH (a file or a directory)")
		return 2
	}
	cfg, err := f.load(config.Sources{})
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stdout, "warning:", w.Error())
	}
	for _, s := range cfg.Skipped {
		fmt.Fprintln(stdout, "left alone:", s.String())
	}
	var objects string // the components' kinds, as served: ", 1 KafkaSink(s)"
	for _, k := range kinds() {
		if n := len(cfg.Objects[k.Kind()]); n > 0 {
			objects += fmt.Sprintf(", %d %s(s)", n, k.Kind())
		}
	}
	fmt.Fprintf(stdout, "%s: valid: %d broker(s), %d trigger(s), %d KafkaSource(s), %d PingSource(s), %d webhook source(s)%s served; %d object(s) left alone; in %d file(s)\n",
		f.config, len(cfg.Brokers), len(cfg.Triggers), len(cfg.KafkaSources), len(cfg.PingSources), len(cfg.Webhooks), objects, len(cfg.Skipped), len(cfg.Files))
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
