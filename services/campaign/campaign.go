// Package campaign is the composition root of the campaign service: it
// keeps the per-customer facts its campaigns test (from RETAIN_EVENTS and
// churn.risk_changed on RETAIN_SIGNALS), enrolls customers under each
// campaign's entry policy with a persisted holdout group, runs their steps
// from durable timers, publishes notification.requested through a
// transactional outbox, and reports lift from goals and delivery outcomes
// (RETAIN_DELIVERIES). cmd/campaign runs it alone; `retain dev` runs it
// beside the other services in one process.
package campaign

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
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/telemetry"
	campaignv1 "github.com/retainhq/retain/proto/gen/go/retain/campaign/v1"
	"github.com/retainhq/retain/services/campaign/internal/api"
	"github.com/retainhq/retain/services/campaign/internal/app"
	"github.com/retainhq/retain/services/campaign/internal/store"
	"github.com/retainhq/retain/services/campaign/internal/templates"
)

// databaseEnv is the variable of the service's database URL.
const databaseEnv = "RETAIN_CAMPAIGN_DATABASE_URL"

// Durable consumer names.
const (
	FactsConsumer      = "campaign-facts"
	SignalsConsumer    = "campaign-signals"
	DeliveriesConsumer = "campaign-deliveries"
)

// Config is everything the campaign service needs.
type Config struct {
	service.Config

	// BatchSize is the most events applied in one transaction, and
	// Workers the facts consumer's concurrent batches: a batch spends most
	// of its time in Postgres, so several keep the database's cores busy
	// (1.7x the events/s of one worker at 4 on two cores).
	BatchSize int
	Workers   int
	// FactsExclusive runs the facts consumer on one replica at a time (the
	// holder of its lease; the others stand by): with Workers sequenced
	// per customer, each customer's events are then applied in stream
	// order across the deployment. Off, every replica runs it: more
	// events/s where Postgres has room, and a customer's events applied
	// by two replicas at once may land out of order (as late events).
	FactsExclusive bool
	// TimerInterval spaces the scheduler's passes over due timers;
	// TimerBatch is how many enrollments one pass transaction fires.
	TimerInterval time.Duration
	TimerBatch    int
	// AudienceInterval spaces checks for scheduled audiences due;
	// AudienceMaxBacklog is how many of a shop's events the facts
	// consumer may have yet to apply for the shop's audiences to run.
	AudienceInterval   time.Duration
	AudienceMaxBacklog int
	// MaxTriggerAge: older events update facts and goals but enroll nobody.
	MaxTriggerAge time.Duration
	// NotifierAddr is the notifier's gRPC address (host:port). With it,
	// a campaign whose send steps name a template the notifier does not
	// have is refused when saved; empty: no such check.
	NotifierAddr string
	// NotifierTLS is how the notifier is reached: over TLS when its
	// Enabled or CAFile is set (the caller's token goes with each lookup).
	NotifierTLS server.ClientTLS

	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	return Config{
		Config:             service.DefaultConfig("campaign"),
		BatchSize:          500,
		Workers:            4,
		FactsExclusive:     true,
		TimerInterval:      time.Second,
		TimerBatch:         500,
		AudienceInterval:   time.Minute,
		AudienceMaxBacklog: app.DefaultAudienceMaxBacklog,
		MaxTriggerAge:      7 * 24 * time.Hour,
	}
}

