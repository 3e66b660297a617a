package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/switchyard-events/switchyard/router/cehttp"
)

// repeated collects a flag given several times (--ext, --header).
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// eventFlags describe one event on the command line, for send and events explain alike.
type eventFlags struct {
	typ, source, id, subject, data *string
	exts                           repeated
}

func (f *eventFlags) register(fs *flag.FlagSet) {
	f.typ = fs.String("type", "", "event type (required)")
	f.source = fs.String("source", "", "event source (required)")
	f.id = fs.String("id", "", "event id (default: a random UUID)")
	f.subject = fs.String("subject", "", "event subject")
	f.data = fs.String("data", "", "event data: the text itself, @FILE for a file's content, @- for standard input; JSON is sent as application/json, anything else as text/plain")
	fs.Var(&f.exts, "ext", "extension attribute name=value (repeatable)")
}

// event builds the event the flags describe, its data read from stdin for @-.
func (f *eventFlags) event(stdin io.Reader) (*event.Event, error) {
	body, err := sendData(*f.data, stdin)
	if err != nil {
		return nil, err
	}
	return buildEvent(*f.id, *f.typ, *f.source, *f.subject, body, f.exts)
}

const sendUsage = "usage: switchyard send URL --type T --source S [--id ID] [--subject S] [--data JSON|@FILE|@-] [--ext k=v]... [--header 'Name: value']... [--token T] [--mode binary|structured]"

func runSend(args []string, stdout, stderr io.Writer) int {
	return send(args, os.Stdin, stdout, stderr)
}

func send(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("send", stdout, stderr)
	var ef eventFlags
	ef.register(fs.FlagSet)
	typ, source := ef.typ, ef.source
	mode := fs.String("mode", "binary", "binary or structured")
	token := fs.String("token", "", "a bearer token for a broker with sender authentication: sent as Authorization: Bearer TOKEN (env SWITCHYARD_TOKEN)")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	var headers repeated
	fs.Var(&headers, "header", "an HTTP header 'Name: value' to send (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), sendUsage)
		fs.PrintDefaults()
	}
	// Accept the URL before or after the flags.
	var url string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		url, args = args[0], args[1:]
	}
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	if url == "" && fs.NArg() > 0 {
		url = fs.Arg(0)
	}
	var missing []string
	for _, m := range []struct {
		what  string
		unset bool
	}{{"the URL (e.g. http://localhost:8080/default/default)", url == ""}, {"--type", *typ == ""}, {"--source", *source == ""}} {
		if m.unset {
			missing = append(missing, m.what)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(stderr, "send: missing %s\n%s\n", strings.Join(missing, ", "), sendUsage)
		return 2
	}
	e, err := ef.event(stdin)
	if err != nil {
		fmt.Fprintln(stderr, "send:", err)
		return 2
	}
	req, err := newEventRequest(url, e, *mode)
	if err != nil {
		fmt.Fprintln(stderr, "send:", err)
		return 2
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			fmt.Fprintf(stderr, "send: --header %q: want 'Name: value'\n", h)
			return 2
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "send:", err)
		return 1
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	fmt.Fprintf(stdout, "%s %s (event id %s)\n", resp.Proto, resp.Status, e.ID())
	printReply(stdout, resp.Header, reply)
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
}

// maxSendData bounds --data from a file or standard input (a broker's default limit is 4 MiB).
const maxSendData = 64 << 20

// sendData is --data's bytes: the text itself, a file's content (@FILE) or standard input (@-).
func sendData(data string, stdin io.Reader) (string, error) {
	path, ok := strings.CutPrefix(data, "@")
	if !ok {
		return data, nil
	}
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, maxSendData+1))
	} else {
		b, err = os.ReadFile(path)
	}
	switch {
	case err != nil:
		return "", fmt.Errorf("--data %s: %w", data, err)
	case len(b) > maxSendData:
		return "", fmt.Errorf("--data %s: more than %d MiB: no broker takes an event that large", data, maxSendData>>20)
	}
	return string(b), nil
}

func buildEvent(id, typ, source, subject, data string, exts []string) (*event.Event, error) {
	e := event.New()
	if id == "" {
		id = uuid.NewString()
	}
	e.SetID(id)
	e.SetType(typ)
	e.SetSource(source)
	e.SetTime(time.Now())
	if subject != "" {
		e.SetSubject(subject)
	}
	if data != "" {
		ct := "text/plain"
		if json.Valid([]byte(data)) {
			ct = "application/json"
		}
		e.SetDataContentType(ct)
		e.DataEncoded = []byte(data)
	}
	for _, kv := range exts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--ext %q: want name=value", kv)
		}
		if err := e.Context.SetExtension(k, v); err != nil {
			return nil, fmt.Errorf("--ext %q: %w", kv, err)
		}
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

func newEventRequest(url string, e *event.Event, mode string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		return nil, err
	}
	var body []byte
	switch mode {
	case "binary":
		body = cehttp.WriteBinary(req.Header, e)
	case "structured":
		if body, err = cehttp.EncodeStructured(e); err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", cehttp.ContentTypeStructured)
	default:
		return nil, fmt.Errorf("--mode %q: want binary or structured", mode)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	return req, nil
}

// printReply prints a response: a CloudEvent reply as JSON, or the body as text.
func printReply(w io.Writer, h http.Header, body []byte) {
	if cehttp.DetectMode(h) != cehttp.NotCloudEvent {
		if events, err := cehttp.Decode(h, body); err == nil {
			for _, ev := range events {
				out, _ := json.MarshalIndent(ev, "", "  ")
				fmt.Fprintf(w, "reply:\n%s\n", out)
			}
			return
		}
	}
	if len(bytes.TrimSpace(body)) > 0 {
		fmt.Fprintf(w, "%s\n", bytes.TrimSpace(body))
	}
}

var _ flag.Value = (*repeated)(nil)
