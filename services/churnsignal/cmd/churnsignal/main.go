// Command churnsignal runs the churn-signal service alone.
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
	"github.com/retainhq/retain/services/churnsignal"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	cfg := churnsignal.DefaultConfig()
	fs := flag.NewFlagSet("churnsignal", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	if err := config.Parse(fs, os.Args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "churnsignal:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := churnsignal.Run(ctx, cfg, version); err != nil {
		fmt.Fprintln(os.Stderr, "churnsignal:", err)
		os.Exit(1)
	}
}
