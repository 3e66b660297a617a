package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/switchyard-events/switchyard/test/testenv"
)

var gvrConfigMap = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}

// knativeEventing is the Knative Eventing release whose CRDs the Kafka-class controller test
// installs, taken from the Go module proxy as its source (config/core/resources).
const knativeEventing = "knative.dev/eventing@v0.48.0"

// knativeCRDs returns the paths of Knative's own CRD files, from its module.
func knativeCRDs(t *testing.T, files ...string) []string {
	t.Helper()
	cmd := exec.Command("go", "mod", "download", "-json", knativeEventing)
	cmd.Dir = t.TempDir() // outside any module: nothing is added to a go.mod
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go mod download %s: %v\n%s%s", knativeEventing, err, out.String(), stderr.String())
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out.Bytes(), &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go mod download %s: %v\n%s", knativeEventing, err, out.String())
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(mod.Dir, "config", "core", "resources", f)
	}
	return paths
}

// TestKubernetesKafkaClasses (issue #33): with --serve-kafka-classes, controller mode serves
// Brokers of Knative's Kafka and KafkaNamespaced classes, kept in the cluster under Knative's own
// CRDs, with the Kafka cluster and topic size of the ConfigMap each Broker's spec.config names (the
// router is given no Kafka of its own); a ConfigMap that is missing or wrong is the Broker's
// Ready=False until it is fixed; and every event accepted before and after a kill -9 of the router
// is delivered.
func TestKubernetesKafkaClasses(t *testing.T) {
	kafka := testenv.Kafka(t)
	c := startClusterWith(t, knativeCRDs(t, "broker.yaml", "trigger.yaml")...)
	ns := c.namespace(t, "kafkaclass")
	c.apply(t, gvrNamespace, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: knative-eventing")
	c.apply(t, gvrConfigMap, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: kafka-broker-config, namespace: knative-eventing}
data:
  bootstrap.servers: %q
  default.topic.partitions: "3"
  default.topic.replication.factor: "1"
`, kafka))
	// A name of its own per run: the topic, knative-broker-{ns}-{name}, outlives the test.
	name := fmt.Sprintf("orders-%d", time.Now().UnixNano()%1_000_000_000)
	kafkaBroker := func(name, class, configNS string) string {
		return brokerManifest(ns, name, class) + fmt.Sprintf(`spec:
  config: {apiVersion: v1, kind: ConfigMap, name: kafka-broker-config, namespace: %s}
`, configNS)
	}
	c.apply(t, gvrBroker, kafkaBroker(name, "Kafka", "knative-eventing"))
	// KafkaNamespaced reads the ConfigMap of the Broker's own namespace, not there yet.
	c.apply(t, gvrBroker, kafkaBroker("team", "KafkaNamespaced", ns))
	var mu sync.Mutex
	seen := map[string]int{}
	sub := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		mu.Lock()
		seen[req.Event.ID()]++
		mu.Unlock()
	})
	c.apply(t, gvrTrigger, triggerManifest(ns, "all", name, "  subscriber:\n    uri: "+sub.URL+"\n"))

	dir := t.TempDir()
	r := startRouterIn(t, dir, "", "", "", "--kubernetes", "--kubeconfig", c.kubeconfig, "--lease-namespace", "default",
		"--lease-identity", "kafka-1", "--lease-duration", "2s", "--serve-kafka-classes")
	b := c.waitReady(t, gvrBroker, ns, name)
	if url, _, _ := unstructured.NestedString(b.Object, "status", "address", "url"); url != r.Ingress+"/"+ns+"/"+name {
		t.Errorf("Broker status.address.url = %q, want %q", url, r.Ingress+"/"+ns+"/"+name)
	}
	c.waitReady(t, gvrTrigger, ns, "all")
	topic := "knative-broker-" + ns + "-" + name
	admin, err := sarama.NewClusterAdmin([]string{kafka}, sarama.NewConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()

	// The KafkaNamespaced Broker waits for its ConfigMap, then for a good one.
	if msg := c.waitNotReady(t, gvrBroker, ns, "team", "InvalidConfig"); !strings.Contains(msg, "ConfigMap "+ns+"/kafka-broker-config not found") {
		t.Errorf("Broker without its ConfigMap: %q", msg)
	}
	c.apply(t, gvrConfigMap, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kafka-broker-config, namespace: %s}\ndata:\n  default.topic.partitions: \"many\"\n", ns))
	c.waitFor(t, gvrBroker, ns, "team", "told the partitions are wrong", func(o *unstructured.Unstructured) bool {
		s, reason, msg := condition(o, "Ready")
		return s == "False" && reason == "InvalidConfig" && strings.Contains(msg, "data.default.topic.partitions: must be a positive whole number of partitions, got \"many\"")
	})
	c.apply(t, gvrConfigMap, fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kafka-broker-config, namespace: %s}\ndata:\n  default.topic.partitions: \"2\"\n", ns))
	c.waitReady(t, gvrBroker, ns, "team")
	if code, _, body := r.send(t, "/"+ns+"/team", binaryEvent("team-1", "t")); code != http.StatusAccepted {
		t.Fatalf("send to the KafkaNamespaced Broker: %d %s", code, body)
	}
	for topic, want := range map[string]int{topic: 3, "knative-broker-" + ns + "-team": 2} {
		meta, err := admin.DescribeTopics([]string{topic})
		if err != nil || len(meta) != 1 || meta[0].Err != sarama.ErrNoError {
			t.Fatalf("describing %s: %v %+v", topic, err, meta)
		}
		if got := len(meta[0].Partitions); got != want {
			t.Errorf("topic %s has %d partitions, want %d (default.topic.partitions)", topic, got, want)
		}
	}

	// kill -9 halfway through: what was accepted is in Kafka, and the next router delivers it.
	const n = 2000
	load := &loadSender{path: "/" + ns + "/" + name, workers: 8, event: func(i int64) ceRequest {
		return binaryEvent(fmt.Sprintf("k8s-kill-%05d", i), "order.created")
	}}
	killed := load.killAt(r, n/2)
	load.sendUpTo(r, n/2+200)
	<-killed
	<-r.exited
	r2 := startRouterIn(t, dir, "", "", "", "--kubernetes", "--kubeconfig", c.kubeconfig, "--lease-namespace", "default",
		"--lease-identity", "kafka-2", "--lease-duration", "2s", "--serve-kafka-classes")
	// The new router writes its own address once it holds the Lease (the old holder's runs out).
	c.waitFor(t, gvrBroker, ns, name, "addressed at the new router", func(o *unstructured.Unstructured) bool {
		url, _, _ := unstructured.NestedString(o.Object, "status", "address", "url")
		return url == r2.Ingress+"/"+ns+"/"+name
	})
	load.sendUpTo(r2, n)
	want := load.accepted()
	if want < n*8/10 {
		t.Fatalf("only %d of %d events were accepted", want, n)
	}
	load.waitDelivered(t, 60*time.Second, func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return seen[id] > 0
	})
	mu.Lock()
	delivered := len(seen)
	mu.Unlock()
	t.Logf("%d accepted events, all delivered across the kill -9 (%d distinct delivered, %d requests)", want, delivered, len(sub.requests()))
}