// RegisterFlags binds every setting to a flag and its RETAIN_* variable.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs, databaseEnv, "Postgres URL of the campaign database")
	config.IntVar(fs, &c.BatchSize, "batch-size", "RETAIN_CAMPAIGN_BATCH_SIZE", "most events applied in one transaction")
	config.IntVar(fs, &c.Workers, "workers", "RETAIN_CAMPAIGN_WORKERS", "concurrent batches of the facts consumer")
	config.BoolVar(fs, &c.FactsExclusive, "facts-exclusive", "RETAIN_CAMPAIGN_FACTS_EXCLUSIVE", "run the facts consumer on one replica at a time, so each customer's events apply in stream order")
	config.DurationVar(fs, &c.TimerInterval, "timer-interval", "RETAIN_CAMPAIGN_TIMER_INTERVAL", "how often due step timers are fired")
	config.IntVar(fs, &c.TimerBatch, "timer-batch", "RETAIN_CAMPAIGN_TIMER_BATCH", "enrollments advanced per timer transaction")
	config.DurationVar(fs, &c.AudienceInterval, "audience-interval", "RETAIN_CAMPAIGN_AUDIENCE_INTERVAL", "how often scheduled audiences are checked for being due (0: never)")
	config.IntVar(fs, &c.AudienceMaxBacklog, "audience-max-backlog", "RETAIN_CAMPAIGN_AUDIENCE_MAX_BACKLOG", "events of a shop the facts consumer may have yet to apply for the shop's scheduled audiences to run (its history import holds them; another shop's does not)")
	config.DurationVar(fs, &c.MaxTriggerAge, "max-trigger-age", "RETAIN_CAMPAIGN_MAX_TRIGGER_AGE", "events older than this enroll nobody (imports of history); 0: no limit")
	config.StringVar(fs, &c.NotifierAddr, "notifier-addr", "RETAIN_CAMPAIGN_NOTIFIER_ADDR", "the notifier's gRPC address, to refuse campaigns that send templates it lacks (empty: not checked)")
	config.BoolVar(fs, &c.NotifierTLS.Enabled, "notifier-tls", "RETAIN_CAMPAIGN_NOTIFIER_TLS", "reach the notifier over TLS, verifying it with the system's roots (-notifier-tls-ca implies it)")
	config.StringVar(fs, &c.NotifierTLS.CAFile, "notifier-tls-ca", "RETAIN_CAMPAIGN_NOTIFIER_TLS_CA", "CA certificate(s) (PEM file) verifying the notifier instead of the system's roots; implies -notifier-tls")
}

// Validate names every bad setting at once, each with its variable and
// flag, its value and the form wanted, as the shared settings are named.
func (c Config) Validate() error {
	var v config.Validator
	v.Add(c.Config.Validate(databaseEnv))
	v.Check(c.BatchSize >= 1 && c.BatchSize <= 10000, config.SettingName("RETAIN_CAMPAIGN_BATCH_SIZE", "batch-size"),
		"must be 1-10000, got %d", c.BatchSize)
	v.Check(c.Workers >= 1 && c.Workers <= 64, config.SettingName("RETAIN_CAMPAIGN_WORKERS", "workers"),
		"must be 1-64, got %d", c.Workers)
	v.Check(c.TimerInterval >= 0, config.SettingName("RETAIN_CAMPAIGN_TIMER_INTERVAL", "timer-interval"),
		"must not be negative (0 disables the scheduler), got %s", c.TimerInterval)
	v.Check(c.TimerBatch >= 1 && c.TimerBatch <= 10000, config.SettingName("RETAIN_CAMPAIGN_TIMER_BATCH", "timer-batch"),
		"must be 1-10000, got %d", c.TimerBatch)
	v.Check(c.AudienceInterval >= 0, config.SettingName("RETAIN_CAMPAIGN_AUDIENCE_INTERVAL", "audience-interval"),
		"must not be negative (0: never), got %s", c.AudienceInterval)
	v.Check(c.AudienceMaxBacklog >= 1, config.SettingName("RETAIN_CAMPAIGN_AUDIENCE_MAX_BACKLOG", "audience-max-backlog"),
		"must be at least 1 (events of a shop the facts consumer may have yet to apply), got %d", c.AudienceMaxBacklog)
	v.Check(c.MaxTriggerAge >= 0, config.SettingName("RETAIN_CAMPAIGN_MAX_TRIGGER_AGE", "max-trigger-age"),
		"must not be negative (0: no limit), got %s", c.MaxTriggerAge)
	if c.NotifierAddr != "" {
		port, err := config.AddrPort(c.NotifierAddr)
		if err == nil && (port < 1 || port > 65535) {
			err = fmt.Errorf("want a port of 1-65535 in host:port, got %q", c.NotifierAddr)
		}
		if err != nil {
			v.Addf(config.SettingName("RETAIN_CAMPAIGN_NOTIFIER_ADDR", "notifier-addr"), "%v", err)
		}
	}
	notifierTLS := config.SettingName("RETAIN_CAMPAIGN_NOTIFIER_TLS", "notifier-tls")
	if c.NotifierTLS.CAFile != "" {
		notifierTLS = config.SettingName("RETAIN_CAMPAIGN_NOTIFIER_TLS_CA", "notifier-tls-ca")
		if _, err := c.NotifierTLS.TransportCredentials(); err != nil {
			v.Addf(notifierTLS, "%v", err)
		}
	}
	v.Check(c.NotifierAddr != "" || !c.NotifierTLS.On(), notifierTLS,
		"set without %s: there is no notifier to reach", config.SettingName("RETAIN_CAMPAIGN_NOTIFIER_ADDR", "notifier-addr"))
	return v.Err()
}

