package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// TestMigrationGuideStep1: the first step of docs/migrating-from-knative.md, its shell block run
// as written (kubectl, built with the API server, exporting a real cluster's Knative resources as
// the kind: List it writes; then switchyard validate on the export): it must pass and say what is
// served.
func TestMigrationGuideStep1(t *testing.T) {
	c := startCluster(t)
	ns := c.namespace(t, "shop")
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "MTChannelBasedBroker"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "orders", "default", `  filter:
    attributes:
      type: order.created
  subscriber:
    ref:
      apiVersion: serving.knative.dev/v1
      kind: Service
      name: orders
`))
	c.apply(t, gvrSourceV1, fmt.Sprintf(`apiVersion: sources.knative.dev/v1
kind: KafkaSource
metadata: {name: payments, namespace: %s}
spec:
  bootstrapServers: [kafka.kafka.svc:9092]
  topics: [payments]
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`, ns))

	guide, err := os.ReadFile("../../docs/migrating-from-knative.md")
	if err != nil {
		t.Fatal(err)
	}
	step := regexp.MustCompile("(?s)1\\. \\*\\*[^\\n]*\\n.*?```sh\\n(.*?)```").FindSubmatch(guide)
	if step == nil {
		t.Fatal("no shell block in the guide's step 1")
	}
	script := string(step[1])
	if !strings.Contains(script, "kubectl get") || !strings.Contains(script, "switchyard validate") {
		t.Fatalf("step 1 is no longer an export and a validate:\n%s", script)
	}
	dir := t.TempDir()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+c.kubeconfig,
		"PATH="+testenv.KubeAssets(t)+string(os.PathListSeparator)+filepath.Dir(binary)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("step 1 as written:\n%s\nfailed: %v\n%s", script, err, out)
	}
	export, _ := os.ReadFile(filepath.Join(dir, "knative.yaml"))
	if !strings.Contains(string(export), "kind: List") || !strings.Contains(string(export), "resourceVersion:") {
		t.Errorf("the export is not what kubectl writes (a List, server fields and all):\n%s", export)
	}
	if !strings.Contains(string(out), "valid: 1 broker(s), 1 trigger(s), 1 KafkaSource(s)") {
		t.Errorf("validate did not report the served objects:\n%s", out)
	}
}
