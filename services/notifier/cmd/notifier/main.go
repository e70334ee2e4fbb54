// Command notifier runs the notifier service alone.
package main

import (
	"context"

	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/services/notifier"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := notifier.DefaultConfig()
	service.Main("notifier", &cfg, func(ctx context.Context) error { return notifier.Run(ctx, cfg, version) })
}
