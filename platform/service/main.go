package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/telemetry"
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

// Hosted is a service built on Deps, as the standalone process hosts it.
type Hosted interface {
	server.Service
	// Verifier checks the tokens of the service's APIs.
	Verifier() *auth.Verifier
}

// Settings are a service's whole configuration: its own settings around
// the shared Config it embeds (which provides Shared).
type Settings interface {
	// Validate reports every bad setting at once.
	Validate() error
	// Shared is the embedded Config.
	Shared() Config
}

// Run is the whole life of a standalone service process: the settings
// checked (all of them, before telemetry setup could stop at a bad log
// level alone), telemetry, the service built by build, and its gRPC,
// public HTTP and ops servers under one supervisor, until ctx is done.
func Run(ctx context.Context, settings Settings, version string, build func(context.Context, *telemetry.Telemetry) (Hosted, error)) error {
	if err := settings.Validate(); err != nil {
		return err
	}
	cfg := settings.Shared()
	cfg.Telemetry.Version = version
	tel, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	applyMemoryLimit(tel.Logger)
	svc, err := build(ctx, tel)
	if err != nil {
		return err
	}
	host, err := server.NewHost(server.HostConfig{Addrs: cfg.Addrs, Telemetry: tel, Verifier: svc.Verifier(), Supervisor: cfg.Supervisor}, svc)
	if err != nil {
		return err
	}
	return host.Run(ctx)
}
