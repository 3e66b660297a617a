//go:build benthoswrapper

// The Benthos v4.27.0 the benchmark harness compares against. `go install` of Benthos fails (its
// go.mod has a replace), so `make bench` copies this file into a wrapper module in the tools
// cache, adds the replace there, and builds it with -tags benthoswrapper. Only the io and pure
// components are linked: the http_server input, switch and http_client outputs the harness uses.
package main

import (
	"context"

	_ "github.com/benthosdev/benthos/v4/public/components/io"
	_ "github.com/benthosdev/benthos/v4/public/components/pure"
	"github.com/benthosdev/benthos/v4/public/service"
)

func main() { service.RunCLI(context.Background()) }
