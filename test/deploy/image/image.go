// Package image builds Switchyard's OCI image without a container engine: one layer holding the
// static binary, the CA roots, a passwd/group naming the non-root user 65532, /tmp and the
// license, with the Dockerfile's entrypoint, user, ports and labels. `make image` writes it as an
// OCI image layout (bin/image), which umoci unpacks, skopeo copies to a registry, and `docker
// load`/`podman load` read from a tarball of it.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group the image runs as (distroless's "nonroot").
const NonRoot = 65532

// Options say what goes into the image.
type Options struct {
	// Binary is the static switchyard binary (make build).
	Binary string
	// CABundle is the PEM file of trusted roots copied to /etc/ssl/certs/ca-certificates.crt.
	CABundle string
	// License is copied to /licenses/LICENSE.
	License string
	Version string
	// Created is the image's creation time; the zero time gives a reproducible image.
	Created time.Time
	// Arch is the binary's architecture (default: this machine's).
	Arch string
}

// Build writes the image to an OCI layout at dir, tagged Options.Version (the layout's
// org.opencontainers.image.ref.name), and returns its digest.
func Build(dir string, o Options) (v1.Hash, error) {
	layer, err := rootLayer(o)
	if err != nil {
		return v1.Hash{}, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return v1.Hash{}, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", o.Arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.Created = v1.Time{Time: o.Created}
	cf.Config = v1.Config{
		User:       fmt.Sprintf("%d:%d", NonRoot, NonRoot),
		Entrypoint: []string{"/switchyard"},
		Cmd:        []string{"serve", "--config", "/etc/switchyard"},
		Env:        []string{"PATH=/", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		WorkingDir: "/",
		// 8080: broker ingress; 9090: admin (probes, metrics, admin API).
		ExposedPorts: map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}},
		Labels: map[string]string{
			"org.opencontainers.image.title":       "switchyard",
			"org.opencontainers.image.description": "CloudEvents router, a drop-in for the Knative broker",
			"org.opencontainers.image.source":      "https://github.com/switchyard-events/switchyard",
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.licenses":    "Apache-2.0",
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return v1.Hash{}, err
	}
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": o.Version})); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// rootLayer is the image's one layer, every entry owned by root but /home/nonroot, with fixed
// times so that the same inputs give the same digest.
func rootLayer(o Options) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := o.Created
	dir := func(name string, mode int64, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: owner, Gid: owner, ModTime: mtime})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: mtime}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	read := func(path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		return b, nil
	}
	bin, err := read(o.Binary)
	if err != nil {
		return nil, err
	}
	roots, err := read(o.CABundle)
	if err != nil {
		return nil, err
	}
	license, err := read(o.License)
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonRoot)
	steps := []func() error{
		func() error { return dir("etc/", 0o755, 0) },
		func() error { return file("etc/passwd", 0o644, []byte(passwd)) },
		func() error { return file("etc/group", 0o644, []byte(group)) },
		func() error { return dir("etc/ssl/", 0o755, 0) },
		func() error { return dir("etc/ssl/certs/", 0o755, 0) },
		func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, roots) },
		// The chart mounts the configuration here; an empty directory keeps a bare run tidy.
		func() error { return dir("etc/switchyard/", 0o755, 0) },
		func() error { return dir("home/", 0o755, 0) },
		func() error { return dir("home/nonroot/", 0o700, NonRoot) },
		func() error { return dir("licenses/", 0o755, 0) },
		func() error { return file("licenses/LICENSE", 0o644, license) },
		func() error { return dir("tmp/", 0o1777, 0) },
		func() error { return file("switchyard", 0o755, bin) },
		tw.Close,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}
