// Package ingest is the composition root of the ingest service: the front
// door through which shops publish facts to RETAIN_EVENTS. cmd/ingest runs it
// alone; `retain dev` runs it beside the other services in one process.
package ingest

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/telemetry"
	ingestv1 "github.com/retainhq/retain/proto/gen/go/retain/ingest/v1"
	"github.com/retainhq/retain/services/ingest/internal/api"
	"github.com/retainhq/retain/services/ingest/internal/app"
	"github.com/retainhq/retain/services/ingest/internal/commit"
	"github.com/retainhq/retain/services/ingest/internal/store"
)

// databaseEnv is the variable of the service's database URL.
const databaseEnv = "RETAIN_INGEST_DATABASE_URL"

// Config is everything the ingest service needs. Zero values are replaced by
// DefaultConfig's by RegisterFlags.
type Config struct {
	service.Config

	// MaxBatch is the most events in one atomic batch on the bus.
	MaxBatch int
	// Linger is how long a request waits for others to share its batch.
	Linger time.Duration
	// Publishers is how many batches may be in flight at once.
	Publishers int
	// QueueDepth is how many requests may wait for the bus before ingest
	// answers 429.
	QueueDepth int

	// LogRetention is how long the ingest log remembers event ids, so that a
	// retry is reported as a duplicate; keep it at the stream's max age.
	LogRetention time.Duration

	// MaxEventBytes is the largest event taken, as stored on the bus (the
	// encoded event and its headers). A NATS server that takes less in one
	// message (its max_payload) lowers it.
	MaxEventBytes int
}

// DefaultMaxEventBytes is half of NATS's default max_payload (1 MiB): far
// above any event a shop sends (a 1000-line order with 100-byte names is
// about 150 KiB), well within what the server takes, and the consumers,
// which fetch up to 500 events at once, hold at most 256 MiB of them.
const DefaultMaxEventBytes = 512 << 10

// maxEventBytesCeiling is nats-server's hard limit on max_payload.
const maxEventBytesCeiling = 64 << 20

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	cc := commit.DefaultConfig()
	base := service.DefaultConfig("ingest")
	base.Addrs.HTTP = ":8080" // ingest is the one service with a public HTTP API
	return Config{
		Config:     base,
		MaxBatch:   cc.MaxBatch,
		Linger:     cc.Linger,
		Publishers: cc.Publishers,
		QueueDepth: cc.QueueDepth,
		// As long as RETAIN_EVENTS keeps events: a retry of an event still
		// on the stream is reported as a duplicate.
		LogRetention:  bus.DefaultMaxAge,
		MaxEventBytes: DefaultMaxEventBytes,
	}
}

// RegisterFlags binds every setting to a flag and its RETAIN_* variable.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs, databaseEnv, "Postgres URL of the ingest database (the ingest log)")
	config.IntVar(fs, &c.MaxBatch, "max-batch", "RETAIN_INGEST_MAX_BATCH", "most events in one atomic batch on the bus")
	config.DurationVar(fs, &c.Linger, "linger", "RETAIN_INGEST_LINGER", "how long a request waits to share a batch (group commit)")
	config.IntVar(fs, &c.Publishers, "publishers", "RETAIN_INGEST_PUBLISHERS", "batches in flight at once")
	config.IntVar(fs, &c.QueueDepth, "queue-depth", "RETAIN_INGEST_QUEUE_DEPTH", "requests waiting for the bus before answering 429")
	config.DurationVar(fs, &c.LogRetention, "log-retention", "RETAIN_INGEST_LOG_RETENTION", "how long event ids are remembered to report retries as duplicates")
	config.IntVar(fs, &c.MaxEventBytes, "max-event-bytes", "RETAIN_INGEST_MAX_EVENT_BYTES", "largest event taken, in bytes as stored on the bus (lowered to the NATS server's max_payload)")
}

// Validate names every bad setting at once, each with its variable and
// flag, its value and the form wanted, as the shared settings are named.
func (c Config) Validate() error {
	var v config.Validator
	v.Add(c.Config.Validate(databaseEnv))
	v.Add(c.commitConfig().Validate())
	v.Check(c.LogRetention > 0, config.SettingName("RETAIN_INGEST_LOG_RETENTION", "log-retention"),
		"must be positive, such as 720h (the streams' max age), got %s", c.LogRetention)
	v.Check(c.MaxEventBytes >= 1024 && c.MaxEventBytes <= maxEventBytesCeiling, config.SettingName("RETAIN_INGEST_MAX_EVENT_BYTES", "max-event-bytes"),
		"must be %d-%d bytes (NATS takes at most 64 MiB in one message), such as %d, got %d", 1024, maxEventBytesCeiling, DefaultMaxEventBytes, c.MaxEventBytes)
	return v.Err()
}

func (c Config) commitConfig() commit.Config {
	cc := commit.DefaultConfig()
	cc.MaxBatch, cc.Linger, cc.Publishers, cc.QueueDepth = c.MaxBatch, c.Linger, c.Publishers, c.QueueDepth
	return cc
}

// Service is a wired ingest service, ready to be mounted on servers.
type Service struct {
	deps      *service.Deps
	committer *commit.Committer
	ingestLog *store.Log
	logWriter *bus.Consumer
	retention time.Duration
	grpc      *api.GRPC
	http      *api.HTTP
}

