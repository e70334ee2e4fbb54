// Package telemetry sets up a process's logs, traces and metrics.
//
// Nothing here touches OpenTelemetry or Prometheus globals: several Retain
// services run in one process under `retain dev`, and each gets its own
// providers and registry, passed explicitly to whatever needs them.
package telemetry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/retainhq/retain/platform/config"
)

// Log levels and formats accepted by Config.
const (
	LevelDebug = "debug"
	LevelInfo  = "info"
	LevelWarn  = "warn"
	LevelError = "error"

	FormatJSON = "json"
	FormatText = "text"
)

// Config describes the process being observed.
type Config struct {
	// Service is service.name on every span and metric; required.
	Service string
	// Version is service.version.
	Version string
	// LogLevel is debug, info, warn or error; empty means info.
	LogLevel string
	// LogFormat is json or text; empty means json.
	LogFormat string
	// Output receives logs; nil means os.Stderr.
	Output io.Writer
}

// RegisterFlags binds the log settings to -log-level/RETAIN_LOG_LEVEL and
// -log-format/RETAIN_LOG_FORMAT, with the current values as defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	if c.LogLevel == "" {
		c.LogLevel = LevelInfo
	}
	if c.LogFormat == "" {
		c.LogFormat = FormatJSON
	}
	config.StringVar(fs, &c.LogLevel, "log-level", "RETAIN_LOG_LEVEL", "log level: debug, info, warn or error")
	config.StringVar(fs, &c.LogFormat, "log-format", "RETAIN_LOG_FORMAT", "log format: json or text")
}

// Validate reports every invalid field at once.
func (c Config) Validate() error {
	var v config.Validator
	v.Require("telemetry service name", c.Service)
	if c.LogLevel != "" {
		v.OneOf(config.SettingName("RETAIN_LOG_LEVEL", "log-level"), strings.ToLower(c.LogLevel), LevelDebug, LevelInfo, LevelWarn, LevelError)
	}
	if c.LogFormat != "" {
		v.OneOf(config.SettingName("RETAIN_LOG_FORMAT", "log-format"), strings.ToLower(c.LogFormat), FormatJSON, FormatText)
	}
	return v.Err()
}

// ParseLevel maps debug|info|warn|error (any case; empty is info) to a slog level.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case LevelDebug:
		return slog.LevelDebug, nil
	case LevelInfo, "":
		return slog.LevelInfo, nil
	case LevelWarn:
		return slog.LevelWarn, nil
	case LevelError:
		return slog.LevelError, nil
	default:
		return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
	}
}

// Telemetry holds the observability plumbing of one service.
type Telemetry struct {
	// Logger writes structured logs with trace_id/span_id of the span in the
	// context passed to its *Context methods.
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	// Propagator carries W3C trace context and baggage across gRPC and NATS.
	Propagator propagation.TextMapPropagator
	// Registry is the private Prometheus registry behind MetricsHandler, for
	// the rare collector that is not an OTel instrument (e.g. pool stats).
	Registry *prometheus.Registry
	// MetricsHandler serves Registry in the Prometheus exposition format.
	MetricsHandler http.Handler

	shutdown []func(context.Context) error
}

// Setup builds logs, traces and metrics for cfg.
//
// Traces go to an OTLP gRPC exporter only when OTEL_EXPORTER_OTLP_ENDPOINT
// or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (the exporter reads the other
// OTEL_EXPORTER_OTLP_* variables itself); otherwise spans are still created,
// so logs carry trace ids and in-process propagation works, but nothing is
// exported.
func Setup(ctx context.Context, cfg Config) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("telemetry setup: %w", err)
	}
	level, err := ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("telemetry setup: %w", err)
	}
	out := cfg.Output
	if out == nil {
		out = os.Stderr
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationText}
	var base slog.Handler
	if strings.ToLower(cfg.LogFormat) == FormatText {
		base = slog.NewTextHandler(out, opts)
	} else {
		base = slog.NewJSONHandler(out, opts)
	}
	// No "service" attribute here: under `retain dev` each hosted service
	// adds its own, and slog would print both keys.
	logger := slog.New(NewTraceHandler(base))

	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		// Last, so OTEL_SERVICE_NAME cannot rename every service of a
		// `retain dev` process to the same name.
		resource.WithAttributes(semconv.ServiceName(cfg.Service), semconv.ServiceVersion(cfg.Version)),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry setup: resource: %w", err)
	}

	t := &Telemetry{
		Logger:     logger,
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if endpoint, ok := otlpEndpoint(); ok {
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry setup: otlp trace exporter for %s: %w", endpoint, err)
		}
		tpOpts = append(tpOpts, sdktrace.WithBatcher(exp))
		logger.InfoContext(ctx, "exporting traces over OTLP", "endpoint", endpoint)
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	t.TracerProvider = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)

	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry setup: register go collector: %w", err), t.Shutdown(ctx))
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry setup: register process collector: %w", err), t.Shutdown(ctx))
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("telemetry setup: prometheus exporter: %w", err), t.Shutdown(ctx))
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithResource(res), sdkmetric.WithReader(exporter))
	t.MeterProvider = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	t.Registry = reg
	t.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// Counts failed scrapes in the same registry, so they are visible.
		Registry:          reg,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		EnableOpenMetrics: true,
	})
	return t, nil
}

// durationText writes a time.Duration as Go writes it ("6.4s", "2m0s"),
// which time.ParseDuration reads back: slog's JSON handler would write
// nanoseconds (6400000000), which an operator has to convert by hand. The
// text handler writes the same already; both get it so that the two
// formats agree whatever slog does next.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func otlpEndpoint() (string, bool) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v, true
		}
	}
	return "", false
}

// Shutdown flushes pending spans and stops the providers. Call it last, after
// every component using them has stopped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	// Reverse order of creation: metrics may describe the exporters' work.
	for i := len(t.shutdown) - 1; i >= 0; i-- {
		if err := t.shutdown[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	t.shutdown = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}