// Service is a wired campaign service, ready to be mounted on servers.
type Service struct {
	deps       *service.Deps
	facts      *bus.Consumer
	signals    *bus.Consumer
	deliveries *bus.Consumer
	relay      *bus.Relay
	engine     *app.Engine
	grpc       *api.GRPC
	// notifier are the clients SetNotifierAddr opened, closed on exit.
	notifier []*templates.Notifier
}

// New checks cfg, reporting every bad setting at once, and then wires the
// service. It is for callers that set cfg in code (`retain dev`, tests);
// the standalone process has its settings checked by service.Main.
func New(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("campaign config: %w", err)
	}
	return wire(ctx, cfg, tel)
}

// wire connects to the bus and the database, runs the migrations, declares
// the streams and wires the use cases, from a checked cfg.
func wire(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (_ *Service, err error) {
	opts := cfg.Options("campaign", store.Migrations)
	// The facts workers and their lease's session, the signals and
	// deliveries consumers, the relay, the scheduler, a statistics refresh
	// and the API.
	opts.PoolConns = cfg.Workers + 7
	deps, err := service.Open(ctx, opts, tel)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			deps.Abort()
		}
	}()
	b, pool, log := deps.Bus, deps.Pool, deps.Log
	var s *Service
	engine := app.New(pool, app.Config{
		MaxTriggerAge: cfg.MaxTriggerAge, TimerInterval: cfg.TimerInterval, TimerBatch: cfg.TimerBatch,
		AudienceInterval: cfg.AudienceInterval, AudienceMaxBacklog: int64(cfg.AudienceMaxBacklog),
		SharedFacts: !cfg.FactsExclusive, Now: cfg.Now,
		// Read on any replica, whichever runs the consumer: its backlog is
		// the server's.
		FactsBacklog: func(ctx context.Context) (int64, error) { return s.facts.Backlog(ctx) },
		TenantFactsBacklog: func(ctx context.Context, tenant string) (int64, error) {
			return s.facts.TenantBacklog(ctx, tenant)
		},
	}, log)
	// Inbox ids are kept as long as the streams keep messages, so a replay
	// within that time is recognised; beyond it the enrollments' unique
	// keys still make a repeat harmless.
	retention := max(cfg.Streams.MaxAge, bus.DefaultMaxAge)
	s = &Service{deps: deps, engine: engine, grpc: api.NewGRPC(engine)}
	if cfg.NotifierAddr != "" {
		if err := s.setNotifier(cfg.NotifierAddr, cfg.NotifierTLS); err != nil {
			return nil, err
		}
	}
	if s.facts, err = bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream: bus.EventsStream, Durable: FactsConsumer, EventTypes: app.FactTypes,
		BatchSize: cfg.BatchSize, Concurrency: cfg.Workers, InboxRetention: retention, Exclusive: cfg.FactsExclusive,
	}, engine.HandleFacts, log); err != nil {
		return nil, err
	}
	if s.signals, err = bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream: bus.SignalsStream, Durable: SignalsConsumer,
		FilterSubjects: []string{bus.SignalsSubjectPrefix + ".*.churn.risk_changed"},
		BatchSize:      cfg.BatchSize, InboxRetention: retention,
	}, engine.HandleSignals, log); err != nil {
		return nil, err
	}
	if s.deliveries, err = bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream: bus.DeliveriesStream, Durable: DeliveriesConsumer,
		FilterSubjects: []string{bus.DeliveriesSubjectPrefix + ".*.notification.>"},
		BatchSize:      cfg.BatchSize, InboxRetention: retention,
	}, engine.HandleDeliveries, log); err != nil {
		return nil, err
	}
	if s.relay, err = bus.NewRelay(b, pool, bus.RelayConfig{}, log); err != nil {
		return nil, err
	}
	return s, nil
}