// New checks cfg, reporting every bad setting at once, and then wires the
// service. It is for callers that set cfg in code (`retain dev`, tests);
// the standalone process has its settings checked by service.Main.
func New(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ingest config: %w", err)
	}
	return wire(ctx, cfg, tel)
}

// wire connects to the bus and the database, runs the migrations, declares
// the streams and wires the use case, from a checked cfg.
func wire(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (_ *Service, err error) {
	deps, err := service.Open(ctx, cfg.Options("ingest", store.Migrations), tel)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			deps.Abort()
		}
	}()
	b, pool, log := deps.Bus, deps.Pool, deps.Log
	ingestLog := store.NewLog(pool)
	logWriter, err := bus.NewConsumer(b, pool, bus.ConsumerConfig{
		Stream:    bus.EventsStream,
		Durable:   "ingest-log",
		BatchSize: 500,
		// The ingest log itself is the long memory; the inbox only has to
		// outlive redeliveries.
		InboxRetention: 24 * time.Hour,
	}, ingestLog.Record, log)
	if err != nil {
		return nil, err
	}
	committer, err := commit.New(cfg.commitConfig(), b, ingestLog, &commit.StreamOriginals{Bus: b, Stream: bus.EventsStream}, log)
	if err != nil {
		return nil, err
	}
	if mp := b.NC.MaxPayload(); mp > 0 && mp < int64(cfg.MaxEventBytes) {
		log.Warn("events are limited to the NATS server's max_payload, below RETAIN_INGEST_MAX_EVENT_BYTES",
			"max_payload", mp, "max_event_bytes", cfg.MaxEventBytes)
	}
	maxEvent := func() int { return eventLimit(cfg.MaxEventBytes, b.NC.MaxPayload()) }
	in, err := app.New(committer, maxEvent, tel.MeterProvider.Meter("retain/ingest"))
	if err != nil {
		return nil, err
	}
	storageFull := api.NewStorageFullLog(log)
	return &Service{
		committer: committer, ingestLog: ingestLog, logWriter: logWriter, retention: cfg.LogRetention,
		grpc: api.NewGRPC(in, storageFull), http: api.NewHTTP(in, log, storageFull), deps: deps,
	}, nil
}

// eventLimit is the largest event taken: the setting, or the NATS server's
// max_payload when that is less. The server says its max_payload when the
// connection is made (and again on a reconnect, to another server
// perhaps); it holds a message's headers and data against it.
func eventLimit(setting int, maxPayload int64) int {
	if maxPayload > 0 && maxPayload < int64(setting) {
		return int(maxPayload)
	}
	return setting
}

// Verifier checks the tokens of the service's APIs.
func (s *Service) Verifier() *auth.Verifier { return s.deps.Verifier }

// Consumers are listed by the host's dead-letter API.
func (s *Service) Consumers() []*bus.Consumer { return []*bus.Consumer{s.logWriter} }

// MethodScopes is the scope each gRPC method of the service requires.
func (s *Service) MethodScopes() map[string]string { return api.MethodScopes }

// OwnUnknownFields are the request fields whose unknown fields ingest
// checks per event, not the gRPC server for the whole request.
func (s *Service) OwnUnknownFields() []protoreflect.FullName { return api.OwnUnknownFields }

// RegisterGRPC mounts IngestService on srv.
func (s *Service) RegisterGRPC(srv *grpc.Server) { ingestv1.RegisterIngestServiceServer(srv, s.grpc) }

// RegisterHTTP mounts the public HTTP API on mux.
func (s *Service) RegisterHTTP(mux *http.ServeMux) { s.http.Register(mux, s.deps.Verifier) }

// Run runs the group commit, the watch on its ingest log look-ups, the
// ingest log writer and its pruning until ctx is done, then drains the
// commit queue and the bus connection. The host stops the servers first so
// no request arrives after the drain.
func (s *Service) Run(ctx context.Context) error {
	return s.deps.Run(ctx, nil, s.committer.Run, s.committer.WatchLog, s.logWriter.Run, func(ctx context.Context) error { s.pruneLog(ctx); return nil })
}

// pruneLog forgets ids older than the retention, hourly.
func (s *Service) pruneLog(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		for {
			n, err := s.ingestLog.Prune(ctx, time.Now().Add(-s.retention), 10000)
			if err != nil {
				if ctx.Err() == nil {
					s.deps.Log.Warn("prune ingest log", "err", err)
				}
				break
			}
			if n < 10000 {
				break
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// Ready reports whether ingest can take events: whether the bus connection
// is up and the ingest log's look-ups are not refusing every batch. A
// database that cannot be reached at all leaves ingest ready, as it accepts
// events then (decision 0024); one that does not answer in time (hung,
// overloaded) makes it refuse them all, and not ready until the committer's
// probe gets an answer (decision 0051).
func (s *Service) Ready(context.Context) error {
	if err := s.deps.BusReady(); err != nil {
		return err
	}
	return s.committer.LogReady()
}

// Run is the standalone process: telemetry, the service, its gRPC, HTTP and
// ops servers under one supervisor, until ctx is done. cfg is as
// service.Main parsed and checked it, so it is not checked again.
func Run(ctx context.Context, cfg Config, version string) error {
	return service.Run(ctx, cfg, version, func(ctx context.Context, tel *telemetry.Telemetry) (service.Hosted, error) {
		return wire(ctx, cfg, tel)
	})
}
