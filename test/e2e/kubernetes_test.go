package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/switchyard-events/switchyard/test/testenv"
)

// Controller mode against a real kube-apiserver and etcd (envtest), with the CRDs of
// test/kubernetes/crds. The subtests share one API server and run one after another, each in its
// own namespace: every router watches the whole cluster.

var (
	gvrBroker    = schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "brokers"}
	gvrTrigger   = schema.GroupVersionResource{Group: "eventing.knative.dev", Version: "v1", Resource: "triggers"}
	gvrSource    = schema.GroupVersionResource{Group: "sources.knative.dev", Version: "v1beta1", Resource: "kafkasources"}
	gvrSourceV1  = schema.GroupVersionResource{Group: "sources.knative.dev", Version: "v1", Resource: "kafkasources"}
	gvrSequence  = schema.GroupVersionResource{Group: "flows.knative.dev", Version: "v1", Resource: "sequences"}
	gvrPing      = schema.GroupVersionResource{Group: "sources.knative.dev", Version: "v1", Resource: "pingsources"}
	gvrService   = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrNamespace = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrSink      = schema.GroupVersionResource{Group: "example.switchyard.dev", Version: "v1", Resource: "sinks"}
	gvrLease     = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
)

type cluster struct {
	t          *testing.T
	client     dynamic.Interface
	rest       *rest.Config
	kubeconfig string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	return startClusterWith(t, "../kubernetes/crds", "testdata/kubernetes")
}

// startClusterWith starts an API server serving the CRDs of the given files and directories.
func startClusterWith(t *testing.T, crds ...string) *cluster {
	t.Helper()
	env := &envtest.Environment{
		BinaryAssetsDirectory: testenv.KubeAssets(t),
		CRDDirectoryPaths:     crds,
		ErrorIfCRDPathMissing: true,
	}
	rc, err := env.Start()
	if err != nil {
		t.Fatalf("starting kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	// The router connects as a user of its own, as it would with a service account.
	user, err := env.AddUser(envtest.User{Name: "switchyard", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	client, err := dynamic.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, client: client, rest: rc, kubeconfig: path}
}

// apply creates or replaces the object of a YAML manifest.
func (c *cluster) apply(t *testing.T, gvr schema.GroupVersionResource, manifest string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(manifest), &obj.Object); err != nil {
		t.Fatalf("manifest: %v\n%s", err, manifest)
	}
	res := c.resource(gvr, obj.GetNamespace())
	ctx := context.Background()
	cur, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := res.Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating %s %s: %v", gvr.Resource, obj.GetName(), err)
		}
		return created
	}
	if err != nil {
		t.Fatal(err)
	}
	obj.SetResourceVersion(cur.GetResourceVersion())
	if st, ok := cur.Object["status"]; ok && obj.Object["status"] == nil {
		obj.Object["status"] = st
	}
	updated, err := res.Update(ctx, obj, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("updating %s %s: %v", gvr.Resource, obj.GetName(), err)
	}
	return updated
}

func (c *cluster) resource(gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return c.client.Resource(gvr)
	}
	return c.client.Resource(gvr).Namespace(ns)
}

func (c *cluster) delete(t *testing.T, gvr schema.GroupVersionResource, ns, name string) {
	t.Helper()
	if err := c.resource(gvr, ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
}

// namespace creates a namespace for one subtest, and empties it of Knative resources when the
// subtest ends (envtest runs no namespace controller, so deleting the namespace would not).
func (c *cluster) namespace(t *testing.T, name string) string {
	t.Helper()
	c.apply(t, gvrNamespace, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name)
	t.Cleanup(func() {
		for _, gvr := range []schema.GroupVersionResource{gvrTrigger, gvrSource, gvrBroker} {
			_ = c.resource(gvr, name).DeleteCollection(context.Background(), metav1.DeleteOptions{}, metav1.ListOptions{})
		}
	})
	return name
}

// condition returns status, reason and message of a condition of the object's status.
func condition(obj *unstructured.Unstructured, typ string) (status, reason, message string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == typ {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return s, r, msg
		}
	}
	return "", "", ""
}

