// Package churnsignal is the composition root of the churn-signal service:
// it projects facts from RETAIN_EVENTS into per-customer features, fits a
// BG/NBD purchase model per tenant, scores every customer's churn risk with
// reasons, and publishes churn.risk_changed to RETAIN_SIGNALS through a
// transactional outbox when a customer's band changes. cmd/churnsignal runs
// it alone; `retain dev` runs it beside the other services in one process.
package churnsignal

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
	churnv1 "github.com/retainhq/retain/proto/gen/go/retain/churn/v1"
	"github.com/retainhq/retain/services/churnsignal/internal/api"
	"github.com/retainhq/retain/services/churnsignal/internal/app"
	"github.com/retainhq/retain/services/churnsignal/internal/facts"
	"github.com/retainhq/retain/services/churnsignal/internal/store"
)

// databaseEnv is the variable of the service's database URL.
const databaseEnv = "RETAIN_CHURN_DATABASE_URL"

// ConsumerName is the durable consumer of facts on RETAIN_EVENTS.
const ConsumerName = "churnsignal-facts"

// Config is everything the churn-signal service needs.
type Config struct {
	service.Config

	// RescoreInterval spaces the scheduled full rescoring of every customer
	// (risk rises with silence); 0 disables the schedule.
	RescoreInterval time.Duration
	// RefitInterval is how old a tenant's model may get before a scheduled
	// pass refits it (a model pinned by Refit with as_of is left alone).
	RefitInterval time.Duration
	// RefitGrowthPercent is how much the orders or the customers under a
	// model must grow for it to be refit ahead of its age, RefitMinGap the
	// least time from a fit to such a refit.
	RefitGrowthPercent int
	RefitMinGap        time.Duration
	// MaxLag is how far behind the stream the facts consumer may be for
	// models to be refit by themselves and band changes published;
	// HoldMinBacklog how many of a shop's facts it may then have yet to
	// apply for the shop's to go ahead all the same.
	MaxLag         time.Duration
	HoldMinBacklog int
	// HorizonWeeks is the prediction horizon of the purchase model.
	HorizonWeeks int
	// BatchSize is the most facts applied in one transaction.
	BatchSize int
	// RescoreChunk is how many customers one transaction of a full pass
	// rescores, and RescoreWorkers how many such transactions run at once.
	RescoreChunk   int
	RescoreWorkers int

	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		Config:             service.DefaultConfig("churnsignal"),
		RescoreInterval:    time.Hour,
		RefitInterval:      24 * time.Hour,
		RefitGrowthPercent: app.DefaultRefitGrowthPercent,
		RefitMinGap:        app.DefaultMinRefitGap,
		MaxLag:             app.DefaultMaxLag,
		HoldMinBacklog:     app.DefaultHoldMinBacklog,
		HorizonWeeks:       13,
		BatchSize:          500,
		RescoreChunk:       2000,
		RescoreWorkers:     2,
	}
}

// RegisterFlags binds every setting to a flag and its RETAIN_* variable.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs, databaseEnv, "Postgres URL of the churn-signal database")
	config.DurationVar(fs, &c.RescoreInterval, "rescore-interval", "RETAIN_CHURN_RESCORE_INTERVAL", "how often every customer is rescored as time passes (0: never on a schedule)")
	config.DurationVar(fs, &c.RefitInterval, "refit-interval", "RETAIN_CHURN_REFIT_INTERVAL", "age at which a scheduled pass refits a tenant's purchase model")
	config.IntVar(fs, &c.RefitGrowthPercent, "refit-growth-percent", "RETAIN_CHURN_REFIT_GROWTH_PERCENT", "growth in percent of a model's orders or customers that refits it ahead of its age")
	config.DurationVar(fs, &c.RefitMinGap, "refit-min-gap", "RETAIN_CHURN_REFIT_MIN_GAP", "least time from a model's fit to a refit for growth")
	config.DurationVar(fs, &c.MaxLag, "max-lag", "RETAIN_CHURN_MAX_LAG", "how far behind the stream the facts consumer may be for models to be refit by themselves and band changes published")
	config.IntVar(fs, &c.HoldMinBacklog, "hold-min-backlog", "RETAIN_CHURN_HOLD_MIN_BACKLOG", "facts of a shop the consumer, further behind than the max lag, may have yet to apply for the shop's models to be refit and band changes published all the same (another shop's import holds no one else's)")
	config.IntVar(fs, &c.HorizonWeeks, "horizon-weeks", "RETAIN_CHURN_HORIZON_WEEKS", "prediction horizon of the purchase model, in weeks")
	config.IntVar(fs, &c.BatchSize, "batch-size", "RETAIN_CHURN_BATCH_SIZE", "most facts applied in one transaction")
	config.IntVar(fs, &c.RescoreChunk, "rescore-chunk", "RETAIN_CHURN_RESCORE_CHUNK", "customers rescored per transaction in a full pass")
	config.IntVar(fs, &c.RescoreWorkers, "rescore-workers", "RETAIN_CHURN_RESCORE_WORKERS", "transactions of a full pass run at once")
}

