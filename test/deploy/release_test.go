package deploy

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

// TestReleasePushesTheImage (issue #33, item 1): `make release VERSION=... REGISTRY=...` against a
// registry running in this process (go-containerregistry's pkg/registry on 127.0.0.1) builds the
// binary with that version, its image, an SBOM and SHA256SUMS, and pushes the image under the
// version's tag and latest. Pulled back, the registry's manifest has the digest built, its config
// the version label, and its layer the very binary of dist/, which says the version in --version.
// The chart, with image.repository pointing at that registry, renders exactly that image for the
// Deployment and the validation Job, and the registry resolves it. (No cluster here, so no helm
// install: the render and the registry's answer are what is checked.)
func TestReleasePushesTheImage(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	repo := host + "/switchyard-events/switchyard"
	const version, tag = "v0.0.1-releasetest", "0.0.1-releasetest"
	dist := t.TempDir()

	cmd := exec.Command("make", "-C", "../..", "release", "VERSION="+version, "DIST="+dist, "REGISTRY="+repo, "LATEST=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make release: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "pushed "+repo+":"+tag+"@sha256:") {
		t.Errorf("make release does not say what it pushed:\n%s", out)
	}

	// The artifacts, and SHA256SUMS vouching for each.
	sums := readSums(t, filepath.Join(dist, "SHA256SUMS"))
	binName := "switchyard-" + version + "-linux-" + goEnv(t, "GOARCH")
	for _, f := range []string{binName, "switchyard-" + version + ".spdx.json", "switchyard-" + version + ".image-digest"} {
		if got := fileSum(t, filepath.Join(dist, f)); sums[f] != got {
			t.Errorf("SHA256SUMS says %s is %q; it is %s", f, sums[f], got)
		}
	}
	if v, err := exec.Command(filepath.Join(dist, binName), "--version").CombinedOutput(); err != nil || !strings.Contains(string(v), version) {
		t.Errorf("%s --version: %v %q, want %s", binName, err, v, version)
	}
	checkSBOM(t, filepath.Join(dist, "switchyard-"+version+".spdx.json"), version, fileSum(t, filepath.Join(dist, binName)))
	built, err := os.ReadFile(filepath.Join(dist, "switchyard-"+version+".image-digest"))
	if err != nil {
		t.Fatal(err)
	}
	digest := strings.TrimSpace(string(built))

	// Pulled back from the registry.
	ref, err := name.NewTag(repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if d, _ := img.Digest(); d.String() != digest {
		t.Errorf("the registry's %s is %s; make release built %s", ref, d, digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Labels["org.opencontainers.image.version"] != tag || cf.Config.Labels["org.opencontainers.image.source"] == "" ||
		cf.Config.User != "65532:65532" || cf.Architecture != goEnv(t, "GOARCH") {
		t.Errorf("the pushed image's config: %s %+v", cf.Architecture, cf.Config)
	}
	if got := layerFileSum(t, img, "switchyard"); got != fileSum(t, filepath.Join(dist, binName)) {
		t.Errorf("the pushed image's /switchyard (%s) is not dist's binary", got)
	}
	tags, err := remote.List(ref.Context())
	if err != nil || !slices.Contains(tags, tag) || !slices.Contains(tags, "latest") {
		t.Errorf("tags of %s: %v %v, want %s and latest", ref.Context(), tags, err, tag)
	}
	if latest, err := remote.Head(ref.Context().Tag("latest")); err != nil || latest.Digest.String() != digest {
		t.Errorf("latest: %v %v, want %s", latest, err, digest)
	}

	// The chart pointed at that registry names the image pushed, and the registry has it.
	helm := tool(t, "HELM")
	rendered, err := exec.Command(helm, "template", "sy", chartDir, "--set", "image.repository="+repo, "--set", "image.tag="+tag).CombinedOutput()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, rendered)
	}
	images := renderedImages(t, rendered)
	if len(images) != 2 || images["Deployment"] != repo+":"+tag || images["Job"] != repo+":"+tag {
		t.Fatalf("the chart's images with image.repository=%s: %v", repo, images)
	}
	named, err := name.ParseReference(images["Deployment"])
	if err != nil {
		t.Fatal(err)
	}
	if d, err := remote.Head(named); err != nil || d.Digest.String() != digest {
		t.Errorf("the registry's answer for the chart's image %s: %v %v, want %s", named, d, err, digest)
	}
}

// TestChartDefaultImageIsTheAppVersion: the chart's default image is the repository's release tag
// for the chart's appVersion, which `make release VERSION=v{appVersion}` produces (README).
func TestChartDefaultImageIsTheAppVersion(t *testing.T) {
	helm := tool(t, "HELM")
	chart, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var meta struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(chart, &meta); err != nil || meta.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %v %q", err, meta.AppVersion)
	}
	want := "ghcr.io/switchyard-events/switchyard:" + meta.AppVersion
	if images := renderedImages(t, render(t, helm, "")); images["Deployment"] != want || images["Job"] != want {
		t.Errorf("default images %v, want %s", images, want)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "make release VERSION=v"+meta.AppVersion) {
		t.Errorf("README.md does not say how to produce the chart's default image (make release VERSION=v%s)", meta.AppVersion)
	}
}

