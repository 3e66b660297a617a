// Package release turns a built switchyard binary into what a release publishes (`make release`):
// the OCI image (package image, as `make image` builds it), an SPDX SBOM of the binary read from
// its own Go build information, SHA256SUMS of the artifacts, and, given a registry, the image
// pushed there under the version's tag. Nothing here reaches the network but the push.
package release

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/switchyard-events/switchyard/test/deploy/image"
)

// Options say what a release is built from and where it goes.
type Options struct {
	// Dist is the directory the artifacts are written to (created; the image layout replaced).
	Dist string
	// Binary is the static switchyard binary built with this version (make build).
	Binary  string
	License string
	// CABundle is the PEM roots the image carries (image.Options.CABundle).
	CABundle string
	// Version is the release's version, as `switchyard --version` says it (v0.2.0).
	Version string
	// Created dates the image and the SBOM; the zero time gives reproducible artifacts.
	Created time.Time
	// Arch is the binary's architecture (default: this machine's).
	Arch string
	// Repository is where the image is pushed (ghcr.io/you/switchyard); empty: built, not pushed.
	Repository string
	// Latest also tags the pushed image latest.
	Latest bool
	// Insecure pushes over plain HTTP to a registry that is not on a loopback or private address
	// (those are spoken to over HTTP anyway).
	Insecure bool
	// Auth authenticates to the registry; nil is anonymous.
	Auth authn.Authenticator
}

// Result is what a release produced.
type Result struct {
	// Tag is the image's tag: the version without its leading v, as the chart's appVersion is
	// written (v0.2.0 is tagged 0.2.0).
	Tag    string
	Digest v1.Hash
	// Files are the artifacts in Dist that SHA256SUMS lists, by base name.
	Files []string
	// Pushed are the references written to the registry, each name:tag@digest.
	Pushed []string
}

// ImageTag is the image tag of version: without a leading v, as the chart's appVersion is.
func ImageTag(version string) string { return strings.TrimPrefix(version, "v") }