// Validate names every bad setting at once, each with its variable and
// flag, its value and the form wanted, as the shared settings are named.
func (c Config) Validate() error {
	var v config.Validator
	v.Add(c.Config.Validate(databaseEnv))
	v.Check(c.RescoreInterval >= 0, config.SettingName("RETAIN_CHURN_RESCORE_INTERVAL", "rescore-interval"),
		"must not be negative (0: never on a schedule), got %s", c.RescoreInterval)
	v.Check(c.RefitInterval > 0, config.SettingName("RETAIN_CHURN_REFIT_INTERVAL", "refit-interval"),
		"must be positive, such as 24h, got %s", c.RefitInterval)
	v.Check(c.RefitGrowthPercent >= 1 && c.RefitGrowthPercent <= 1000, config.SettingName("RETAIN_CHURN_REFIT_GROWTH_PERCENT", "refit-growth-percent"),
		"must be 1-1000, got %d", c.RefitGrowthPercent)
	v.Check(c.RefitMinGap >= time.Second, config.SettingName("RETAIN_CHURN_REFIT_MIN_GAP", "refit-min-gap"),
		"must be 1s or more, such as 5m, got %s", c.RefitMinGap)
	v.Check(c.MaxLag >= time.Second, config.SettingName("RETAIN_CHURN_MAX_LAG", "max-lag"),
		"must be 1s or more, such as 1m, got %s", c.MaxLag)
	v.Check(c.HoldMinBacklog >= 1, config.SettingName("RETAIN_CHURN_HOLD_MIN_BACKLOG", "hold-min-backlog"),
		"must be at least 1 (facts of a shop the consumer may have yet to apply), got %d", c.HoldMinBacklog)
	v.Check(c.HorizonWeeks >= 1 && c.HorizonWeeks <= 520, config.SettingName("RETAIN_CHURN_HORIZON_WEEKS", "horizon-weeks"),
		"must be 1-520, got %d", c.HorizonWeeks)
	v.Check(c.BatchSize >= 1 && c.BatchSize <= 10000, config.SettingName("RETAIN_CHURN_BATCH_SIZE", "batch-size"),
		"must be 1-10000, got %d", c.BatchSize)
	v.Check(c.RescoreChunk >= 1 && c.RescoreChunk <= 100000, config.SettingName("RETAIN_CHURN_RESCORE_CHUNK", "rescore-chunk"),
		"must be 1-100000, got %d", c.RescoreChunk)
	v.Check(c.RescoreWorkers >= 1 && c.RescoreWorkers <= 64, config.SettingName("RETAIN_CHURN_RESCORE_WORKERS", "rescore-workers"),
		"must be 1-64, got %d", c.RescoreWorkers)
	return v.Err()
}

// Service is a wired churn-signal service, ready to be mounted on servers.
type Service struct {
	deps     *service.Deps
	consumer *bus.Consumer
	relay    *bus.Relay
	engine   *app.Engine
	grpc     *api.GRPC
}

// New checks cfg, reporting every bad setting at once, and then wires the
// service. It is for callers that set cfg in code (`retain dev`, tests);
// the standalone process has its settings checked by service.Main.
func New(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("churnsignal config: %w", err)
	}
	return wire(ctx, cfg, tel)
}

