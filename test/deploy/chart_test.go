// Package deploy checks what is shipped to Kubernetes: the Helm chart renders for every example
// values file, matches its golden files, decodes strictly into the Kubernetes API types, and the
// configuration it renders for the router passes `switchyard validate`; the Dockerfile keeps the
// promises the deploy docs make. It is a module of its own so that k8s.io/api stays out of the
// router's dependencies.
//
// HELM and SWITCHYARD_BIN name the binaries (make test sets both). go test -update rewrites the
// golden files.
package deploy

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const chartDir = "../../charts/switchyard"

func tool(t *testing.T, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not set; make test sets it", env)
	}
	t.Skipf("%s is not set: run through make test", env)
	return ""
}

// valueFiles are the example values the chart is rendered with: defaults plus every ci/ file.
func valueFiles(t *testing.T) map[string]string {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) < 3 {
		t.Fatalf("example values files: %v %v", files, err)
	}
	out := map[string]string{"default": ""}
	for _, f := range files {
		out[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = f
	}
	return out
}

func render(t *testing.T, helm, values string) []byte {
	t.Helper()
	args := []string{"template", "sy", chartDir, "--namespace", "knative-eventing"}
	if values != "" {
		args = append(args, "-f", values)
	}
	out, err := exec.Command(helm, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, out)
	}
	return out
}

func TestLint(t *testing.T) {
	helm := tool(t, "HELM")
	for name, values := range valueFiles(t) {
		args := []string{"lint", "--strict", chartDir}
		if values != "" {
			args = append(args, "-f", values)
		}
		if out, err := exec.Command(helm, args...).CombinedOutput(); err != nil {
			t.Errorf("helm lint (%s): %v\n%s", name, err, out)
		}
	}
}

func TestSchemaRejectsBadValues(t *testing.T) {
	helm := tool(t, "HELM")
	for set, want := range map[string]string{
		"replicaCount=0":                 "replicaCount",
		"logLevel=loud":                  "logLevel",
		"cassandra.consistency=SOME":     "cassandra.consistency",
		"service.port=70000":             "service.port",
		"config.manifests[0].kind=Thing": "kind",
		"nosuchvalue=1":                  "nosuchvalue",
		"kafka.sasl.mechanism=GSSAPI":    "kafka.sasl.mechanism",
		"kafka.sasl.mechanism=PLAIN":     "kafka.sasl.existingSecret",
		"kubernetes.leaseDuration=soon":  "kubernetes.leaseDuration",
	} {
		out, err := exec.Command(helm, "template", "sy", chartDir, "--set", set).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Errorf("--set %s: err=%v, output does not name %q:\n%s", set, err, want, out)
		}
	}
}

func TestGoldenAndStrictDecode(t *testing.T) {
	helm := tool(t, "HELM")
	for name, values := range valueFiles(t) {
		t.Run(name, func(t *testing.T) {
			out := render(t, helm, values)
			golden := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("rendered output differs from %s (run go test -update after checking the diff)", golden)
			}
			kinds := map[string]int{}
			for _, doc := range splitDocs(out) {
				kind := decodeStrict(t, doc)
				kinds[kind]++
			}
			for _, k := range []string{"Deployment", "Service", "ConfigMap", "ServiceAccount", "PodDisruptionBudget"} {
				if kinds[k] == 0 {
					t.Errorf("no %s rendered", k)
				}
			}
		})
	}
}

