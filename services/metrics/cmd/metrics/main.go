// Command metrics runs the metrics service alone.
package main

import (
	"context"

	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/services/metrics"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := metrics.DefaultConfig()
	service.Main("metrics", &cfg, func(ctx context.Context) error { return metrics.Run(ctx, cfg, version) })
}