// wire connects to the bus and the database, runs the migrations, declares
// the streams and wires the use cases, from a checked cfg.
func wire(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (_ *Service, err error) {
	deps, err := service.Open(ctx, cfg.Options("churnsignal", store.Migrations), tel)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			deps.Abort()
		}
	}()
	b, pool, log := deps.Bus, deps.Pool, deps.Log
	// The engine asks the consumer, made below on its handler, whether it
	// has caught up (its start-up pass); Run starts once both are made.
	var consumer *bus.Consumer
	engine, err := app.New(pool, app.Config{
		HorizonWeeks:       float64(cfg.HorizonWeeks),
		ChunkSize:          cfg.RescoreChunk,
		Workers:            cfg.RescoreWorkers,
		RescoreInterval:    cfg.RescoreInterval,
		RefitInterval:      cfg.RefitInterval,
		RefitGrowthPercent: cfg.RefitGrowthPercent,
		MinRefitGap:        cfg.RefitMinGap,
		MaxLag:             cfg.MaxLag,
		HoldMinBacklog:     int64(cfg.HoldMinBacklog),
		CaughtUp:           func(ctx context.Context) (bool, error) { return consumer.CaughtUp(ctx) },
		// The server's count, whichever replica applies the facts.
		TenantBacklog: func(ctx context.Context, tenant string) (int64, error) {
			return consumer.TenantBacklog(ctx, tenant)
		},
		Now:   cfg.Now,
		Meter: tel.MeterProvider.Meter("retain/churnsignal"),
	}, log)
	if err != nil {
		return nil, err
	}
	consumer, err = bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream:     bus.EventsStream,
		Durable:    ConsumerName,
		EventTypes: facts.EventTypes,
		BatchSize:  cfg.BatchSize,
		// Redeliveries and replays within the stream's life are recognised;
		// beyond it the projection's natural keys make a repeat harmless.
		InboxRetention: cfg.Streams.MaxAge,
	}, engine.Handle, log)
	if err != nil {
		return nil, err
	}
	relay, err := bus.NewRelay(b, pool, bus.RelayConfig{}, log)
	if err != nil {
		return nil, err
	}
	return &Service{
		consumer: consumer, relay: relay, engine: engine,
		grpc: api.NewGRPC(engine, cfg.Now), deps: deps,
	}, nil
}

// WaitCaughtUp waits until the facts consumer has applied (and rescored)
// everything on the stream so far, or ctx is done.
func (s *Service) WaitCaughtUp(ctx context.Context) error { return s.consumer.WaitCaughtUp(ctx) }

// MethodScopes is the scope each gRPC method of the service requires.
func (s *Service) MethodScopes() map[string]string { return api.MethodScopes }

// RegisterGRPC mounts ChurnService on srv.
func (s *Service) RegisterGRPC(srv *grpc.Server) { churnv1.RegisterChurnServiceServer(srv, s.grpc) }

// RegisterHTTP does nothing: churn-signal has no public HTTP API.
func (s *Service) RegisterHTTP(*http.ServeMux) {}

// Verifier is the token verifier built from the config (for hosts).
func (s *Service) Verifier() *auth.Verifier { return s.deps.Verifier }

// Consumers are listed by the host's dead-letter API.
func (s *Service) Consumers() []*bus.Consumer { return []*bus.Consumer{s.consumer} }

// RescoreAll rescores every customer of tenant as of now, on demand.
func (s *Service) RescoreAll(ctx context.Context, tenant string) (app.Stats, error) {
	return s.engine.RescoreAll(ctx, tenant)
}

// Run runs the facts consumer, the outbox relay and the rescoring schedule
// until ctx is done, then drains the bus connection.
func (s *Service) Run(ctx context.Context) error {
	return s.deps.Run(ctx, s.engine.Close, s.consumer.Run, s.relay.Run, s.engine.Run)
}

// Ready reports whether the bus connection and the database are up.
func (s *Service) Ready(ctx context.Context) error { return s.deps.Ready(ctx) }

// Run is the standalone process: telemetry, the service, its gRPC and ops
// servers under one supervisor, until ctx is done. cfg is as service.Main
// parsed and checked it, so it is not checked again.
func Run(ctx context.Context, cfg Config, version string) error {
	return service.Run(ctx, cfg, version, func(ctx context.Context, tel *telemetry.Telemetry) (service.Hosted, error) {
		return wire(ctx, cfg, tel)
	})
}
