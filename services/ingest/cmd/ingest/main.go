// Command ingest runs the ingest service alone.
package main

import (
	"context"

	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/services/ingest"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := ingest.DefaultConfig()
	service.Main("ingest", &cfg, func(ctx context.Context) error { return ingest.Run(ctx, cfg, version) })
}
