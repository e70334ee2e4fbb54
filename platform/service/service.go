// Package service opens what every Retain service needs before its own
// wiring: the token verifier, its database (migrated), and the bus with the
// streams declared. Each service's composition root calls Open first and
// Close last, so start-up order, error messages and clean-up on a failed
// start are the same everywhere.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/telemetry"
)

// Options say what to open.
type Options struct {
	// Name of the service ("ingest"): the log attribute and error prefix,
	// and what tells the stream it publishes on, the one stream it
	// updates (bus.Publisher; decision 0045).
	Name string
	// AuthPublicKey verifies API tokens: one or more Ed25519 public keys
	// (auth.ParsePublicKeys).
	AuthPublicKey string
	// AuthRevokedFile, when set, lists revoked token ids; Run re-reads it
	// every AuthRevokedInterval (default auth.DefaultRevocationInterval)
	// when it changed.
	AuthRevokedFile     string
	AuthRevokedInterval time.Duration
	// DatabaseURL is the service's own database.
	DatabaseURL string
	// DatabaseEnv names the setting of DatabaseURL in errors (optional).
	DatabaseEnv string
	// Migrations of the service's own tables; the bus tables (inbox, dead
	// letters, outbox) are always migrated first.
	Migrations []pg.MigrationSet
	// PoolConns is how many transactions the service may hold at once
	// (consumer workers, relay, scheduler, API): the pool opens that many
	// connections at least, unless the URL's pool_max_conns says otherwise.
	PoolConns int
	NATS      bus.Config
	Streams   bus.StreamOptions
}

// Deps are the opened dependencies.
type Deps struct {
	Log      *slog.Logger
	Verifier *auth.Verifier
	Pool     *pgxpool.Pool
	Bus      *bus.Bus

	// revocations, when configured, are watched while Run runs.
	revocations   *auth.Revocations
	revokeRefresh time.Duration
}

// Open verifies the key, connects to and migrates the database, connects to
// NATS and declares the streams (bus.EnsureStreamsAs). On error nothing
// stays open.
func Open(ctx context.Context, o Options, tel *telemetry.Telemetry) (_ *Deps, err error) {
	log := tel.Logger.With("service", o.Name)
	verifier, revocations, err := openVerifier(o, log)
	if err != nil {
		return nil, err
	}
	db := o.Name + " database"
	if o.DatabaseEnv != "" {
		db += " (" + o.DatabaseEnv + ")"
	}
	host, _ := os.Hostname() // the pod's name in Kubernetes
	pool, err := pg.Connect(ctx, o.DatabaseURL, o.PoolConns, sessionName(o.Name, host))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", db, err)
	}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	sets := append([]pg.MigrationSet{bus.Migrations}, o.Migrations...)
	if err := pg.Migrate(ctx, pool, log, sets...); err != nil {
		return nil, fmt.Errorf("%s: %w", db, err)
	}
	b, err := bus.Connect(ctx, o.NATS, log, bus.WithTracerProvider(tel.TracerProvider), bus.WithMeterProvider(tel.MeterProvider))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if err := b.EnsureStreamsAs(ctx, o.Name, bus.DefaultStreams(o.Streams)...); err != nil {
		return nil, fmt.Errorf("declare streams: %w", err)
	}
	return &Deps{Log: log, Verifier: verifier, Pool: pool, Bus: b, revocations: revocations, revokeRefresh: o.AuthRevokedInterval}, nil
}