// Run builds the release's artifacts in o.Dist and pushes the image when o.Repository is set.
func Run(o Options) (*Result, error) {
	if o.Version == "" || strings.HasSuffix(o.Version, "-dirty") {
		return nil, fmt.Errorf("version %q: a release is built from a clean commit (git describe without -dirty), or given as VERSION=v0.x.y", o.Version)
	}
	if err := os.MkdirAll(o.Dist, 0o755); err != nil {
		return nil, err
	}
	res := &Result{Tag: ImageTag(o.Version)}
	digest, err := image.Build(filepath.Join(o.Dist, "image"), image.Options{Binary: o.Binary, CABundle: o.CABundle, License: o.License,
		Version: res.Tag, Created: o.Created, Arch: o.Arch})
	if err != nil {
		return nil, err
	}
	res.Digest = digest

	// The binary travels under a name that says what it is; the image holds the same bytes.
	binName := "switchyard-" + o.Version + "-linux-" + imageArch(filepath.Join(o.Dist, "image"))
	if err := copyFile(o.Binary, filepath.Join(o.Dist, binName)); err != nil {
		return nil, err
	}
	sbomName := "switchyard-" + o.Version + ".spdx.json"
	sbom, err := SBOM(o.Binary, o.Version, digest, o.Created)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Dist, sbomName), sbom, 0o644); err != nil {
		return nil, err
	}
	digestName := "switchyard-" + o.Version + ".image-digest"
	if err := os.WriteFile(filepath.Join(o.Dist, digestName), []byte(digest.String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	res.Files = []string{binName, sbomName, digestName}
	if err := WriteChecksums(o.Dist, res.Files); err != nil {
		return nil, err
	}
	if o.Repository == "" {
		return res, nil
	}
	tags := []string{res.Tag}
	if o.Latest {
		tags = append(tags, "latest")
	}
	res.Pushed, err = Push(filepath.Join(o.Dist, "image"), o.Repository, tags, o.Insecure, o.Auth)
	return res, err
}

func imageArch(layoutDir string) string {
	img, err := FromLayout(layoutDir)
	if err != nil {
		return "unknown"
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "unknown"
	}
	return cf.Architecture
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// FromLayout is the one image of the OCI layout at dir (as image.Build writes it).
func FromLayout(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d images, want the one make release built", dir, len(m.Manifests))
	}
	return p.Image(m.Manifests[0].Digest)
}

// Push writes the image of the layout at layoutDir to repository under each tag, then asks the
// registry for each tag back: a push is done when the registry names the digest built. It returns
// the references pushed, name:tag@digest.
func Push(layoutDir, repository string, tags []string, insecure bool, auth authn.Authenticator) ([]string, error) {
	img, err := FromLayout(layoutDir)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if auth == nil {
		auth = authn.Anonymous
	}
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	var pushed []string
	for _, tag := range tags {
		ref, err := name.NewTag(repository+":"+tag, opts...)
		if err != nil {
			return pushed, fmt.Errorf("REGISTRY %q: %w (want host[:port]/path, e.g. ghcr.io/you/switchyard)", repository, err)
		}
		if err := remote.Write(ref, img, remote.WithAuth(auth)); err != nil {
			return pushed, fmt.Errorf("pushing %s: %w", ref, err)
		}
		d, err := remote.Head(ref, remote.WithAuth(auth))
		if err != nil {
			return pushed, fmt.Errorf("reading %s back: %w", ref, err)
		}
		if d.Digest != digest {
			return pushed, fmt.Errorf("%s names %s after the push, not the image built (%s)", ref, d.Digest, digest)
		}
		pushed = append(pushed, ref.String()+"@"+digest.String())
	}
	return pushed, nil
}

// WriteChecksums writes dir/SHA256SUMS for files (base names in dir), in the format sha256sum -c
// reads.
func WriteChecksums(dir string, files []string) error {
	var b strings.Builder
	for _, f := range slices.Sorted(slices.Values(files)) {
		sum, err := fileSHA256(filepath.Join(dir, f))
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, f)
	}
	return os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(b.String()), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// The parts of SPDX 2.3's JSON form the SBOM uses.
type spdxDocument struct {
	SPDXVersion       string             `json:"spdxVersion"`
	DataLicense       string             `json:"dataLicense"`
	SPDXID            string             `json:"SPDXID"`
	Name              string             `json:"name"`
	DocumentNamespace string             `json:"documentNamespace"`
	CreationInfo      spdxCreationInfo   `json:"creationInfo"`
	Packages          []spdxPackage      `json:"packages"`
	Relationships     []spdxRelationship `json:"relationships"`
}

type spdxCreationInfo struct {
	Created  string   `json:"created"`
	Creators []string `json:"creators"`
}

type spdxPackage struct {
	Name             string         `json:"name"`
	SPDXID           string         `json:"SPDXID"`
	VersionInfo      string         `json:"versionInfo,omitempty"`
	DownloadLocation string         `json:"downloadLocation"`
	FilesAnalyzed    bool           `json:"filesAnalyzed"`
	LicenseConcluded string         `json:"licenseConcluded"`
	LicenseDeclared  string         `json:"licenseDeclared"`
	CopyrightText    string         `json:"copyrightText"`
	SourceInfo       string         `json:"sourceInfo,omitempty"`
	Checksums        []spdxChecksum `json:"checksums,omitempty"`
	ExternalRefs     []spdxRef      `json:"externalRefs,omitempty"`
}

type spdxChecksum struct {
	Algorithm     string `json:"algorithm"`
	ChecksumValue string `json:"checksumValue"`
}

type spdxRef struct {
	ReferenceCategory string `json:"referenceCategory"`
	ReferenceType     string `json:"referenceType"`
	ReferenceLocator  string `json:"referenceLocator"`
}

type spdxRelationship struct {
	Element string `json:"spdxElementId"`
	Type    string `json:"relationshipType"`
	Related string `json:"relatedSpdxElement"`
}

var notIDChars = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// SBOM is an SPDX 2.3 JSON document of the binary at path: the binary itself (its SHA-256, the
// image digest it ships in, the commit it was built from), the Go toolchain, and every module
// linked into it, each with its package URL. It reads what the Go linker recorded in the binary
// (the same as `go version -m`): what is listed is what is in it, not what go.mod allows.
func SBOM(path, version string, imageDigest v1.Hash, created time.Time) ([]byte, error) {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: no Go build information: %w", path, err)
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return nil, err
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	source := fmt.Sprintf("built by %s for %s/%s", info.GoVersion, settings["GOOS"], settings["GOARCH"])
	if rev := settings["vcs.revision"]; rev != "" {
		source += " from commit " + rev
		if settings["vcs.modified"] == "true" {
			source += " (with uncommitted changes)"
		}
	}
	if imageDigest != (v1.Hash{}) {
		source += "; shipped in the image " + imageDigest.String()
	}
	mainID := "SPDXRef-Package-switchyard"
	doc := spdxDocument{
		SPDXVersion: "SPDX-2.3", DataLicense: "CC0-1.0", SPDXID: "SPDXRef-DOCUMENT",
		Name:              "switchyard-" + version,
		DocumentNamespace: "https://github.com/switchyard-events/switchyard/spdx/switchyard-" + version + "-" + sum[:16],
		CreationInfo:      spdxCreationInfo{Created: created.UTC().Format(time.RFC3339), Creators: []string{"Tool: switchyard-release"}},
		Packages: []spdxPackage{{
			Name: info.Main.Path, SPDXID: mainID, VersionInfo: version,
			DownloadLocation: "git+https://github.com/switchyard-events/switchyard@" + version,
			LicenseConcluded: "Apache-2.0", LicenseDeclared: "Apache-2.0", CopyrightText: "NOASSERTION", SourceInfo: source,
			Checksums:    []spdxChecksum{{Algorithm: "SHA256", ChecksumValue: sum}},
			ExternalRefs: []spdxRef{purl(info.Main.Path, version)},
		}, {
			Name: "stdlib", SPDXID: "SPDXRef-Package-go-stdlib", VersionInfo: info.GoVersion,
			DownloadLocation: "https://go.dev/dl/", LicenseConcluded: "NOASSERTION", LicenseDeclared: "BSD-3-Clause",
			CopyrightText: "NOASSERTION", ExternalRefs: []spdxRef{purl("stdlib", info.GoVersion)},
		}},
		Relationships: []spdxRelationship{{"SPDXRef-DOCUMENT", "DESCRIBES", mainID}, {mainID, "DEPENDS_ON", "SPDXRef-Package-go-stdlib"}},
	}
	for i, dep := range info.Deps {
		m := moduleOf(dep)
		id := fmt.Sprintf("SPDXRef-Package-%d-%s", i+1, strings.Trim(notIDChars.ReplaceAllString(m.Path, "-"), "-"))
		p := spdxPackage{Name: m.Path, SPDXID: id, VersionInfo: m.Version, DownloadLocation: "NOASSERTION",
			LicenseConcluded: "NOASSERTION", LicenseDeclared: "NOASSERTION", CopyrightText: "NOASSERTION",
			ExternalRefs: []spdxRef{purl(m.Path, m.Version)}}
		if m.Sum != "" {
			// go.sum's h1: hash is a SHA-256 of the module's file tree.
			if b, err := decodeH1(m.Sum); err == nil {
				p.Checksums = []spdxChecksum{{Algorithm: "SHA256", ChecksumValue: b}}
			}
		}
		if dep.Replace != nil {
			p.SourceInfo = "replaces " + dep.Path + "@" + dep.Version
		}
		doc.Packages = append(doc.Packages, p)
		doc.Relationships = append(doc.Relationships, spdxRelationship{mainID, "DEPENDS_ON", id})
	}
	return json.MarshalIndent(doc, "", "  ")
}

// moduleOf is what was linked for dep: its replacement when go.mod replaced it.
func moduleOf(dep *debug.Module) *debug.Module {
	if dep.Replace != nil {
		return dep.Replace
	}
	return dep
}

// purl is the package URL of a Go module (the purl spec's golang type).
func purl(path, version string) spdxRef {
	loc := "pkg:golang/" + path
	if version != "" {
		loc += "@" + version
	}
	return spdxRef{ReferenceCategory: "PACKAGE-MANAGER", ReferenceType: "purl", ReferenceLocator: loc}
}

func decodeH1(sum string) (string, error) {
	b64, ok := strings.CutPrefix(sum, "h1:")
	if !ok {
		return "", errors.New("not an h1 hash")
	}
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(b) != sha256.Size {
		return "", errors.New("not an h1 hash")
	}
	return hex.EncodeToString(b), nil
}
