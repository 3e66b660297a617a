package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExplainWhyNotDelivered (issue #21): `switchyard events explain` judges an event like the one
// described by every trigger of a broker, without delivering it, and says which filter clause
// refuses it; a reader of a protected admin API may ask (it changes nothing).
func TestExplainWhyNotDelivered(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "reader"), []byte("r3ader-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, nil)
	auth := "    auth:\n      readers: {tokens: [{file: " + filepath.Join(dir, "reader") + "}]}\n"
	manifests := brokerYAML("default") +
		triggerYAML("paid", "  broker: default\n  filter:\n    attributes: {type: order.paid}\n  subscriber:\n    uri: "+sub.URL+"\n") +
		triggerYAML("eu-orders", "  broker: default\n  filters:\n    - prefix: {type: order.}\n    - exact: {region: eu}\n  subscriber:\n    uri: "+sub.URL+"\n") +
		triggerYAML("big", "  broker: default\n  filters:\n    - cesql: \"type = 'order.created' AND qty > 10\"\n  subscriber:\n    uri: "+sub.URL+"\n")
	r := startRouterIn(t, t.TempDir(), manifests, "", auth)

	run := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append([]string{"events", "explain", "--admin-url", r.Admin, "--token", "r3ader-token"}, args...)...).CombinedOutput()
		return string(out), err
	}
	out, err := run("--broker", "default/default", "--type", "order.created", "--source", "/shop", "--ext", "region=us", "--ext", "qty=3")
	if err != nil {
		t.Fatalf("events explain: %v\n%s", err, out)
	}
	for _, want := range []string{
		`paid        false     filter.attributes: type is "order.created", not "order.paid"`,
		`eu-orders   false     all[1]: exact: region is "us", not "eu"`,
		`big         false     all[0]: cesql "type = 'order.created' AND qty > 10" is false`,
		"0 of 3 triggers of default/default match",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	out, err = run("--broker", "default/default", "--type", "order.created", "--source", "/shop", "--ext", "region=eu", "--ext", "qty=12", "-o", "json")
	if err != nil || !strings.Contains(out, `"matched": 2`) {
		t.Errorf("a matching event: %v\n%s", err, out)
	}
	if sub.count() != 0 {
		t.Errorf("explain delivered %d events; it must deliver none", sub.count())
	}
	if out, err := run("--broker", "default/nope", "--type", "t", "--source", "s"); err == nil || !strings.Contains(out, "404") {
		t.Errorf("an unknown broker: %v\n%s", err, out)
	}
}
