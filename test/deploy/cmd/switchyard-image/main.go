// Command switchyard-image builds Switchyard's OCI image layout without a container engine
// (`make image`): see package image.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/switchyard-events/switchyard/test/deploy/image"
)

func main() {
	var o image.Options
	out := flag.String("out", "bin/image", "the OCI image layout directory to write (replaced)")
	flag.StringVar(&o.Binary, "binary", "bin/switchyard", "the static switchyard binary")
	flag.StringVar(&o.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM roots for /etc/ssl/certs/ca-certificates.crt")
	flag.StringVar(&o.License, "license", "LICENSE", "the license file")
	flag.StringVar(&o.Version, "version", "dev", "the image's tag and version label")
	flag.StringVar(&o.Arch, "arch", "", "the binary's architecture (default: this machine's)")
	epoch := flag.Int64("source-date-epoch", 0, "creation time in Unix seconds (0: a reproducible image dated 1970; also SOURCE_DATE_EPOCH)")
	flag.Parse()
	if *epoch == 0 {
		fmt.Sscan(os.Getenv("SOURCE_DATE_EPOCH"), epoch)
	}
	o.Created = time.Unix(*epoch, 0).UTC()
	digest, err := image.Build(*out, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "switchyard-image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s:%s %s\n", *out, o.Version, digest)
}
