package service

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/telemetry"
)

// Configurable is a service's whole configuration as its binary reads it:
// the settings, and how they bind to flags and RETAIN_* variables.
type Configurable interface {
	Settings
	// RegisterFlags binds every setting to a flag and its variable.
	RegisterFlags(fs *flag.FlagSet)
}

// Main is the whole of a service binary's main: bind the settings to flags
// and RETAIN_* variables, parse and check them all, and run until SIGINT
// or SIGTERM. It exits 2 on bad settings, all reported at once, and 1 when
// run fails. It is where a standalone service's settings are checked: run
// (through Run) gets them checked and does not check them again. RETAIN_*
// variables no setting reads are logged as warnings once telemetry is set
// up (by Run).
func Main(name string, settings Configurable, run func(ctx context.Context) error) {
	unknown, err := Parse(name, settings, os.Args[1:], os.Environ())
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = withUnknownEnv(ctx, unknown)
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// Parse reads settings from args (flags) and environ (KEY=VALUE entries,
// as os.Environ gives them) and checks them: the error lists every value
// that does not parse and every setting its Validate refuses, at once,
// each naming its variable and flag. It also returns the RETAIN_*
// variables of environ that no setting reads (most likely misspelt), with
// the closest name each. Flag errors other than bad values (an unknown
// flag, flag.ErrHelp) are returned as the flag package reports them.
func Parse(name string, settings Configurable, args, environ []string) ([]config.UnknownVar, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	settings.RegisterFlags(fs)
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	parseErr := config.Parse(fs, args, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	var ve *config.ValidationError
	if parseErr != nil && !errors.As(parseErr, &ve) {
		return nil, parseErr
	}
	// A setting whose value did not parse kept its default: what Validate
	// says of it would be about the default, not the operator's value.
	if err := config.Validate(parseErr, config.Without(settings.Validate(), config.Settings(parseErr))); err != nil {
		return nil, err
	}
	return config.UnknownEnv(environ, config.EnvNames(fs)), nil
}

type unknownEnvKey struct{}

func withUnknownEnv(ctx context.Context, unknown []config.UnknownVar) context.Context {
	if len(unknown) == 0 {
		return ctx
	}
	return context.WithValue(ctx, unknownEnvKey{}, unknown)
}

// logUnknownEnv warns of each variable Main found no setting reading.
func logUnknownEnv(ctx context.Context, log *slog.Logger) {
	unknown, _ := ctx.Value(unknownEnvKey{}).([]config.UnknownVar)
	for _, u := range unknown {
		attrs := []any{"variable", u.Name}
		if u.Suggestion != "" {
			attrs = append(attrs, "did_you_mean", u.Suggestion)
		}
		log.Warn("environment variable ignored: no setting of this service reads it (misspelt, or meant for another service?)", attrs...)
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

// Run is the whole life of a standalone service process: telemetry, the
// service built by build, and its gRPC, public HTTP and ops servers under
// one supervisor, until ctx is done. settings are as Main parsed and
// checked them (Parse), all at once before anything started; build wires
// the service from them without checking them again.
func Run(ctx context.Context, settings Settings, version string, build func(context.Context, *telemetry.Telemetry) (Hosted, error)) error {
	cfg := settings.Shared()
	cfg.Telemetry.Version = version
	tel, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	logUnknownEnv(ctx, tel.Logger.With("service", serviceName(cfg)))
	applyMemoryLimit(tel.Logger)
	svc, err := build(ctx, tel)
	if err != nil {
		return err
	}
	host, err := server.NewHost(server.HostConfig{Addrs: cfg.Addrs, TLS: cfg.TLS, Telemetry: tel, Verifier: svc.Verifier(), Supervisor: cfg.Supervisor}, svc)
	if err != nil {
		return err
	}
	return host.Run(ctx)
}

// serviceName is the service's name in logs ("ingest"), from its telemetry name.
func serviceName(cfg Config) string { return strings.TrimPrefix(cfg.Telemetry.Service, "retain-") }
