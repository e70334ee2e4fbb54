// Package metrics is the composition root of the metrics service: it
// projects the facts on RETAIN_EVENTS into its own database and answers
// retention, churn, repeat purchase, cohort, NPS/CSAT, RFM, top customer and
// sales queries over gRPC. cmd/metrics runs it alone; `retain dev` runs it
// beside the other services in one process.
package metrics

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/telemetry"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
	"github.com/retainhq/retain/services/metrics/internal/api"
	"github.com/retainhq/retain/services/metrics/internal/consumer"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// databaseEnv is the variable of the service's database URL.
const databaseEnv = "RETAIN_METRICS_DATABASE_URL"

// Config is everything the metrics service needs. Zero values are replaced
// by DefaultConfig's by RegisterFlags.
type Config struct {
	service.Config

	// BatchSize is the most facts applied in one transaction.
	BatchSize int
	// Consumers is the number of consumer workers. Batches of one tenant
	// are serialised by the tenant's lock, so more workers help only with
	// many tenants.
	Consumers int
	// CacheBytes bounds the in-memory cache of decoded day bitmaps (all
	// tenants together); least recently queried tenants are evicted first.
	// 0 keeps nothing between queries: answers are the same, only slower.
	CacheBytes int

	// Now is the clock queries measure up to (tests); nil is time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		Config:     service.DefaultConfig("metrics"),
		BatchSize:  500,
		Consumers:  1,
		CacheBytes: store.DefaultCacheBytes,
	}
}

// RegisterFlags binds every setting to a flag and its RETAIN_* variable.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs, databaseEnv, "Postgres URL of the metrics database (the projections)")
	config.IntVar(fs, &c.BatchSize, "batch-size", "RETAIN_METRICS_BATCH_SIZE", "most facts applied in one transaction")
	config.IntVar(fs, &c.Consumers, "consumers", "RETAIN_METRICS_CONSUMERS", "consumer workers (batches of one tenant never run at once)")
	config.IntVar(fs, &c.CacheBytes, "cache-bytes", "RETAIN_METRICS_CACHE_BYTES", "byte budget of the day bitmap cache, all tenants (0: nothing kept between queries)")
}

// Validate names every bad setting at once, each with its variable and
// flag, its value and the form wanted, as the shared settings are named.
func (c Config) Validate() error {
	var v config.Validator
	v.Add(c.Config.Validate(databaseEnv))
	v.Check(c.BatchSize >= 1 && c.BatchSize <= 5000, config.SettingName("RETAIN_METRICS_BATCH_SIZE", "batch-size"),
		"must be 1-5000, got %d", c.BatchSize)
	v.Check(c.Consumers >= 1 && c.Consumers <= 64, config.SettingName("RETAIN_METRICS_CONSUMERS", "consumers"),
		"must be 1-64, got %d", c.Consumers)
	v.Check(c.CacheBytes >= 0, config.SettingName("RETAIN_METRICS_CACHE_BYTES", "cache-bytes"),
		"must be 0 or more bytes (0: nothing kept between queries), got %d", c.CacheBytes)
	return v.Err()
}

// Service is a wired metrics service, ready to be mounted on servers.
type Service struct {
	deps      *service.Deps
	facts     *bus.Consumer
	rebuilder *consumer.Rebuilder
	grpc      *api.GRPC
}

// New checks cfg, reporting every bad setting at once, and then wires the
// service. It is for callers that set cfg in code (`retain dev`, tests);
// the standalone process has its settings checked by service.Main.
func New(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("metrics config: %w", err)
	}
	return wire(ctx, cfg, tel)
}

// wire connects to the bus and the database, runs the migrations, declares
// the streams and wires the consumer and the API, from a checked cfg.
func wire(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (_ *Service, err error) {
	deps, err := service.Open(ctx, cfg.Options("metrics", store.Migrations), tel)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			deps.Abort()
		}
	}()
	b, pool, log := deps.Bus, deps.Pool, deps.Log
	st := store.New(pool, store.WithCacheBytes(int64(cfg.CacheBytes)),
		store.WithMeter(tel.MeterProvider.Meter("retain/metrics")), store.WithLogger(log))
	// Tenants whose facts predate the aggregates get them before any query.
	if err := st.BuildPending(ctx); err != nil {
		return nil, err
	}
	facts, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream:      bus.EventsStream,
		Durable:     consumer.Durable,
		EventTypes:  consumer.Types(),
		BatchSize:   cfg.BatchSize,
		Concurrency: cfg.Consumers,
		// Ids must be remembered as long as the stream can redeliver or
		// replay them.
		InboxRetention: max(cfg.Streams.MaxAge, bus.DefaultMaxAge),
	}, consumer.Handler(st, log), log)
	if err != nil {
		return nil, err
	}
	rebuilder := consumer.NewRebuilder(b, st, cfg.BatchSize, facts.Config().FetchMaxBytes, log)
	return &Service{
		facts: facts, rebuilder: rebuilder,
		grpc: api.NewGRPC(st, rebuilder, cfg.Now), deps: deps,
	}, nil
}

// Verifier checks the tokens of the service's APIs.
func (s *Service) Verifier() *auth.Verifier { return s.deps.Verifier }

// Consumers are listed by the host's dead-letter API.
func (s *Service) Consumers() []*bus.Consumer { return []*bus.Consumer{s.facts} }

// MethodScopes is the scope each gRPC method of the service requires.
func (s *Service) MethodScopes() map[string]string { return api.MethodScopes }

// RegisterGRPC mounts MetricsService on srv.
func (s *Service) RegisterGRPC(srv *grpc.Server) { metricsv1.RegisterMetricsServiceServer(srv, s.grpc) }

// RegisterHTTP mounts nothing: metrics is queried over gRPC only.
func (s *Service) RegisterHTTP(*http.ServeMux) {}

// Run consumes facts and runs rebuilds (those asked for, and those a
// stopped process left half-way) until ctx is done, then drains the bus
// connection and closes the database pool. The host stops the gRPC server
// first.
func (s *Service) Run(ctx context.Context) error {
	return s.deps.Run(ctx, nil, s.facts.Run, s.rebuilder.Run)
}

// Ready reports whether the bus connection and the database are up.
func (s *Service) Ready(ctx context.Context) error { return s.deps.Ready(ctx) }

// CaughtUp reports whether the facts consumer has applied everything on the
// stream so far (nothing pending, nothing awaiting an ack). `retain dev
// --demo` and tests wait for it before reading figures.
func (s *Service) CaughtUp(ctx context.Context) (bool, error) { return s.facts.CaughtUp(ctx) }

// WaitCaughtUp polls CaughtUp until it holds or ctx is done.
func (s *Service) WaitCaughtUp(ctx context.Context) error { return s.facts.WaitCaughtUp(ctx) }

// Run is the standalone process: telemetry, the service, its gRPC and ops
// servers under one supervisor, until ctx is done. cfg is as service.Main
// parsed and checked it, so it is not checked again.
func Run(ctx context.Context, cfg Config, version string) error {
	return service.Run(ctx, cfg, version, func(ctx context.Context, tel *telemetry.Telemetry) (service.Hosted, error) {
		return wire(ctx, cfg, tel)
	})
}