// waitFor polls the object until check accepts it, and returns it.
func (c *cluster) waitFor(t *testing.T, gvr schema.GroupVersionResource, ns, name, what string, check func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last *unstructured.Unstructured
	for time.Now().Before(deadline) {
		obj, err := c.resource(gvr, ns).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			last = obj
			if check(obj) {
				return obj
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var st any
	if last != nil {
		st = last.Object["status"]
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	t.Fatalf("%s %s/%s: not %s after 20s; status:\n%s", gvr.Resource, ns, name, what, b)
	return nil
}

func (c *cluster) waitReady(t *testing.T, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	return c.waitFor(t, gvr, ns, name, "Ready", func(o *unstructured.Unstructured) bool {
		s, _, _ := condition(o, "Ready")
		return s == "True" && observedCurrent(o)
	})
}

// waitNotReady waits for Ready=False with the given reason and returns the message.
func (c *cluster) waitNotReady(t *testing.T, gvr schema.GroupVersionResource, ns, name, reason string) string {
	t.Helper()
	obj := c.waitFor(t, gvr, ns, name, "Ready=False/"+reason, func(o *unstructured.Unstructured) bool {
		s, r, _ := condition(o, "Ready")
		return s == "False" && r == reason && observedCurrent(o)
	})
	_, _, msg := condition(obj, "Ready")
	return msg
}

func observedCurrent(o *unstructured.Unstructured) bool {
	g, _, _ := unstructured.NestedInt64(o.Object, "status", "observedGeneration")
	return g == o.GetGeneration()
}

// startControllerRouter runs switchyard serve --kubernetes against the cluster.
func (c *cluster) startRouter(t *testing.T, identity string, args ...string) *router {
	t.Helper()
	base := []string{"--kubernetes", "--kubeconfig", c.kubeconfig, "--lease-namespace", "default",
		"--lease-identity", identity, "--lease-duration", "2s"}
	return startRouterIn(t, t.TempDir(), "", "", "", append(base, args...)...)
}

func brokerManifest(ns, name, class string) string {
	return fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Broker
metadata:
  name: %s
  namespace: %s
  annotations:
    eventing.knative.dev/broker.class: %s
`, name, ns, class)
}

func triggerManifest(ns, name, broker, rest string) string {
	return fmt.Sprintf(`apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata:
  name: %s
  namespace: %s
spec:
  broker: %s
%s`, name, ns, broker, rest)
}

func TestKubernetes(t *testing.T) {
	c := startCluster(t)
	t.Run("RoutingFollowsResources", c.testRoutingFollowsResources)
	t.Run("StatusReasons", c.testStatusReasons)
	t.Run("RefsResolve", c.testRefsResolve)
	t.Run("FilesAndClusterTogether", c.testFilesAndCluster)
	t.Run("KafkaSourceStatus", c.testKafkaSourceStatus)
	t.Run("PingSourceByTheLeaseHolder", c.testPingSource)
	t.Run("SequenceInTheCluster", c.testSequence)
	t.Run("TwoReplicasOneWriter", c.testTwoReplicas)
}

// TestKubernetesKafkaSourceCRDInstalledLater: a router started on a cluster without Knative's
// KafkaSource CRD starts watching KafkaSources once the CRD is installed, without a restart.
func TestKubernetesKafkaSourceCRDInstalledLater(t *testing.T) {
	c := startClusterWith(t, "../kubernetes/crds/brokers.yaml", "../kubernetes/crds/triggers.yaml", "testdata/kubernetes")
	ns := c.namespace(t, "late")
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	r := c.startRouter(t, "late", "--crd-recheck-interval", "200ms")
	c.waitReady(t, gvrBroker, ns, "default")
	if _, err := envtest.InstallCRDs(c.rest, envtest.CRDInstallOptions{Paths: []string{"../kubernetes/crds/kafkasources.yaml"}}); err != nil {
		t.Fatalf("installing the KafkaSource CRD: %v", err)
	}
	c.apply(t, gvrSource, fmt.Sprintf(`apiVersion: sources.knative.dev/v1beta1
kind: KafkaSource
metadata: {name: orders, namespace: %s}
spec:
  bootstrapServers: [127.0.0.1:1]
  topics: [orders]
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`, ns))
	src := c.waitReady(t, gvrSource, ns, "orders")
	if uri, _, _ := unstructured.NestedString(src.Object, "status", "sinkUri"); uri != r.Ingress+"/late/default" {
		t.Errorf("KafkaSource sinkUri = %q, want the broker's URL", uri)
	}
}

func (c *cluster) testRoutingFollowsResources(t *testing.T) {
	ns := c.namespace(t, "routing")
	sub1 := newSubscriber(t, nil)
	sub2 := newSubscriber(t, nil)
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	c.apply(t, gvrBroker, brokerManifest(ns, "theirs", "MTChannelBasedBroker"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "orders", "default", `  filter:
    attributes:
      type: order.created
  subscriber:
    uri: `+sub1.URL+"\n"))
	r := c.startRouter(t, "solo")

	b := c.waitReady(t, gvrBroker, ns, "default")
	if url, _, _ := unstructured.NestedString(b.Object, "status", "address", "url"); url != r.Ingress+"/routing/default" {
		t.Errorf("Broker status.address.url = %q, want %q", url, r.Ingress+"/routing/default")
	}
	if s, _, _ := condition(b, "Addressable"); s != "True" {
		t.Errorf("Broker Addressable = %q, want True", s)
	}
	tr := c.waitReady(t, gvrTrigger, ns, "orders")
	if uri, _, _ := unstructured.NestedString(tr.Object, "status", "subscriberUri"); uri != sub1.URL {
		t.Errorf("Trigger status.subscriberUri = %q, want %q", uri, sub1.URL)
	}
	for _, typ := range []string{"BrokerReady", "SubscriberResolved", "DeadLetterSinkResolved", "DependencyReady"} {
		if s, _, _ := condition(tr, typ); s != "True" {
			t.Errorf("Trigger %s = %q, want True", typ, s)
		}
	}

	if code, _, body := r.send(t, "/routing/default", binaryEvent("e1", "order.created")); code != http.StatusAccepted {
		t.Fatalf("send: %d %s", code, body)
	}
	if got := sub1.waitFor(t, 1, 5*time.Second); got[0].Header.Get("Ce-Id") != "e1" {
		t.Errorf("delivered id %q, want e1", got[0].Header.Get("Ce-Id"))
	}
	// Another class's broker is not ours: no route, and its status is left to its own controller.
	if code, _, _ := r.send(t, "/routing/theirs", binaryEvent("x", "order.created")); code != http.StatusNotFound {
		t.Errorf("send to a broker of another class: %d, want 404", code)
	}
	theirs, err := c.resource(gvrBroker, ns).Get(context.Background(), "theirs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, found := theirs.Object["status"]; found {
		t.Errorf("status written on a broker of another class: %v", theirs.Object["status"])
	}

	// Moving the trigger to another subscriber moves the events.
	c.apply(t, gvrTrigger, triggerManifest(ns, "orders", "default", `  filter:
    attributes:
      type: order.created
  subscriber:
    uri: `+sub2.URL+"\n"))
	c.waitFor(t, gvrTrigger, ns, "orders", "moved to sub2", func(o *unstructured.Unstructured) bool {
		uri, _, _ := unstructured.NestedString(o.Object, "status", "subscriberUri")
		return uri == sub2.URL && observedCurrent(o)
	})
	r.send(t, "/routing/default", binaryEvent("e2", "order.created"))
	if got := sub2.waitFor(t, 1, 5*time.Second); got[0].Header.Get("Ce-Id") != "e2" {
		t.Errorf("after the update, delivered id %q, want e2", got[0].Header.Get("Ce-Id"))
	}
	sub1.quiet(t, 1, 300*time.Millisecond)

	// Taking the class annotation to another implementation hands the broker over: 404 here.
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Kafka"))
	waitNotServed(t, r, "/routing/default", "after its class changed")
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	c.waitReady(t, gvrBroker, ns, "default")
	c.delete(t, gvrBroker, ns, "default")
	waitNotServed(t, r, "/routing/default", "after it was deleted")
	// Its Trigger is told, not left showing the Ready=True of a broker that is gone.
	if msg := c.waitNotReady(t, gvrTrigger, ns, "orders", "BrokerDoesNotExist"); msg != "Broker routing/default does not exist" {
		t.Errorf("trigger of a deleted broker: %q", msg)
	}
}

// waitNotServed sends to path until the router answers 404, for at most 10 s.
func waitNotServed(t *testing.T, r *router, path, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := r.send(t, path, binaryEvent("probe", "order.created"))
		if code == http.StatusNotFound {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker %s still served 10s %s: %d", path, when, code)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) testStatusReasons(t *testing.T) {
	ns := c.namespace(t, "reasons")
	sub := newSubscriber(t, nil)
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "good", "default", "  subscriber:\n    uri: "+sub.URL+"\n"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "not-boolean", "default", `  filters:
    - cesql: "type"
  subscriber:
    uri: `+sub.URL+"\n"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "bad-retry", "default", `  subscriber:
    uri: `+sub.URL+`
  delivery:
    backoffPolicy: sideways
`))
	c.apply(t, gvrTrigger, triggerManifest(ns, "no-service", "default", `  subscriber:
    ref: {apiVersion: v1, kind: Service, name: missing}
`))
	r := c.startRouter(t, "solo")

	c.waitReady(t, gvrTrigger, ns, "good")
	if msg := c.waitNotReady(t, gvrTrigger, ns, "not-boolean", "InvalidFilter"); !strings.Contains(msg, "spec.filters[0].cesql") {
		t.Errorf("non-boolean CESQL: message %q does not name the field", msg)
	}
	if msg := c.waitNotReady(t, gvrTrigger, ns, "bad-retry", "InvalidDelivery"); !strings.Contains(msg, "backoffPolicy") {
		t.Errorf("bad backoffPolicy: message %q does not name the field", msg)
	}
	msg := c.waitNotReady(t, gvrTrigger, ns, "no-service", "SubscriberUnresolved")
	if !strings.Contains(msg, "Service reasons/missing not found") {
		t.Errorf("missing Service: message %q", msg)
	}
	tr, _ := c.resource(gvrTrigger, ns).Get(context.Background(), "no-service", metav1.GetOptions{})
	if s, reason, _ := condition(tr, "SubscriberResolved"); s != "False" || reason != "SubscriberUnresolved" {
		t.Errorf("SubscriberResolved = %s/%s, want False/SubscriberUnresolved", s, reason)
	}
	// What kubectl shows: the printer columns of Knative's CRDs read the status written.
	table := c.table(t, "/apis/eventing.knative.dev/v1/namespaces/"+ns+"/triggers")
	rows := map[string][]any{}
	for _, row := range table.Rows {
		rows[row.Cells[0].(string)] = row.Cells
	}
	want := map[string][]any{"good": {"default", sub.URL, "True", nil}, "not-boolean": {"default", nil, "False", "InvalidFilter"},
		"no-service": {"default", nil, "False", "SubscriberUnresolved"}}
	for name, w := range want {
		cells := rows[name]
		if len(cells) != 6 || cells[1] != w[0] || cells[2] != w[1] || cells[4] != w[2] || cells[5] != w[3] {
			t.Errorf("kubectl get triggers, row %s: %v, want broker, subscriber, ready, reason = %v (columns %v)", name, cells, w, columnNames(table))
		}
	}
	// The bad ones do not hold up the good one.
	r.send(t, "/reasons/default", binaryEvent("g1", "anything"))
	sub.waitFor(t, 1, 5*time.Second)

	// A broker with a bad delivery spec is not served, and its triggers say why.
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard")+`spec:
  delivery:
    retry: -1
`)
	c.waitNotReady(t, gvrBroker, ns, "default", "InvalidDelivery")
	c.waitNotReady(t, gvrTrigger, ns, "good", "BrokerNotReady")
	b, _ := c.resource(gvrBroker, ns).Get(context.Background(), "default", metav1.GetOptions{})
	if s, _, _ := condition(b, "Addressable"); s != "False" {
		t.Errorf("invalid broker: Addressable = %q, want False", s)
	}
	if code, _, _ := r.send(t, "/reasons/default", binaryEvent("g2", "anything")); code != http.StatusNotFound {
		t.Errorf("send to an invalid broker: %d, want 404", code)
	}

}

type printedTable struct {
	ColumnDefinitions []struct {
		Name string `json:"name"`
	} `json:"columnDefinitions"`
	Rows []struct {
		Cells []any `json:"cells"`
	} `json:"rows"`
}

func columnNames(tb printedTable) []string {
	var out []string
	for _, c := range tb.ColumnDefinitions {
		out = append(out, c.Name)
	}
	return out
}

// table asks the API server for the table kubectl get prints.
func (c *cluster) table(t *testing.T, path string) printedTable {
	t.Helper()
	hc, err := rest.HTTPClientFor(c.rest)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, strings.TrimSuffix(c.rest.Host, "/")+path, nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tb printedTable
	if err := json.NewDecoder(resp.Body).Decode(&tb); err != nil {
		t.Fatal(err)
	}
	return tb
}

func (c *cluster) testRefsResolve(t *testing.T) {
	ns := c.namespace(t, "refs")
	sub := newSubscriber(t, nil)
	moved := newSubscriber(t, nil)
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "to-service", "default", `  subscriber:
    ref: {apiVersion: v1, kind: Service, name: billing}
    uri: /events
`))
	c.apply(t, gvrTrigger, triggerManifest(ns, "to-addressable", "default", `  filter:
    attributes:
      type: for.sink
  subscriber:
    ref: {apiVersion: example.switchyard.dev/v1, kind: Sink, name: fn}
`))
	r := c.startRouter(t, "solo")
	c.waitNotReady(t, gvrTrigger, ns, "to-service", "SubscriberUnresolved")
	msg := c.waitNotReady(t, gvrTrigger, ns, "to-addressable", "SubscriberUnresolved")
	if !strings.Contains(msg, "not found") {
		t.Errorf("missing Addressable: %q", msg)
	}

	// A core Service resolves to its cluster DNS name once it exists.
	svc := corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "billing", Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	b, _ := json.Marshal(svc)
	c.apply(t, gvrService, string(b))
	tr := c.waitReady(t, gvrTrigger, ns, "to-service")
	if uri, _, _ := unstructured.NestedString(tr.Object, "status", "subscriberUri"); uri != "http://billing.refs.svc.cluster.local/events" {
		t.Errorf("Service ref resolved to %q", uri)
	}

	// Any Addressable resolves to its status.address.url, and follows it when it changes.
	c.apply(t, gvrSink, fmt.Sprintf("apiVersion: example.switchyard.dev/v1\nkind: Sink\nmetadata: {name: fn, namespace: %s}\nstatus:\n  address:\n    url: %s\n", ns, sub.URL))
	c.waitReady(t, gvrTrigger, ns, "to-addressable")
	r.send(t, "/refs/default", binaryEvent("a1", "for.sink"))
	sub.waitFor(t, 1, 5*time.Second)
	c.apply(t, gvrSink, fmt.Sprintf("apiVersion: example.switchyard.dev/v1\nkind: Sink\nmetadata: {name: fn, namespace: %s}\nstatus:\n  address:\n    url: %s\n", ns, moved.URL))
	c.waitFor(t, gvrTrigger, ns, "to-addressable", "at the new address", func(o *unstructured.Unstructured) bool {
		uri, _, _ := unstructured.NestedString(o.Object, "status", "subscriberUri")
		return uri == moved.URL
	})
	r.send(t, "/refs/default", binaryEvent("a2", "for.sink"))
	if got := moved.waitFor(t, 1, 5*time.Second); got[0].Header.Get("Ce-Id") != "a2" {
		t.Errorf("after the address moved: id %q", got[0].Header.Get("Ce-Id"))
	}
}

func (c *cluster) testFilesAndCluster(t *testing.T) {
	ns := c.namespace(t, "mixed")
	sub := newSubscriber(t, nil)
	// The file defines mixed/from-file and a trigger on the cluster's broker; the cluster defines
	// mixed/from-cluster and a second mixed/from-file, which conflicts.
	inMixed := func(s string) string { return strings.Replace(s, "namespace: default", "namespace: mixed", 1) }
	files := inMixed(brokerYAML("from-file")) +
		inMixed(triggerYAML("file-trigger", "  broker: from-cluster\n  subscriber:\n    uri: "+sub.URL+"\n"))
	c.apply(t, gvrBroker, brokerManifest(ns, "from-cluster", "Switchyard"))
	c.apply(t, gvrBroker, brokerManifest(ns, "from-file", "Switchyard"))
	r := startRouterIn(t, t.TempDir(), files, "", "", "--kubernetes", "--kubeconfig", c.kubeconfig,
		"--lease-namespace", "default", "--lease-identity", "mixed", "--lease-duration", "2s")
	c.waitReady(t, gvrBroker, ns, "from-cluster")
	if msg := c.waitNotReady(t, gvrBroker, ns, "from-file", "Conflict"); !strings.Contains(msg, "defined twice") {
		t.Errorf("conflict message %q", msg)
	}
	// The file's broker is served, and the file's trigger routes on the cluster's broker.
	if code, _, body := r.send(t, "/mixed/from-file", binaryEvent("f1", "t")); code != http.StatusAccepted {
		t.Errorf("file broker: %d %s", code, body)
	}
	r.send(t, "/mixed/from-cluster", binaryEvent("c1", "t"))
	if got := sub.waitFor(t, 1, 5*time.Second); got[0].Header.Get("Ce-Id") != "c1" {
		t.Errorf("file trigger on the cluster broker: id %q", got[0].Header.Get("Ce-Id"))
	}
}

func (c *cluster) testKafkaSourceStatus(t *testing.T) {
	ns := c.namespace(t, "sources")
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	source := func(name, broker string) string {
		return fmt.Sprintf(`apiVersion: sources.knative.dev/v1
kind: KafkaSource
metadata: {name: %s, namespace: %s}
spec:
  bootstrapServers: [127.0.0.1:1]
  topics: [orders]
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: %s}
`, name, ns, broker)
	}
	// Knative's current samples write v1; the CRD serves v1beta1 as well.
	c.apply(t, gvrSourceV1, source("orders", "default"))
	c.apply(t, gvrSourceV1, source("elsewhere", "not-ours"))
	r := c.startRouter(t, "solo")
	src := c.waitReady(t, gvrSource, ns, "orders")
	if uri, _, _ := unstructured.NestedString(src.Object, "status", "sinkUri"); uri != r.Ingress+"/sources/default" {
		t.Errorf("KafkaSource sinkUri = %q", uri)
	}
	time.Sleep(300 * time.Millisecond)
	other, _ := c.resource(gvrSource, ns).Get(context.Background(), "elsewhere", metav1.GetOptions{})
	if _, found := other.Object["status"]; found {
		t.Errorf("status written on a KafkaSource that sinks to another broker: %v", other.Object["status"])
	}
	c.delete(t, gvrBroker, ns, "default")
	c.waitNotReady(t, gvrSource, ns, "orders", "BrokerDoesNotExist")
}

// testPingSource: with --run-ping-sources, a PingSource from Knative's docs that sinks into our
// Broker gets Ready and its sinkUri, and ticks reach the Trigger's subscriber; of two replicas
// without Cassandra only the Lease holder sends, so no tick arrives twice.
func (c *cluster) testPingSource(t *testing.T) {
	ns := c.namespace(t, "pings")
	sub := newSubscriber(t, nil)
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "pings", "default", "  subscriber:\n    uri: "+sub.URL+"\n"))
	c.apply(t, gvrPing, fmt.Sprintf(`apiVersion: sources.knative.dev/v1
kind: PingSource
metadata: {name: heartbeat, namespace: %s}
spec:
  schedule: "@every 1s"
  contentType: application/json
  data: '{"message": "Hello world!"}'
  sink:
    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}
`, ns))
	args := []string{"--run-ping-sources", "--lease-name", "pings-test"}
	r := c.startRouter(t, "ping-a", args...)
	c.startRouter(t, "ping-b", args...)
	src := c.waitReady(t, gvrPing, ns, "heartbeat")
	if uri, _, _ := unstructured.NestedString(src.Object, "status", "sinkUri"); uri != r.Ingress+"/pings/default" {
		t.Errorf("PingSource sinkUri = %q, want the broker's URL", uri)
	}
	got := sub.waitFor(t, 4, 15*time.Second)
	seen := map[string]bool{}
	for _, req := range got {
		if req.Event == nil || req.Event.Source() != "/apis/v1/namespaces/pings/pingsources/heartbeat" || req.Event.Type() != "dev.knative.sources.ping" {
			t.Fatalf("not the PingSource's event: %v %q", req.Header, req.Body)
		}
		if seen[req.Event.ID()] {
			t.Errorf("tick %s sent twice: both replicas send", req.Event.Time())
		}
		seen[req.Event.ID()] = true
	}
}

// testSequence: with --run-flows, a Sequence in the cluster gets Ready and its address, and an
// event posted there goes through its steps to its reply.
func (c *cluster) testSequence(t *testing.T) {
	ns := c.namespace(t, "flows")
	step := newSubscriber(t, func(_ int, req received, w http.ResponseWriter) {
		replyWith(w, req, func(m string) string { return m + " - stepped" })
	})
	display := newSubscriber(t, nil)
	c.apply(t, gvrSequence, fmt.Sprintf(`apiVersion: flows.knative.dev/v1
kind: Sequence
metadata: {name: sequence, namespace: %s}
spec:
  channelTemplate: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}
  steps:
    - uri: %s
  reply:
    uri: %s
`, ns, step.URL, display.URL))
	r := c.startRouter(t, "flows", "--run-flows")
	seq := c.waitReady(t, gvrSequence, ns, "sequence")
	url, _, _ := unstructured.NestedString(seq.Object, "status", "address", "url")
	if url != r.Ingress+"/flows/sequence-kn-sequence-0" {
		t.Fatalf("Sequence status.address.url = %q", url)
	}
	code, _, body := r.send(t, strings.TrimPrefix(url, r.Ingress), ceRequest{Headers: map[string]string{
		"Ce-Specversion": "1.0", "Ce-Id": "k8s", "Ce-Type": "t", "Ce-Source": "/s", "Content-Type": "application/json"}, Body: `{"message":"in"}`})
	if code != http.StatusAccepted {
		t.Fatalf("POST to the Sequence's address: %d %s", code, body)
	}
	if got := display.waitFor(t, 1, 5*time.Second); message(t, got[0]) != "in - stepped" {
		t.Errorf("the reply: %q", got[0].Body)
	}
	// A Sequence with a mistake is told so in its status, and does not hold up the others.
	c.apply(t, gvrSequence, fmt.Sprintf("apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {name: empty, namespace: %s}\nspec:\n  steps: []\n", ns))
	if msg := c.waitNotReady(t, gvrSequence, ns, "empty", "InvalidSpec"); !strings.Contains(msg, "spec.steps: a Sequence needs at least one step") {
		t.Errorf("Ready message: %q", msg)
	}
	c.waitReady(t, gvrSequence, ns, "sequence")
}

func (c *cluster) testTwoReplicas(t *testing.T) {
	ns := c.namespace(t, "replicas")
	sub := newSubscriber(t, nil)
	c.apply(t, gvrBroker, brokerManifest(ns, "default", "Switchyard"))
	c.apply(t, gvrTrigger, triggerManifest(ns, "all", "default", "  subscriber:\n    uri: "+sub.URL+"\n"))
	lease := []string{"--lease-name", "replicas-test"}
	a := c.startRouter(t, "replica-a", lease...)
	b := c.startRouter(t, "replica-b", lease...)
	c.waitReady(t, gvrTrigger, ns, "all")

	holder := func() string {
		l, err := c.resource(gvrLease, "default").Get(context.Background(), "replicas-test", metav1.GetOptions{})
		if err != nil {
			return ""
		}
		h, _, _ := unstructured.NestedString(l.Object, "spec", "holderIdentity")
		return h
	}
	var first string
	for deadline := time.Now().Add(10 * time.Second); first == "" && time.Now().Before(deadline); {
		first = holder()
		time.Sleep(50 * time.Millisecond)
	}
	leader, follower := a, b
	switch first {
	case "replica-a":
	case "replica-b":
		leader, follower = b, a
	default:
		t.Fatalf("Lease holder %q, want replica-a or replica-b", first)
	}
	if n := strings.Count(leader.log.String(), "leading: writing status"); n != 1 {
		t.Errorf("leader logged leading %d times", n)
	}
	if strings.Contains(follower.log.String(), "leading: writing status") {
		t.Errorf("the follower also took the lead:\n%s", follower.log.String())
	}
	// Both replicas route.
	a.send(t, "/replicas/default", binaryEvent("via-a", "t"))
	b.send(t, "/replicas/default", binaryEvent("via-b", "t"))
	sub.waitFor(t, 2, 5*time.Second)

	// The leader dies without releasing the Lease; routing on the follower never stops, and after
	// the Lease expires it writes status.
	leader.signal(syscall.SIGKILL)
	_ = leader.wait(5 * time.Second)
	follower.send(t, "/replicas/default", binaryEvent("during-failover", "t"))
	sub.waitFor(t, 3, 5*time.Second)
	c.apply(t, gvrTrigger, triggerManifest(ns, "all", "default", "  subscriber:\n    uri: "+sub.URL+"/v2\n"))
	c.waitFor(t, gvrTrigger, ns, "all", "updated by the new leader", func(o *unstructured.Unstructured) bool {
		uri, _, _ := unstructured.NestedString(o.Object, "status", "subscriberUri")
		return uri == sub.URL+"/v2" && observedCurrent(o)
	})
	if h := holder(); h == first || h == "" {
		t.Errorf("Lease holder after the leader died: %q", h)
	}
	follower.send(t, "/replicas/default", binaryEvent("after-failover", "t"))
	got := sub.waitFor(t, 4, 5*time.Second)
	if got[3].Header.Get("Ce-Id") != "after-failover" {
		t.Errorf("last delivered %q", got[3].Header.Get("Ce-Id"))
	}
}
