package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/switchyard-events/switchyard/router"
)

const replayUsage = `usage:
  switchyard replay --broker NS/NAME --from T [--to T] (--trigger NS/NAME ... | --all-triggers) [--follow]
  switchyard replay --dry-run --config CANDIDATE.yaml --broker NS/NAME --from T [--to T]
  switchyard replay status ID | cancel ID | list`

// runReplay starts, follows, lists and cancels replays of a broker's archive (docs/archive.md),
// through a running router's admin API.
func runReplay(args []string, stdout, stderr io.Writer) int {
	if len(args) >= 1 && (args[0] == "status" || args[0] == "cancel" || args[0] == "list") {
		return runReplayCommand(args[0], args[1:], stdout, stderr)
	}
	fs := newFlagSet("replay", stdout, stderr)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), replayUsage); fs.PrintDefaults() }
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	brokerRef := fs.String("broker", "", "NAMESPACE/NAME of the broker whose archive to replay (required)")
	from := fs.String("from", "", "replay the events received from this RFC 3339 time (required)")
	to := fs.String("to", "", "... until this RFC 3339 time, excluded (default: now)")
	var triggers repeated
	fs.Var(&triggers, "trigger", "NAMESPACE/NAME of a trigger to replay to (repeatable); its filter still applies")
	all := fs.Bool("all-triggers", false, "replay to every trigger of the broker")
	follow := fs.Bool("follow", false, "print the run's progress until it ends; exit 0 only when it is done")
	dryRun := fs.Bool("dry-run", false, "compare, over the range, what each trigger matches now and under --config; deliver nothing")
	candidate := fs.String("config", "", "dry run: the candidate configuration (a YAML file, as serve takes)")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	ref, ok := router.ParseRef(*brokerRef)
	if !ok {
		fmt.Fprintln(stderr, "replay: --broker NAMESPACE/NAME is required")
		return 2
	}
	if *from == "" {
		fmt.Fprintln(stderr, "replay: --from is required (an RFC 3339 time such as 2026-11-22T08:00:00Z)")
		return 2
	}
	q := url.Values{"from": {*from}}
	for flag, v := range map[string]string{"from": *from, "to": *to} {
		if v == "" {
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			fmt.Fprintf(stderr, "replay: --%s must be an RFC 3339 time such as 2026-11-22T08:00:00Z\n", flag)
			return 2
		}
		q.Set(flag, v)
	}
	base := strings.TrimRight(*admin, "/")
	u := fmt.Sprintf("%s/v1/brokers/%s/%s/replays", base, url.PathEscape(ref.Namespace), url.PathEscape(ref.Name))
	if *dryRun {
		if *candidate == "" {
			fmt.Fprintln(stderr, "replay: --dry-run needs --config CANDIDATE.yaml")
			return 2
		}
		data, err := os.ReadFile(*candidate)
		if err != nil {
			fmt.Fprintln(stderr, "replay:", err)
			return 2
		}
		q.Set("dryRun", "true")
		q.Set("config", filepath.Base(*candidate))
		body, code := cred.fetchWith(stderr, http.MethodPost, u+"?"+q.Encode(), "application/yaml", data)
		if code == 0 {
			_, _ = stdout.Write(body)
		}
		return code
	}
	for _, t := range triggers {
		q.Add("trigger", t)
	}
	if *all {
		q.Set("allTriggers", "true")
	}
	body, code := cred.fetch(stderr, http.MethodPost, u+"?"+q.Encode())
	if code != 0 {
		return code
	}
	_, _ = stdout.Write(body)
	if !*follow {
		return 0
	}
	var run struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(body, &run)
	return followReplay(&cred, base, run.ID, stdout, stderr)
}

// followReplay prints a run's progress every second until it ends.
func followReplay(cred *adminCredentials, base, id string, stdout, stderr io.Writer) int {
	for {
		body, code := cred.fetch(stderr, http.MethodGet, base+"/v1/replays/"+url.PathEscape(id))
		if code != 0 {
			return code
		}
		var st struct {
			State                                string
			Read, Delivered, Failed, NotMatching int64
			Remaining, Error                     string
		}
		_ = json.Unmarshal(body, &st)
		fmt.Fprintf(stdout, "%s %s: read %d, delivered %d, failed %d, not matching %d", id, st.State, st.Read, st.Delivered, st.Failed, st.NotMatching)
		if st.Remaining != "" {
			fmt.Fprintf(stdout, ", about %s left", st.Remaining)
		}
		if st.Error != "" {
			fmt.Fprintf(stdout, ": %s", st.Error)
		}
		fmt.Fprintln(stdout)
		switch st.State {
		case "running":
			time.Sleep(time.Second)
		case "done":
			return 0
		default:
			return 1
		}
	}
}

func runReplayCommand(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("replay "+cmd, stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	var id string
	if cmd != "list" {
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			fmt.Fprintf(stderr, "replay %s: give the replay's id first (switchyard replay list shows them)\n", cmd)
			return 2
		}
		id, args = args[0], args[1:]
	}
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	base := strings.TrimRight(*admin, "/")
	if cmd == "list" {
		return cred.call(stdout, stderr, http.MethodGet, base+"/v1/replays")
	}
	rest := []string{id}
	method := http.MethodGet
	if cmd == "cancel" {
		method = http.MethodDelete
	}
	return cred.call(stdout, stderr, method, base+"/v1/replays/"+url.PathEscape(rest[0]))
}
