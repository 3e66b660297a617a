// Command switchyard-release builds a release's artifacts from a built binary and, given a
// registry, pushes its image there (`make release`): see package release.
//
// Credentials for the push are those of `docker login` / `podman login` (the Docker config file,
// DOCKER_CONFIG, credential helpers), or REGISTRY_USERNAME and REGISTRY_PASSWORD when set (CI).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/switchyard-events/switchyard/test/deploy/release"
)

func main() {
	var o release.Options
	flag.StringVar(&o.Dist, "dist", "dist", "the directory of the artifacts")
	flag.StringVar(&o.Binary, "binary", "bin/switchyard", "the static switchyard binary, built with -version")
	flag.StringVar(&o.License, "license", "LICENSE", "the license file")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM roots for the image")
	flag.StringVar(&o.Version, "version", "", "the release's version (v0.2.0); the image is tagged without the v")
	flag.StringVar(&o.Repository, "registry", "", "push the image to this repository (ghcr.io/you/switchyard); empty: build only")
	flag.StringVar(&o.Arch, "arch", "", "the binary's architecture (default: this machine's)")
	flag.BoolVar(&o.Latest, "latest", false, "also tag the pushed image latest")
	flag.BoolVar(&o.Insecure, "insecure", false, "push over plain HTTP (loopback and private addresses always are)")
	epoch := flag.Int64("source-date-epoch", 0, "creation time in Unix seconds (0: reproducible, dated 1970; also SOURCE_DATE_EPOCH)")
	flag.Parse()
	if *epoch == 0 {
		fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), epoch)
	}
	o.Created = time.Unix(*epoch, 0).UTC()
	if o.Repository != "" {
		o.Auth = credentials(o.Repository)
	}
	res, err := release.Run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchyard-release:", err)
		os.Exit(1)
	}
	fmt.Printf("%s/image (OCI layout) tagged %s, %s\n", o.Dist, res.Tag, res.Digest)
	for _, f := range res.Files {
		fmt.Printf("%s/%s\n", o.Dist, f)
	}
	fmt.Printf("%s/SHA256SUMS\n", o.Dist)
	if o.Repository == "" {
		fmt.Println("REGISTRY is not set: built, not pushed (make release VERSION=... REGISTRY=host/path pushes)")
		return
	}
	for _, p := range res.Pushed {
		fmt.Println("pushed", p)
	}
}

// credentials for repository: REGISTRY_USERNAME and REGISTRY_PASSWORD, else what `docker login`
// stored for its registry, else none.
func credentials(repository string) authn.Authenticator {
	if u, p := os.Getenv("REGISTRY_USERNAME"), os.Getenv("REGISTRY_PASSWORD"); u != "" && p != "" {
		return &authn.Basic{Username: u, Password: p}
	}
	repo, err := name.NewRepository(repository)
	if err != nil {
		return authn.Anonymous // Run says what is wrong with the name
	}
	a, err := authn.DefaultKeychain.Resolve(repo.Registry)
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchyard-release: reading registry credentials:", err, "(pushing anonymously)")
		return authn.Anonymous
	}
	return a
}
