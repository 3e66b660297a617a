package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchyard-events/switchyard/router"
)

const triggerUsage = `usage: switchyard trigger pause NAMESPACE/NAME [--admin-url URL] [--token T | --token-file F]
       switchyard trigger resume NAMESPACE/NAME [--admin-url URL] [--token T | --token-file F]

pause holds the trigger's deliveries until resume or until the router restarts; resume is refused
while the trigger's manifest pauses it (annotation switchyard.dev/paused: "true"). Both print the
admin API's answer, the trigger's state after: {"trigger", "paused", "pausedBy"}.`

// runTrigger is `switchyard trigger pause|resume NAMESPACE/NAME`, asked of a running router
// (POST /v1/triggers/{ns}/{name}/pause or /resume, an operator's call).
func runTrigger(args []string, stdout, stderr io.Writer) int {
	if helpAsked(args[:min(1, len(args))]) {
		fmt.Fprintln(stdout, triggerUsage)
		return 0
	}
	if len(args) == 0 || args[0] != "pause" && args[0] != "resume" {
		fmt.Fprintln(stderr, triggerUsage)
		return 2
	}
	verb, args := args[0], args[1:]
	fs := newFlagSet("trigger "+verb, stdout, stderr)
	admin := fs.String("admin-url", "http://127.0.0.1:9090", "the router's admin URL (env SWITCHYARD_ADMIN_URL)")
	var cred adminCredentials
	cred.register(fs.FlagSet)
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if _, err := parseWithEnv(fs, args); err != nil {
		return exitCode(err)
	}
	rest := fs.Args()
	if name == "" && len(rest) > 0 {
		name, rest = rest[0], rest[1:]
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "trigger %s: one trigger, not %q too\n", verb, rest)
		return 2
	}
	ref, ok := router.ParseRef(name)
	if !ok {
		fmt.Fprintf(stderr, "trigger %s: NAMESPACE/NAME of the trigger is required\n", verb)
		return 2
	}
	u := fmt.Sprintf("%s/v1/triggers/%s/%s/%s", strings.TrimRight(*admin, "/"), url.PathEscape(ref.Namespace), url.PathEscape(ref.Name), verb)
	return cred.call(stdout, stderr, http.MethodPost, u)
}