func splitDocs(b []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// serviceMonitor is the part of the Prometheus Operator's CRD the chart uses; k8s.io/api has no type.
type serviceMonitor struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Selector  map[string]any `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// decodeStrict decodes doc into its Kubernetes type, failing on any unknown field, and checks the
// security promises of the Deployment.
func decodeStrict(t *testing.T, doc []byte) string {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		t.Fatalf("not YAML: %v\n%s", err, doc)
	}
	var obj any
	switch head.APIVersion + "/" + head.Kind {
	case "apps/v1/Deployment":
		obj = &appsv1.Deployment{}
	case "v1/Service":
		obj = &corev1.Service{}
	case "v1/ConfigMap":
		obj = &corev1.ConfigMap{}
	case "v1/ServiceAccount":
		obj = &corev1.ServiceAccount{}
	case "policy/v1/PodDisruptionBudget":
		obj = &policyv1.PodDisruptionBudget{}
	case "autoscaling/v2/HorizontalPodAutoscaler":
		obj = &autoscalingv2.HorizontalPodAutoscaler{}
	case "networking.k8s.io/v1/NetworkPolicy":
		obj = &networkingv1.NetworkPolicy{}
	case "rbac.authorization.k8s.io/v1/ClusterRole", "rbac.authorization.k8s.io/v1/Role":
		obj = &rbacv1.ClusterRole{} // Role has the same fields
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding", "rbac.authorization.k8s.io/v1/RoleBinding":
		obj = &rbacv1.ClusterRoleBinding{}
	case "batch/v1/Job":
		obj = &batchv1.Job{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		obj = &serviceMonitor{}
	default:
		t.Fatalf("unexpected kind %s %s", head.APIVersion, head.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Errorf("%s does not decode strictly: %v", head.Kind, err)
	}
	if d, ok := obj.(*appsv1.Deployment); ok {
		checkDeployment(t, d)
	}
	return head.Kind
}

func checkDeployment(t *testing.T, d *appsv1.Deployment) {
	pod := d.Spec.Template.Spec
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("pod may run as root")
	}
	c := pod.Containers[0]
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("container security context: %+v", sc)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Error("probes are not /readyz and /healthz on the admin port")
	}
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds <= 30 {
		t.Error("the termination grace period does not exceed the drain time")
	}
}

// TestPerPodResultsAreRefused (issue #33, item 6): more than one pod with results in memory would
// answer `events get` from one pod's history, 404 for an event another pod routed; the chart
// refuses it (replicaCount, or autoscaling's maxReplicas) with a message naming the way out, unless
// results are in Cassandra or results.perPodAcknowledged accepts per-pod answers.
func TestPerPodResultsAreRefused(t *testing.T) {
	helm := tool(t, "HELM")
	for _, c := range []struct {
		sets     []string
		replicas int32 // 0: refused; -1: rendered, the HPA decides
	}{
		{nil, 1},
		{[]string{"replicaCount=2"}, 0},
		{[]string{"autoscaling.enabled=true"}, 0},
		{[]string{"replicaCount=2", "results.perPodAcknowledged=true"}, 2},
		{[]string{"replicaCount=3", "cassandra.hosts={cassandra-0.db:9042}"}, 3},
		{[]string{"autoscaling.enabled=true", "cassandra.hosts={cassandra-0.db:9042}"}, -1},
		{[]string{"autoscaling.enabled=true", "autoscaling.minReplicas=1", "autoscaling.maxReplicas=1"}, -1},
		{[]string{"autoscaling.enabled=true", "results.perPodAcknowledged=true"}, -1},
	} {
		args := []string{"template", "sy", chartDir}
		for _, set := range c.sets {
			args = append(args, "--set", set)
		}
		out, err := exec.Command(helm, args...).CombinedOutput()
		if c.replicas == 0 {
			if err == nil || !strings.Contains(string(out), "would keep delivery results in memory") ||
				!strings.Contains(string(out), "cassandra.hosts") || !strings.Contains(string(out), "results.perPodAcknowledged=true") {
				t.Errorf("%v: not refused with the way out: %v\n%s", c.sets, err, out)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: refused: %v\n%s", c.sets, err, out)
			continue
		}
		for _, doc := range splitDocs(out) {
			var d appsv1.Deployment
			if yaml.Unmarshal(doc, &d) != nil || d.Kind != "Deployment" {
				continue
			}
			switch {
			case c.replicas < 0 && d.Spec.Replicas != nil:
				t.Errorf("%v: replicas %d set beside the HPA", c.sets, *d.Spec.Replicas)
			case c.replicas > 0 && (d.Spec.Replicas == nil || *d.Spec.Replicas != c.replicas):
				t.Errorf("%v: replicas %v, want %d", c.sets, d.Spec.Replicas, c.replicas)
			}
		}
	}
}

// TestRenderedConfigValidates extracts the configuration each rendering gives the router and runs
// `switchyard validate` on it, with the Secrets the chart would mount laid out in a temp dir.
func TestRenderedConfigValidates(t *testing.T) {
	helm, bin := tool(t, "HELM"), tool(t, "SWITCHYARD_BIN")
	for name, values := range valueFiles(t) {
		t.Run(name, func(t *testing.T) {
			dir, secrets := t.TempDir(), t.TempDir()
			for _, f := range []string{"cassandra-credentials/username", "cassandra-credentials/password", "cassandra-ca/ca.crt"} {
				_ = os.MkdirAll(filepath.Join(secrets, filepath.Dir(f)), 0o755)
				_ = os.WriteFile(filepath.Join(secrets, f), []byte("x"), 0o600)
			}
			files := 0
			for _, doc := range splitDocs(render(t, helm, values)) {
				var cm corev1.ConfigMap
				if yaml.Unmarshal(doc, &cm) != nil || cm.Kind != "ConfigMap" {
					continue
				}
				for key, content := range cm.Data {
					content = strings.ReplaceAll(content, "/var/run/secrets/switchyard", secrets)
					if err := os.WriteFile(filepath.Join(dir, key), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
					files++
				}
			}
			if files == 0 {
				t.Fatal("no configuration rendered")
			}
			out, err := exec.Command(bin, "validate", "--config", dir).CombinedOutput()
			if err != nil {
				t.Errorf("switchyard validate: %v\n%s", err, out)
			}
		})
	}
}

// TestValidateHookRefusesABadConfig: the pre-install/pre-upgrade hook validates the configuration
// the release renders, with the pods' Secrets, before anything is changed; a bad trigger fails it
// with the file, line and field, so `helm upgrade` fails and the running pods keep theirs.
func TestValidateHookRefusesABadConfig(t *testing.T) {
	helm, bin := tool(t, "HELM"), tool(t, "SWITCHYARD_BIN")
	values := filepath.Join(t.TempDir(), "bad-values.yaml")
	bad := `secrets: [github-webhook]
config:
  manifests:
    - apiVersion: eventing.knative.dev/v1
      kind: Broker
      metadata: {name: default, namespace: default}
    - apiVersion: eventing.knative.dev/v1
      kind: Trigger
      metadata: {name: orders, namespace: default}
      spec:
        broker: default
        filter:
          attributes: {Type: order.created}
        subscriber: {uri: http://orders.default.svc/}
`
	if err := os.WriteFile(values, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	var hookCM *corev1.ConfigMap
	var job *batchv1.Job
	var deploy *appsv1.Deployment
	for _, doc := range splitDocs(render(t, helm, values)) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		_ = yaml.Unmarshal(doc, &head)
		hook := head.Metadata.Annotations["helm.sh/hook"]
		switch {
		case head.Kind == "ConfigMap" && hook != "":
			hookCM = &corev1.ConfigMap{}
			_ = yaml.Unmarshal(doc, hookCM)
		case head.Kind == "Job":
			job = &batchv1.Job{}
			_ = yaml.Unmarshal(doc, job)
		case head.Kind == "Deployment":
			deploy = &appsv1.Deployment{}
			_ = yaml.Unmarshal(doc, deploy)
		}
	}
	if hookCM == nil || job == nil || deploy == nil {
		t.Fatalf("hook ConfigMap %v, Job %v, Deployment %v: want all three", hookCM != nil, job != nil, deploy != nil)
	}
	for _, m := range []map[string]string{hookCM.Annotations, job.Annotations} {
		if m["helm.sh/hook"] != "pre-install,pre-upgrade" {
			t.Errorf("hook annotations: %v", m)
		}
	}
	if w := hookCM.Annotations["helm.sh/hook-weight"]; w != "-10" || job.Annotations["helm.sh/hook-weight"] != "0" {
		t.Errorf("the ConfigMap (weight %q) must exist before the Job (weight %q) runs", w, job.Annotations["helm.sh/hook-weight"])
	}
	pod := job.Spec.Template.Spec
	if c := pod.Containers[0]; len(c.Args) == 0 || c.Args[0] != "validate" || c.Image != deploy.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("the Job runs %v in %s, want validate in the router's image", c.Args, c.Image)
	}
	if job.Spec.BackoffLimit == nil || *job.Spec.BackoffLimit != 0 || pod.RestartPolicy != corev1.RestartPolicyNever {
		t.Error("a failed validation must fail the hook at once: backoffLimit 0, restartPolicy Never")
	}
	mounts := func(c corev1.Container) []string {
		var out []string
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(m.MountPath, "/var/run/secrets/switchyard/") || m.MountPath == "/etc/switchyard" {
				out = append(out, m.MountPath)
			}
		}
		slices.Sort(out)
		return out
	}
	if got, want := mounts(pod.Containers[0]), mounts(deploy.Spec.Template.Spec.Containers[0]); !slices.Equal(got, want) {
		t.Errorf("the Job mounts %v, the pods %v: validation must see what the pods see", got, want)
	}

	dir := t.TempDir()
	for key, content := range hookCM.Data {
		if err := os.WriteFile(filepath.Join(dir, key), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command(bin, "validate", "--config", dir).CombinedOutput()
	if err == nil || !regexp.MustCompile(`routes\.yaml:\d+: spec\.filter\.attributes`).Match(out) {
		t.Errorf("validate on the hook's configuration: %v\n%s\nwant a failure naming routes.yaml's line and spec.filter.attributes", err, out)
	}
}

// TestDockerfile checks what can be checked without a Docker engine.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	froms := regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("not a multi-stage build: %v", froms)
	}
	for _, f := range froms {
		image := f[1]
		if !strings.Contains(image, "@sha256:") && (!strings.Contains(image, ":") || strings.HasSuffix(image, ":latest")) {
			t.Errorf("base image %s is not pinned by tag or digest", image)
		}
	}
	final := froms[len(froms)-1][1]
	if !strings.Contains(final, "distroless") && final != "scratch" {
		t.Errorf("final stage %s is not distroless or scratch", final)
	}
	users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 || strings.HasPrefix(users[len(users)-1][1], "root") || strings.HasPrefix(users[len(users)-1][1], "0") {
		t.Errorf("the image does not end with a non-root USER: %v", users)
	}
	if !strings.Contains(df, "make build") {
		t.Error("the Dockerfile does not build with `make build`, the target CI exercises")
	}
	for _, want := range []string{"EXPOSE 8080 9090", "org.opencontainers.image.source", "org.opencontainers.image.version", "org.opencontainers.image.licenses"} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	mk, _ := os.ReadFile("../../Makefile")
	for _, flagWant := range []string{"-trimpath", "-X main.version=", "CGO_ENABLED=0"} {
		if !strings.Contains(string(mk), flagWant) {
			t.Errorf("make build lacks %s", flagWant)
		}
	}
}

// Controller mode gets the RBAC it needs and the API token; every other mode gets neither.
func TestControllerModeRBAC(t *testing.T) {
	helm := tool(t, "HELM")
	for name, values := range valueFiles(t) {
		t.Run(name, func(t *testing.T) {
			controller := name == "kubernetes"
			var rules []rbacv1.PolicyRule
			var dep *appsv1.Deployment
			for _, doc := range splitDocs(render(t, helm, values)) {
				var head struct{ Kind string }
				_ = yaml.Unmarshal(doc, &head)
				switch head.Kind {
				case "ClusterRole", "Role":
					var r rbacv1.ClusterRole
					if err := yaml.Unmarshal(doc, &r); err != nil {
						t.Fatal(err)
					}
					rules = append(rules, r.Rules...)
				case "Deployment":
					dep = &appsv1.Deployment{}
					if err := yaml.Unmarshal(doc, dep); err != nil {
						t.Fatal(err)
					}
				}
			}
			allowed := func(group, resource, verb string) bool {
				for _, r := range rules {
					if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
						return true
					}
				}
				return false
			}
			pod := dep.Spec.Template.Spec
			token := pod.AutomountServiceAccountToken != nil && *pod.AutomountServiceAccountToken
			hasFlag := slices.Contains(pod.Containers[0].Args, "--kubernetes")
			if token != controller || hasFlag != controller {
				t.Errorf("token mounted %v, --kubernetes %v; want both %v", token, hasFlag, controller)
			}
			if !controller {
				if len(rules) > 0 {
					t.Errorf("RBAC rendered outside controller mode: %+v", rules)
				}
				return
			}
			for _, need := range [][3]string{
				{"eventing.knative.dev", "brokers", "watch"}, {"eventing.knative.dev", "triggers", "list"},
				{"eventing.knative.dev", "brokers/status", "update"}, {"eventing.knative.dev", "triggers/status", "update"},
				{"sources.knative.dev", "kafkasources", "watch"}, {"sources.knative.dev", "kafkasources/status", "update"},
				{"", "services", "watch"}, {"serving.knative.dev", "services", "list"},
				{"coordination.k8s.io", "leases", "create"}, {"coordination.k8s.io", "leases", "update"},
			} {
				if !allowed(need[0], need[1], need[2]) {
					t.Errorf("controller mode may not %s %s.%s", need[2], need[1], need[0])
				}
			}
			if allowed("eventing.knative.dev", "brokers", "update") || allowed("eventing.knative.dev", "triggers", "delete") {
				t.Error("controller mode may change specs; it only writes status")
			}
		})
	}
}
