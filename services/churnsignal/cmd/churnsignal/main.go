// Command churnsignal runs the churn-signal service alone.
package main

import (
	"context"

	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/services/churnsignal"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := churnsignal.DefaultConfig()
	service.Main("churnsignal", &cfg, func(ctx context.Context) error { return churnsignal.Run(ctx, cfg, version) })
}