// renderedImages are the container images of the rendered Deployment and Job, by kind.
func renderedImages(t *testing.T, rendered []byte) map[string]string {
	t.Helper()
	images := map[string]string{}
	for _, doc := range splitDocs(rendered) {
		var head struct{ Kind string }
		if yaml.Unmarshal(doc, &head) != nil {
			continue
		}
		switch head.Kind {
		case "Deployment":
			var d appsv1.Deployment
			if err := yaml.Unmarshal(doc, &d); err != nil {
				t.Fatal(err)
			}
			images["Deployment"] = d.Spec.Template.Spec.Containers[0].Image
		case "Job":
			var j batchv1.Job
			if err := yaml.Unmarshal(doc, &j); err != nil {
				t.Fatal(err)
			}
			images["Job"] = j.Spec.Template.Spec.Containers[0].Image
		}
	}
	return images
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// readSums reads a sha256sum file: "hex  name" lines.
func readSums(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, file, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("%s: %q is not a sha256sum line", path, sc.Text())
		}
		sums[file] = sum
	}
	return sums
}

// layerFileSum is the SHA-256 of the file at path in img's layers.
func layerFileSum(t *testing.T, img v1.Image, path string) string {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Name == path {
				s := sha256.New()
				_, _ = io.Copy(s, tr)
				rc.Close()
				return hex.EncodeToString(s.Sum(nil))
			}
		}
		rc.Close()
	}
	t.Fatalf("no %s in the image", path)
	return ""
}

// checkSBOM: the SPDX document describes the binary (its checksum, the version) and lists the Go
// toolchain and the modules linked in, with package URLs.
func checkSBOM(t *testing.T, path, version, binarySum string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion string `json:"spdxVersion"`
		Packages    []struct {
			Name, SPDXID, VersionInfo string
			Checksums                 []struct{ Algorithm, ChecksumValue string }
			ExternalRefs              []struct{ ReferenceType, ReferenceLocator string }
		}
		Relationships []struct {
			Element string `json:"spdxElementId"`
			Type    string `json:"relationshipType"`
			Related string `json:"relatedSpdxElement"`
		}
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || len(doc.Packages) < 10 {
		t.Fatalf("SBOM: %s with %d packages", doc.SPDXVersion, len(doc.Packages))
	}
	main := doc.Packages[0]
	if main.Name != "github.com/switchyard-events/switchyard" || main.VersionInfo != version || len(main.Checksums) != 1 || main.Checksums[0].ChecksumValue != binarySum {
		t.Errorf("SBOM's main package: %+v", main)
	}
	byName := map[string]string{}
	ids := map[string]bool{}
	for _, p := range doc.Packages {
		if ids[p.SPDXID] {
			t.Errorf("SBOM: SPDXID %s twice", p.SPDXID)
		}
		ids[p.SPDXID] = true
		for _, r := range p.ExternalRefs {
			if r.ReferenceType == "purl" {
				byName[p.Name] = r.ReferenceLocator
			}
		}
	}
	if !strings.HasPrefix(byName["go.uber.org/zap"], "pkg:golang/go.uber.org/zap@v") || !strings.HasPrefix(byName["stdlib"], "pkg:golang/stdlib@go") {
		t.Errorf("SBOM's package URLs for zap and the toolchain: %q %q", byName["go.uber.org/zap"], byName["stdlib"])
	}
	depends := 0
	for _, r := range doc.Relationships {
		if r.Element == main.SPDXID && r.Type == "DEPENDS_ON" && ids[r.Related] {
			depends++
		}
	}
	if depends != len(doc.Packages)-1 {
		t.Errorf("SBOM: %d DEPENDS_ON relationships for %d packages", depends, len(doc.Packages)-1)
	}
}
