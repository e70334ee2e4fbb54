package service

import (
	"flag"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/telemetry"
)

// Config is the part of every service's configuration that is the same
// everywhere: telemetry, the bus and its streams, listen addresses, shutdown,
// the token key and the service's own database. Services embed it.
type Config struct {
	Telemetry telemetry.Config
	NATS      bus.Config
	Streams   bus.StreamOptions
	// Addrs are the gRPC, public HTTP (empty: none) and ops listen addresses.
	Addrs server.Addrs
	// TLS is the certificate the gRPC and public HTTP listeners serve
	// (none: plaintext); the ops listener is always plaintext.
	TLS server.TLSConfig
	// Supervisor tunes graceful shutdown.
	Supervisor server.SupervisorConfig
	// AuthPublicKey verifies tokens: one or more Ed25519 public keys
	// (base64 or PEM; several while the signing key is rotated).
	AuthPublicKey string
	// AuthRevokedFile lists revoked token ids (optional); it is checked
	// for changes every AuthRevokedInterval.
	AuthRevokedFile     string
	AuthRevokedInterval time.Duration
	// DatabaseURL is the service's own database.
	DatabaseURL string
	// DatabaseEnv is the setting DatabaseURL is read from
	// (RETAIN_METRICS_DATABASE_URL), named when the database cannot be
	// used; RegisterFlags sets it.
	DatabaseEnv string
}

// DefaultConfig returns the shared defaults documented in the README for
// the service called name ("ingest").
func DefaultConfig(name string) Config {
	return Config{
		Telemetry:  telemetry.Config{Service: "retain-" + name, LogLevel: telemetry.LevelInfo, LogFormat: "json"},
		NATS:       bus.Config{URL: "nats://127.0.0.1:4222", Name: "retain-" + name},
		Streams:    bus.StreamOptions{MaxAge: bus.DefaultMaxAge, Duplicates: bus.DefaultDuplicates, Replicas: 1},
		Addrs:      server.Addrs{GRPC: ":9090", Ops: ":9100"},
		Supervisor: server.SupervisorConfig{ShutdownTimeout: server.DefaultShutdownTimeout},

		AuthRevokedInterval: auth.DefaultRevocationInterval,
	}
}

// RegisterFlags binds the shared settings to flags and RETAIN_* variables.
// databaseEnv names the service's database variable
// (RETAIN_INGEST_DATABASE_URL); the public HTTP address is bound only for
// services with a public HTTP API (a non-empty default Addrs.HTTP).
func (c *Config) RegisterFlags(fs *flag.FlagSet, databaseEnv, databaseUsage string) {
	c.DatabaseEnv = databaseEnv
	c.Telemetry.RegisterFlags(fs)
	c.NATS.RegisterFlags(fs)
	c.NATS.RegisterConsumerFlags(fs)
	c.Streams.RegisterFlags(fs)
	config.StringVar(fs, &c.Addrs.GRPC, "grpc-addr", "RETAIN_GRPC_ADDR", "gRPC listen address")
	if c.Addrs.HTTP != "" {
		config.StringVar(fs, &c.Addrs.HTTP, "http-addr", "RETAIN_HTTP_ADDR", "HTTP listen address of the public API")
	}
	config.StringVar(fs, &c.Addrs.Ops, "ops-addr", "RETAIN_OPS_ADDR", "ops HTTP listen address (/healthz, /readyz, /metrics)")
	c.TLS.RegisterFlags(fs)
	c.Supervisor.RegisterFlags(fs)
	config.StringVar(fs, &c.AuthPublicKey, "auth-public-key", "RETAIN_AUTH_PUBLIC_KEY", "Ed25519 public key(s) verifying API tokens (base64 or PEM; several, comma-separated or PEM blocks, while the signing key is rotated)")
	config.StringVar(fs, &c.AuthRevokedFile, "auth-revoked-file", "RETAIN_AUTH_REVOKED_FILE", "file of revoked token ids (jti), one a line, re-read when it changes (default: none)")
	config.DurationVar(fs, &c.AuthRevokedInterval, "auth-revoked-interval", "RETAIN_AUTH_REVOKED_INTERVAL", "how often the revoked-token file is checked for changes")
	config.StringVar(fs, &c.DatabaseURL, "database-url", databaseEnv, databaseUsage)
}

// Validate names every bad shared setting, with its variable and flag;
// databaseEnv is the name of the database variable, for the message. The
// listen addresses are checked here too, so a bad one is reported with
// the others before anything connects.
func (c Config) Validate(databaseEnv string) error {
	var v config.Validator
	v.Add(c.Telemetry.Validate())
	v.Add(c.NATS.Validate())
	v.Add(c.Streams.Validate())
	v.Add(c.Supervisor.Validate())
	v.Add(server.GRPCConfig{Addr: c.Addrs.GRPC}.Validate())
	if c.Addrs.HTTP != "" {
		v.Add(server.HTTPConfig{Addr: c.Addrs.HTTP}.Validate())
	}
	v.Add(server.OpsConfig{Addr: c.Addrs.Ops}.Validate())
	v.Add(c.TLS.Validate())
	key := config.SettingName("RETAIN_AUTH_PUBLIC_KEY", "auth-public-key")
	if c.AuthPublicKey == "" {
		v.Addf(key, "must be set: the Ed25519 public key, base64 or PEM (generate a pair with `retain tokens keygen`)")
	} else if _, err := auth.ParsePublicKeys(c.AuthPublicKey); err != nil {
		v.Addf(key, "%v", err)
	}
	// Read here, so that a missing or broken list stops the start with the
	// other bad settings: a service must not come up honouring no
	// revocation because of a typo.
	if c.AuthRevokedFile != "" {
		if _, err := auth.LoadRevocations(c.AuthRevokedFile); err != nil {
			v.Addf(config.SettingName("RETAIN_AUTH_REVOKED_FILE", "auth-revoked-file"), "%v", err)
		}
	}
	v.Check(c.AuthRevokedInterval >= 100*time.Millisecond, config.SettingName("RETAIN_AUTH_REVOKED_INTERVAL", "auth-revoked-interval"),
		"must be at least 100ms, got %s", c.AuthRevokedInterval)
	db := config.SettingName(databaseEnv, "database-url")
	const dbForm = "a Postgres URL such as postgres://user:password@host:5432/database"
	if c.DatabaseURL == "" {
		v.Addf(db, "must be set: %s", dbForm)
	} else if _, err := pgxpool.ParseConfig(c.DatabaseURL); err != nil {
		// Checked here, not first when Open connects, so that it is
		// reported with the other settings. pgx's message shows the value
		// with its password masked.
		v.Addf(db, "want %s: %v", dbForm, err)
	}
	return v.Err()
}

// Shared returns c: through embedding, a service's configuration offers
// its shared part to Run.
func (c Config) Shared() Config { return c }

// Options are what Open needs, from the shared settings.
func (c Config) Options(name string, migrations ...pg.MigrationSet) Options {
	return Options{
		Name: name, AuthPublicKey: c.AuthPublicKey, AuthRevokedFile: c.AuthRevokedFile, AuthRevokedInterval: c.AuthRevokedInterval,
		DatabaseURL: c.DatabaseURL, DatabaseEnv: c.DatabaseEnv, Migrations: migrations, NATS: c.NATS, Streams: c.Streams,
	}
}
