// Command metrics runs the metrics service alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/services/metrics"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := metrics.DefaultConfig()
	fs := flag.NewFlagSet("metrics", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := metrics.Run(ctx, cfg, version); err != nil {
		fmt.Fprintln(os.Stderr, "metrics:", err)
		os.Exit(1)
	}
}
