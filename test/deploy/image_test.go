package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/switchyard-events/switchyard/test/deploy/image"
)

// need finds a command make test installs (Debian's umoci and runc): a failure in CI, a skip
// elsewhere.
func need(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed; make test installs it (make image-tools)", name)
	}
	t.Skipf("%s is not installed: make image-tools", name)
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestImageRunsUnderRunc builds the image as make image does, checks its configuration, unpacks
// it with umoci and runs it with runc as the image says (its entrypoint and command, user 65532)
// on a read-only root filesystem, with a configuration mounted at /etc/switchyard as the chart
// mounts it: /readyz answers, and an event sent to its broker reaches a subscriber on the host.
func TestImageRunsUnderRunc(t *testing.T) {
	bin := tool(t, "SWITCHYARD_BIN")
	umoci, runc := need(t, "umoci"), need(t, "runc")
	if os.Geteuid() != 0 {
		t.Skip("runc needs root here (rootless runc needs user namespaces set up)")
	}
	dir := t.TempDir()
	layoutDir := filepath.Join(dir, "image")
	if _, err := image.Build(layoutDir, image.Options{Binary: bin, CABundle: "/etc/ssl/certs/ca-certificates.crt", License: "../../LICENSE", Version: "test"}); err != nil {
		t.Fatal(err)
	}

	// The image's own configuration: what a registry, Kubernetes and docker would read.
	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	m, _ := idx.IndexManifest()
	if len(m.Manifests) != 1 || m.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "test" {
		t.Fatalf("index: %+v", m.Manifests)
	}
	img, err := p.Image(m.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/switchyard" ||
		strings.Join(cf.Config.Cmd, " ") != "serve --config /etc/switchyard" || cf.Config.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" {
		t.Errorf("image config: %+v", cf.Config)
	}

	bundle := filepath.Join(dir, "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layoutDir+":test", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}

	sub := make(chan string, 10)
	subscriber := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub <- r.Header.Get("Ce-Id")
	}))
	defer subscriber.Close()
	ingress, admin := freeAddr(t), freeAddr(t)
	cfgDir := filepath.Join(dir, "config")
	_ = os.Mkdir(cfgDir, 0o755)
	cfg := fmt.Sprintf(`apiVersion: switchyard.dev/v1alpha1
kind: SwitchyardConfig
metadata: {name: settings}
spec:
  ingress: {addr: "%s"}
  admin: {addr: "%s"}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {name: default, namespace: default}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: all, namespace: default}
spec:
  broker: default
  subscriber: {uri: "%s"}
`, ingress, admin, subscriber.URL)
	if err := os.WriteFile(filepath.Join(cfgDir, "config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// As the chart runs it: read-only root, the configuration mounted read-only, /tmp a tmpfs;
	// the host's network (so the test reaches it on 127.0.0.1), the rest as umoci wrote it.
	specPath := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	spec["root"].(map[string]any)["readonly"] = true
	process := spec["process"].(map[string]any)
	process["terminal"] = false
	if u := process["user"].(map[string]any); u["uid"] != float64(image.NonRoot) || u["gid"] != float64(image.NonRoot) {
		t.Errorf("umoci's runtime spec runs as %v, want the image's user 65532", u)
	}
	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	spec["mounts"] = append(spec["mounts"].([]any),
		map[string]any{"destination": "/etc/switchyard", "type": "bind", "source": cfgDir, "options": []string{"rbind", "ro"}},
		map[string]any{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "nodev", "mode=1777", "size=65536k"}})
	raw, _ = json.Marshal(spec)
	if err := os.WriteFile(specPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}

	id := fmt.Sprintf("switchyard-image-test-%d", os.Getpid())
	var logs bytes.Buffer
	cmd := exec.Command(runc, "run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = exec.Command(runc, "kill", id, "KILL").Run()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		_ = exec.Command(runc, "delete", "--force", id).Run()
		if t.Failed() {
			t.Logf("container output:\n%s", logs.String())
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + admin + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) == "ok\n" {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the container exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not answer 200 within 20 s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The process runs as 65532, not root.
	state, err := exec.Command(runc, "state", id).Output()
	if err != nil {
		t.Fatalf("runc state: %v", err)
	}
	var st struct{ Pid int }
	_ = json.Unmarshal(state, &st)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.Pid))
	if err != nil || !strings.Contains(string(status), "\nUid:\t65532\t65532\t65532\t65532\n") {
		t.Errorf("the container's process is not user 65532: %v\n%s", err, status)
	}

	req, _ := http.NewRequest(http.MethodPost, "http://"+ingress+"/default/default", strings.NewReader(`{}`))
	for k, v := range map[string]string{"Ce-Specversion": "1.0", "Ce-Id": "from-the-host", "Ce-Type": "image.test", "Ce-Source": "/test", "Content-Type": "application/json"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("ingress answered %d", resp.StatusCode)
	}
	select {
	case got := <-sub:
		if got != "from-the-host" {
			t.Errorf("subscriber got event %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the event did not reach the subscriber")
	}
}
