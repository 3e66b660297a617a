package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard-events/switchyard/router/broker"
)

// runEvents is `switchyard events get ID`: where did the event go, asked of a running router.
func runEvents(args []string, stdout, stderr io.Writer) int {
	if helpAsked(args[:min(1, len(args))]) {
		fmt.Fprintln(stdout, "usage: switchyard events get ID [--admin-url http://127.0.0.1:9090]")
		return 0
	}
	if len(args) < 2 || args[0] != "get" {
		fmt.Fprintln(stderr, "usage: switchyard events get ID [--admin-url http://127.0.0.1:9090]")
		return 2
	}
	id := args[1]
	fs := newFlagSet("events get", stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args[2:]); err != nil {
		return exitCode(err)
	}
	return cred.call(stdout, stderr, http.MethodGet, strings.TrimRight(*admin, "/")+"/v1/events/"+url.PathEscape(id))
}

// runRedrive is `switchyard redrive --trigger NS/NAME [--since T] [--event ID]`.
func runRedrive(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("redrive", stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	trigger := fs.String("trigger", "", "NAMESPACE/NAME of the trigger whose failed events to re-queue, or NAMESPACE/kafkasource:NAME for a KafkaSource's (required)")
	since := fs.String("since", "", "only outcomes finished since this RFC 3339 time")
	event := fs.String("event", "", "only this event id")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	ns, name, ok := strings.Cut(*trigger, "/")
	if !ok || ns == "" || name == "" {
		fmt.Fprintln(stderr, "redrive: --trigger NAMESPACE/NAME is required")
		return 2
	}
	if *since != "" {
		if _, err := time.Parse(time.RFC3339, *since); err != nil {
			fmt.Fprintln(stderr, "redrive: --since must be an RFC 3339 time such as 2026-11-22T08:00:00Z")
			return 2
		}
	}
	q := url.Values{}
	if *since != "" {
		q.Set("since", *since)
	}
	if *event != "" {
		q.Set("event", *event)
	}
	u := fmt.Sprintf("%s/v1/triggers/%s/%s/redrive?%s", strings.TrimRight(*admin, "/"), url.PathEscape(ns), url.PathEscape(name), q.Encode())
	return cred.call(stdout, stderr, http.MethodPost, u)
}

// adminCredentials are the bearer credentials the admin client sends (spec.admin.auth).
type adminCredentials struct{ token, tokenFile string }

func (c *adminCredentials) register(fs *flag.FlagSet) {
	fs.StringVar(&c.token, "token", "", "bearer token for an admin API with spec.admin.auth (env SWITCHYARD_TOKEN)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding that token (env SWITCHYARD_TOKEN_FILE)")
}

func (c *adminCredentials) call(stdout, stderr io.Writer, method, u string) int {
	body, code := c.fetch(stderr, method, u)
	if code != 0 {
		return code
	}
	_, _ = stdout.Write(body)
	return 0
}

// fetch sends one admin API request and returns the body of a 200, or the exit code of a failure
// (said on stderr).
func (c *adminCredentials) fetch(stderr io.Writer, method, u string) ([]byte, int) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 2
	}
	token := c.token
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "reading --token-file:", err)
			return nil, 2
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "%s: %s", resp.Status, body)
		return nil, 1
	}
	return body, 0
}

// runTriggers is `switchyard triggers`: every trigger of a running router with its counters, as a
// table like kubectl get's, or -o json.
func runTriggers(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("triggers", stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	output := fs.String("o", "table", "table or json")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "triggers: -o %q: want table or json\n", *output)
		return 2
	}
	body, code := cred.fetch(stderr, http.MethodGet, strings.TrimRight(*admin, "/")+"/v1/triggers")
	if code != 0 {
		return code
	}
	if *output == "json" {
		_, _ = stdout.Write(body)
		return 0
	}
	var list struct{ Triggers []broker.TriggerStatus }
	if err := json.Unmarshal(body, &list); err != nil {
		fmt.Fprintln(stderr, "triggers: the admin API answered something else than a trigger list:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tBROKER\tSUBSCRIBER\tMATCHED\tDELIVERED\tDEAD-LETTERED\tFAILED\tRETRIES\tIN-FLIGHT")
	for _, t := range list.Triggers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", t.Namespace, t.Name, t.Broker, t.Subscriber,
			t.Matched, t.Delivered, t.DeadLettered, t.Failed, t.Retries, t.InFlight)
	}
	_ = tw.Flush()
	return 0
}