// openVerifier builds the token verifier: every configured key, and the
// revocation list when one is configured. It logs the key ids, so that an
// operator rotating the key can see which keys each replica accepts.
func openVerifier(o Options, log *slog.Logger) (*auth.Verifier, *auth.Revocations, error) {
	var opts []auth.VerifierOption
	var revocations *auth.Revocations
	if o.AuthRevokedFile != "" {
		var err error
		if revocations, err = auth.LoadRevocations(o.AuthRevokedFile); err != nil {
			return nil, nil, fmt.Errorf("auth revoked tokens (RETAIN_AUTH_REVOKED_FILE): %w", err)
		}
		opts = append(opts, auth.WithRevocations(revocations))
	}
	verifier, err := auth.NewVerifierFromString(o.AuthPublicKey, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("auth public key (RETAIN_AUTH_PUBLIC_KEY): %w", err)
	}
	attrs := []any{"key_ids", verifier.KeyIDs()}
	if revocations != nil {
		attrs = append(attrs, "revoked_file", revocations.Path(), "revoked", revocations.Len())
	}
	log.Info("verifying API tokens", attrs...)
	return verifier, revocations, nil
}

// Abort closes everything at once, for a start-up that failed after Open.
func (d *Deps) Abort() {
	d.Bus.Close()
	d.Pool.Close()
}

// Close drains the NATS connection (pending publishes and acks, bounded) and
// then closes the database pool. Call it after the service's consumers and
// relays have stopped.
func (d *Deps) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.Bus.Drain(ctx)
	d.Pool.Close()
	if err != nil {
		return fmt.Errorf("drain NATS connection: %w", err)
	}
	return nil
}

// Run is a service's whole background life: it runs every one of runs
// (consumers, relays, schedulers) until ctx is done or one of them fails,
// which stops the others, and meanwhile re-reads the revoked-token file
// when it changes; then stop, when not nil (work the runs leave
// behind, e.g. a statistics refresh or pooled connections), and Close. It
// returns the first error.
func (d *Deps) Run(ctx context.Context, stop func(), runs ...func(context.Context) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, run := range runs {
		g.Go(func() error { return run(gctx) })
	}
	if d.revocations != nil {
		// Watched for as long as the runs run, not in the group: it never
		// fails (a bad file keeps the last good list), and must not keep
		// Run going once the runs have ended on their own.
		wctx, stopWatch := context.WithCancel(gctx)
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			d.revocations.Watch(wctx, d.revokeRefresh, d.Log)
		}()
		defer func() { stopWatch(); <-watched }()
	}
	err := g.Wait()
	if stop != nil {
		stop()
	}
	if cerr := d.Close(); cerr != nil && err == nil {
		err = cerr
	}
	return err
}

// BusReady reports whether the NATS connection is up; when it is not, it
// names the servers it tries (without credentials).
func (d *Deps) BusReady() error {
	if !d.Bus.NC.IsConnected() {
		return fmt.Errorf("not connected to NATS at %s (RETAIN_NATS_URL)", strings.Join(d.Bus.NC.Servers(), ","))
	}
	return nil
}

// DatabaseReady reports whether the database answers. A refused
// connection's error names the database and its host; a server that does
// not answer at all (hung, or behind a network that drops packets) only
// runs the check out of time, so that error is given them.
func (d *Deps) DatabaseReady(ctx context.Context) error {
	start := time.Now()
	if err := d.Pool.Ping(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("database %s did not answer within %s: %w", pg.Target(d.Pool), time.Since(start).Round(time.Millisecond), err)
		}
		return fmt.Errorf("database: %w", err)
	}
	return nil
}

// Ready is the readiness of a service that needs both the bus and its
// database to do its work (every consumer; ingest has its own, decision
// 0051: it takes events while its database refuses connections).
func (d *Deps) Ready(ctx context.Context) error {
	if err := d.BusReady(); err != nil {
		return err
	}
	return d.DatabaseReady(ctx)
}

// maxSessionName is what Postgres keeps of an application_name
// (NAMEDATALEN - 1 bytes); it cuts the rest silently.
const maxSessionName = 63

// sessionName names a service's database sessions retain-<service>@<host>.
// A long pod name (a long release name) would lose its end to Postgres's
// cut, and with it the part that tells one replica from another: the
// host's start goes instead, which repeats the release and service.
func sessionName(service, host string) string {
	name := "retain-" + service + "@"
	if over := len(name) + len(host) - maxSessionName; over > 0 && over < len(host) {
		host = host[over:]
	}
	return name + host
}
