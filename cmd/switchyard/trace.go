package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/switchyard-events/switchyard/router/admin"
)

// runTrace is `switchyard events trace ID`: the event's whole path, drawn as a tree (or the
// API's JSON with -o json).
func runTrace(args []string, stdout, stderr io.Writer) int {
	ea, code, ok := parseEventArgs("trace", []string{"text", "json"}, args, stdout, stderr)
	if !ok {
		return code
	}
	body, code := ea.fetch(stderr, "/path")
	if code != 0 {
		return code
	}
	if ea.output == "json" {
		_, _ = stdout.Write(body)
		return 0
	}
	var root admin.PathNode
	if err := json.Unmarshal(body, &root); err != nil {
		fmt.Fprintln(stderr, "events trace: the admin API answered something else than a path:", err)
		return 1
	}
	drawPath(stdout, &root, "", "")
	return 0
}

// drawPath writes n and what follows from it, one line each, with the tree's branches: first is
// the prefix of n's own line, rest that of the lines under it.
func drawPath(w io.Writer, n *admin.PathNode, first, rest string) {
	line := n.EventID
	if n.Type != "" {
		line += fmt.Sprintf("  %s  %s  at %s  %s", n.Type, n.Source, n.Broker, n.Received.UTC().Format("15:04:05.000"))
	}
	if n.Note != "" {
		line += "  (" + n.Note + ")"
	}
	fmt.Fprintln(w, first+line)
	for i, d := range n.Deliveries {
		branch, under := "├── ", "│   "
		if i == len(n.Deliveries)-1 {
			branch, under = "└── ", "    "
		}
		what := fmt.Sprintf("%s  %s  %d attempt", d.Trigger, d.Status, d.Attempts)
		if d.Attempts != 1 {
			what += "s"
		}
		if d.LastCode != 0 {
			what += fmt.Sprintf(", %d", d.LastCode)
		}
		what += "  → " + d.Subscriber + "  " + d.Finished.UTC().Format("15:04:05.000")
		if d.LastError != "" && d.Status != "delivered" {
			what += "  " + d.LastError
		}
		if d.TraceID != "" {
			what += "  trace " + d.TraceID
		}
		fmt.Fprintln(w, rest+branch+what)
		below := rest + under
		if d.Sink != "" {
			tail := "└── "
			if d.Next != nil {
				tail = "├── "
			}
			fmt.Fprintln(w, below+tail+d.Sink)
		}
		if d.Next != nil {
			drawPath(w, d.Next, below+"└── "+d.Next.Via+" ", below+"    ")
		}
	}
}
