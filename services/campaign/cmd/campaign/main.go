// Command campaign runs the campaign service alone.
package main

import (
	"context"

	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/services/campaign"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := campaign.DefaultConfig()
	service.Main("campaign", &cfg, func(ctx context.Context) error { return campaign.Run(ctx, cfg, version) })
}