// SetNotifierAddr checks the templates of the campaigns saved from now on
// against the notifier at addr, in plaintext: `retain dev` knows its own
// address only once it listens, and its calls stay in the process's
// loopback.
func (s *Service) SetNotifierAddr(addr string) error {
	return s.setNotifier(addr, server.ClientTLS{})
}

func (s *Service) setNotifier(addr string, tls server.ClientTLS) error {
	n, err := templates.Dial(addr, tls)
	if err != nil {
		return err
	}
	s.engine.SetTemplates(n)
	s.notifier = append(s.notifier, n)
	return nil
}

// WaitCaughtUp waits until the three consumers have applied everything on
// their streams so far, or ctx is done.
func (s *Service) WaitCaughtUp(ctx context.Context) error {
	for _, c := range []*bus.Consumer{s.facts, s.signals, s.deliveries} {
		if err := c.WaitCaughtUp(ctx); err != nil {
			return err
		}
	}
	return nil
}

// WaitRelayed waits until every message the service committed so far
// (its notification requests) has been published, or ctx is done.
func (s *Service) WaitRelayed(ctx context.Context) error { return s.relay.WaitRelayed(ctx) }

// FireDue fires every due timer now (tests and benchmarks; Run does it on
// its own every TimerInterval).
func (s *Service) FireDue(ctx context.Context) (int, error) { return s.engine.FireDue(ctx) }

// RunAudiences evaluates the scheduled audiences that are due now.
func (s *Service) RunAudiences(ctx context.Context) (int, error) { return s.engine.RunAudiences(ctx) }

// MethodScopes is the scope each gRPC method of the service requires.
func (s *Service) MethodScopes() map[string]string { return api.MethodScopes }

// RegisterGRPC mounts CampaignService on srv.
func (s *Service) RegisterGRPC(srv *grpc.Server) {
	campaignv1.RegisterCampaignServiceServer(srv, s.grpc)
}

// RegisterHTTP does nothing: the campaign service has no public HTTP API.
func (s *Service) RegisterHTTP(*http.ServeMux) {}

// Verifier is the token verifier built from the config (for hosts).
func (s *Service) Verifier() *auth.Verifier { return s.deps.Verifier }

// Consumers are listed by the host's dead-letter API.
func (s *Service) Consumers() []*bus.Consumer {
	return []*bus.Consumer{s.facts, s.signals, s.deliveries}
}

// Run runs the consumers, the outbox relay and the scheduler until ctx is
// done, then drains the bus connection.
func (s *Service) Run(ctx context.Context) error {
	return s.deps.Run(ctx, s.close, s.facts.Run, s.signals.Run, s.deliveries.Run, s.relay.Run, s.engine.Run)
}

// close runs after the consumers and the scheduler have stopped.
func (s *Service) close() {
	s.engine.Close()
	for _, n := range s.notifier {
		_ = n.Close()
	}
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
