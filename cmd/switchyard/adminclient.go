package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/switchyard-events/switchyard/router"
	"github.com/switchyard-events/switchyard/router/broker"
)

const eventsUsage = `usage: switchyard events get ID [--admin-url URL] [-o json|yaml|table]
       switchyard events list [--broker NS/NAME] [--trigger NS/NAME] [--status S] [--type T] [--source S] [--since T] [--until T] [--limit N] [-o table|json]
       switchyard events tail [the same filters] [--for D]
       switchyard events trace ID [--admin-url URL] [-o text|json]
       switchyard events explain --broker NS/NAME --type T --source S [--subject S] [--ext k=v]... [--data JSON|@FILE|@-] [-o table|json]`

// runEvents is `switchyard events get ID` (where did the event go) and `switchyard events
// explain` (which triggers of a broker an event like this one matches, and why not), asked of a
// running router.
func runEvents(args []string, stdout, stderr io.Writer) int {
	if helpAsked(args[:min(1, len(args))]) {
		fmt.Fprintln(stdout, eventsUsage)
		return 0
	}
	if len(args) >= 1 && args[0] == "explain" {
		return runExplain(args[1:], os.Stdin, stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "trace" {
		return runTrace(args[1:], stdout, stderr)
	}
	if len(args) >= 1 && (args[0] == "list" || args[0] == "tail") {
		return runList(args[0], args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "get" {
		fmt.Fprintln(stderr, eventsUsage)
		return 2
	}
	return runGet(args[1:], stdout, stderr)
}

// runGet is `switchyard events get ID`: every trigger's outcome for the event, as the admin API's
// JSON (the default), YAML or a table. The id may come before or after the flags; `-h` is help.
func runGet(args []string, stdout, stderr io.Writer) int {
	ea, code, ok := parseEventArgs("get", []string{"json", "yaml", "table"}, args, stdout, stderr)
	if !ok {
		return code
	}
	body, code := ea.fetch(stderr, "")
	if code != 0 {
		return code
	}
	switch ea.output {
	case "yaml":
		var doc any
		if err := json.Unmarshal(body, &doc); err != nil {
			fmt.Fprintln(stderr, "events get: the admin API answered something else than outcomes:", err)
			return 1
		}
		out, err := yaml.Marshal(doc)
		if err != nil {
			fmt.Fprintln(stderr, "events get:", err)
			return 1
		}
		_, _ = stdout.Write(out)
	case "table":
		var got struct {
			Outcomes []struct {
				Trigger, Status, LastError string
				Attempts, LastCode         int
				LatencyMs                  float64
				Finished                   time.Time
			} `json:"outcomes"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			fmt.Fprintln(stderr, "events get: the admin API answered something else than outcomes:", err)
			return 1
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "TRIGGER\tSTATUS\tATTEMPTS\tCODE\tLATENCY\tFINISHED\tERROR")
		for _, o := range got.Outcomes {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1fms\t%s\t%s\n", o.Trigger, o.Status, o.Attempts, o.LastCode, o.LatencyMs, o.Finished.UTC().Format(time.RFC3339Nano), o.LastError)
		}
		_ = tw.Flush()
	default:
		_, _ = stdout.Write(body)
	}
	return 0
}

// eventArgs are the parsed arguments of `events get` and `events trace`: the event's id (before
// or after the flags), the admin URL and credentials, and -o.
type eventArgs struct {
	admin, output, id string
	cred              adminCredentials
}

// parseEventArgs parses them; outputs are the values -o takes, the first the default. !ok: the
// command ends with code (-h, bad flags, no id or a second one, another -o).
func parseEventArgs(verb string, outputs, args []string, stdout, stderr io.Writer) (*eventArgs, int, bool) {
	if helpAsked(args) {
		fmt.Fprintln(stdout, eventsUsage)
		return nil, 0, false
	}
	fs := newFlagSet("events "+verb, stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	output := fs.String("o", outputs[0], strings.Join(outputs[:len(outputs)-1], ", ")+" or "+outputs[len(outputs)-1])
	ea := &eventArgs{}
	ea.cred.register(fs.FlagSet)
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		ea.id, args = args[0], args[1:]
	}
	if _, err := parseWithEnv(fs, args); err != nil {
		return nil, exitCode(err), false
	}
	rest := fs.Args()
	if ea.id == "" && len(rest) > 0 {
		ea.id, rest = rest[0], rest[1:]
	}
	switch {
	case len(rest) > 0:
		fmt.Fprintf(stderr, "events %s: one event id, not %q too\n", verb, rest)
		return nil, 2, false
	case ea.id == "":
		fmt.Fprintln(stderr, eventsUsage)
		return nil, 2, false
	case !slices.Contains(outputs, *output):
		fmt.Fprintf(stderr, "events %s: -o %q: want %s or %s\n", verb, *output, strings.Join(outputs[:len(outputs)-1], ", "), outputs[len(outputs)-1])
		return nil, 2, false
	}
	ea.admin, ea.output = *admin, *output
	return ea, 0, true
}

// fetch GETs the event's resource under /v1/events/{id} (suffix "" or "/path").
func (ea *eventArgs) fetch(stderr io.Writer, suffix string) ([]byte, int) {
	return ea.cred.fetch(stderr, http.MethodGet, strings.TrimRight(ea.admin, "/")+"/v1/events/"+url.PathEscape(ea.id)+suffix)
}

// runList is `switchyard events list` (one page of outcomes, newest first) and `switchyard
// events tail` (new outcomes as they are recorded, oldest first, polling the admin API).
func runList(verb string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("events "+verb, stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	filters := map[string]*string{}
	for _, f := range []struct{ name, help string }{
		{"broker", "NAMESPACE/NAME: only this broker's events"},
		{"trigger", "NAMESPACE/NAME: only this trigger's outcomes (required with the Cassandra result store)"},
		{"status", "delivered, dead-lettered, failed, reply-failed or unmatched"},
		{"type", "only events of this type"},
		{"source", "only events of this source"},
		{"since", "only outcomes finished since then: an RFC 3339 time, or a duration back from now (10m, 2h)"},
		{"until", "only outcomes finished until then: an RFC 3339 time, or a duration back from now"},
	} {
		filters[f.name] = fs.String(f.name, "", f.help)
	}
	limit := fs.Int("limit", 50, "how many outcomes (list: one page; 1 to 1000)")
	output := fs.String("o", "table", "table or json")
	duration := fs.Duration("for", 0, "tail: stop after this long (0: until interrupted)")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	if !absoluteTimes("events "+verb, filters, stderr) {
		return 2
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "events %s: -o %q: want table or json\n", verb, *output)
		return 2
	}
	query := func(since string) string {
		q := url.Values{}
		for name, v := range filters {
			if *v != "" {
				q.Set(name, *v)
			}
		}
		if since != "" {
			q.Set("since", since)
		}
		q.Set("limit", strconv.Itoa(*limit))
		return strings.TrimRight(*admin, "/") + "/v1/events?" + q.Encode()
	}
	type page struct {
		Outcomes []json.RawMessage `json:"outcomes"`
		NextPage string            `json:"nextPage"`
	}
	type row struct {
		EventID, Type, Broker, Trigger, Status string
		Attempts, LastCode                     int
		Finished                               time.Time
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
	header := func() { fmt.Fprintln(tw, "FINISHED\tEVENT\tTYPE\tBROKER\tTRIGGER\tSTATUS\tATTEMPTS\tCODE") }
	show := func(raw json.RawMessage) {
		if *output == "json" {
			fmt.Fprintf(stdout, "%s\n", compactJSON(raw))
			return
		}
		var r row
		_ = json.Unmarshal(raw, &r)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", r.Finished.UTC().Format(time.RFC3339Nano), r.EventID, r.Type, r.Broker, r.Trigger, r.Status, r.Attempts, r.LastCode)
	}
	if verb == "list" {
		body, code := cred.fetch(stderr, http.MethodGet, query(*filters["since"]))
		if code != 0 {
			return code
		}
		if *output == "json" {
			_, _ = stdout.Write(body)
			return 0
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			fmt.Fprintln(stderr, "events list: the admin API answered something else than outcomes:", err)
			return 1
		}
		header()
		for _, o := range p.Outcomes {
			show(o)
		}
		_ = tw.Flush()
		if p.NextPage != "" {
			fmt.Fprintf(stdout, "more: the admin API's page=%s continues\n", p.NextPage)
		}
		return 0
	}
	// tail: the router's stream of outcomes as they are recorded (GET /v1/tail), oldest first.
	q := url.Values{}
	for name, v := range filters {
		if *v != "" {
			q.Set(name, *v)
		}
	}
	ctx := context.Background()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*admin, "/")+"/v1/tail?"+q.Encode(), nil)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if code := cred.authorize(req, stderr); code != 0 {
		return code
	}
	resp, err := http.DefaultClient.Do(req) // no timeout: the stream lasts until --for or Ctrl-C
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		fmt.Fprintf(stderr, "%s: %s", resp.Status, body)
		return 1
	}
	if *output == "table" {
		header()
		_ = tw.Flush()
	}
	lines := bufio.NewScanner(resp.Body)
	lines.Buffer(make([]byte, 64<<10), 8<<20)
	kind := ""
	for lines.Scan() {
		line := lines.Text()
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			kind = v
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		switch kind {
		case "problem":
			fmt.Fprintln(stderr, "events tail:", data)
			return 1
		case "notice":
			fmt.Fprintln(stderr, "events tail:", data)
			continue
		}
		show(json.RawMessage(data))
		_ = tw.Flush()
	}
	if ctx.Err() != nil {
		return 0 // --for is over
	}
	fmt.Fprintln(stderr, "events tail: the router closed the stream (restarting or stopping?)")
	return 1
}

func compactJSON(raw []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// runExplain is `switchyard events explain`: the event described by the flags, as send would
// build it, judged by every trigger of --broker without being delivered.
func runExplain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("events explain", stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	brokerRef := fs.String("broker", "", "NAMESPACE/NAME of the broker whose triggers judge the event (required)")
	var ef eventFlags
	ef.register(fs.FlagSet)
	typ, source := ef.typ, ef.source
	output := fs.String("o", "table", "table or json")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	ns, name, ok := strings.Cut(*brokerRef, "/")
	switch {
	case !ok || ns == "" || name == "":
		fmt.Fprintln(stderr, "events explain: --broker NAMESPACE/NAME is required")
		return 2
	case *typ == "" || *source == "":
		fmt.Fprintln(stderr, "events explain: --type and --source are required (the attributes every event has)")
		return 2
	case *output != "table" && *output != "json":
		fmt.Fprintf(stderr, "events explain: -o %q: want table or json\n", *output)
		return 2
	}
	e, err := ef.event(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "events explain:", err)
		return 2
	}
	structured, _ := json.Marshal(e)
	u := fmt.Sprintf("%s/v1/brokers/%s/%s/explain", strings.TrimRight(*admin, "/"), url.PathEscape(ns), url.PathEscape(name))
	answer, code := cred.fetchWith(stderr, http.MethodPost, u, "application/cloudevents+json", structured)
	if code != 0 {
		return code
	}
	if *output == "json" {
		_, _ = stdout.Write(answer)
		return 0
	}
	var res struct {
		Matched  int
		Triggers []broker.Verdict
	}
	if err := json.Unmarshal(answer, &res); err != nil {
		fmt.Fprintln(stderr, "events explain: the admin API answered something else than verdicts:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "TRIGGER\tMATCHES\tWHY NOT")
	for _, v := range res.Triggers {
		fmt.Fprintf(tw, "%s\t%v\t%s\n", v.Trigger, v.Matches, v.Why)
	}
	_ = tw.Flush()
	fmt.Fprintf(stdout, "%d of %d triggers of %s match\n", res.Matched, len(res.Triggers), *brokerRef)
	return 0
}

// runRedrive is `switchyard redrive --trigger NS/NAME [--since T] [--event ID]`.
func runRedrive(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("redrive", stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	trigger := fs.String("trigger", "", "NAMESPACE/NAME of the trigger whose failed events to re-queue, or NAMESPACE/kafkasource:NAME for a KafkaSource's")
	brokerRef := fs.String("broker", "", "NAMESPACE/NAME: every trigger of this broker (without --trigger)")
	event := fs.String("event", "", "only this event id")
	filters := map[string]*string{}
	for _, f := range []struct{ name, usage string }{
		{"since", "only outcomes finished since then: an RFC 3339 time, or a duration back from now (10m, 2h)"},
		{"until", "only outcomes finished until then: an RFC 3339 time, or a duration back from now"},
		{"status", "only failed, dead-lettered or reply-failed outcomes"},
		{"type", "only events of this type"},
		{"source", "only events of this source"},
	} {
		filters[f.name] = fs.String(f.name, "", f.usage)
	}
	dryRun := fs.Bool("dry-run", false, "count what would be re-queued, per trigger, and send nothing")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	named := *trigger
	if named == "" {
		named = *brokerRef
	}
	ref, ok := router.ParseRef(named)
	if !ok {
		fmt.Fprintln(stderr, "redrive: --trigger NAMESPACE/NAME or --broker NAMESPACE/NAME is required")
		return 2
	}
	if !absoluteTimes("redrive", filters, stderr) {
		return 2
	}
	q := url.Values{}
	for name, v := range filters {
		if *v != "" {
			q.Set(name, *v)
		}
	}
	if *event != "" {
		q.Set("event", *event)
	}
	if *dryRun {
		q.Set("dryRun", "true")
	}
	base := strings.TrimRight(*admin, "/")
	if *trigger != "" {
		return cred.call(stdout, stderr, http.MethodPost, fmt.Sprintf("%s/v1/triggers/%s/%s/redrive?%s", base, url.PathEscape(ref.Namespace), url.PathEscape(ref.Name), q.Encode()))
	}
	q.Set("broker", *brokerRef)
	return cred.call(stdout, stderr, http.MethodPost, base+"/v1/redrive?"+q.Encode())
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
	return c.fetchWith(stderr, method, u, "", nil)
}

// authorize puts the bearer token (--token, or --token-file read now) on req; a status code to
// exit with when the file cannot be read, else 0.
func (c *adminCredentials) authorize(req *http.Request, stderr io.Writer) int {
	token := c.token
	if c.tokenFile != "" {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			fmt.Fprintln(stderr, "reading --token-file:", err)
			return 2
		}
		token = strings.TrimSpace(string(b))
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return 0
}

// fetchWith is fetch with a request body of contentType.
func (c *adminCredentials) fetchWith(stderr io.Writer, method, u, contentType string, payload []byte) ([]byte, int) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequest(method, u, rd)
	if contentType != "" && err == nil {
		req.Header.Set("Content-Type", contentType)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 2
	}
	if code := c.authorize(req, stderr); code != 0 {
		return nil, code
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
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

// absoluteTimes checks the --since and --until of filters and turns a duration back from now
// ("10m") into the RFC 3339 time it means, which is what the admin API is sent.
func absoluteTimes(cmd string, filters map[string]*string, stderr io.Writer) bool {
	now := time.Now()
	for _, name := range []string{"since", "until"} {
		v, ok := filters[name]
		if !ok || *v == "" {
			continue
		}
		if d, err := time.ParseDuration(*v); err == nil && d >= 0 {
			*v = now.Add(-d).UTC().Format(time.RFC3339Nano)
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, *v); err != nil {
			fmt.Fprintf(stderr, "%s: --%s %q: want an RFC 3339 time such as 2026-11-22T08:00:00Z, or a duration back from now such as 10m\n", cmd, name, *v)
			return false
		}
	}
	return true
}
