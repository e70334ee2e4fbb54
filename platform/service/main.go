package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/retainhq/retain/platform/config"
)

// Main is the whole of a service binary's main: bind the settings to flags
// and RETAIN_* variables, parse them, and run until SIGINT or SIGTERM. It
// exits 2 on bad settings and 1 when run fails.
func Main(name string, registerFlags func(*flag.FlagSet), run func(ctx context.Context) error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	registerFlags(fs)
	if err := config.Parse(fs, os.Args[1:], nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}
