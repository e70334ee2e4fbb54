// Package bus is Retain's JetStream runtime: the connection, stream
// declarations, durable publishing (atomic batches with message ids), the
// batch consumer runner with its Postgres inbox and dead letters, and the
// transactional outbox relay. See ARCHITECTURE.md sections 2, 3 and 8 for the
// guarantees this package exists to provide.
package bus

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/telemetry"
)

// instrumentationName names the tracer and meter of this package.
const instrumentationName = "github.com/retainhq/retain/platform/bus"

// Defaults for Config.
const (
	DefaultURL            = nats.DefaultURL
	DefaultName           = "retain"
	DefaultConnectTimeout = 5 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	// DefaultMaxBatchSize is nats-server's default limit on the number of
	// messages in one atomic batch (streamDefaultMaxAtomicBatchSize; the
	// server option jetstream.limits.max_batch_size changes it).
	DefaultMaxBatchSize = 1000
	// DefaultFetchMaxBytes bounds what a consumer's fetch takes: 16 events
	// at ingest's 512 KiB limit (decision 0039), hundreds of usual ones.
	DefaultFetchMaxBytes = 8 << 20
	// MinFetchMaxBytes is the least FetchMaxBytes taken: less would make
	// batches of one of usual events, and is more likely a unit mistaken.
	MinFetchMaxBytes = 64 << 10
)

// Config configures the connection to NATS.
type Config struct {
	// URL of the NATS server(s), comma separated.
	URL string
	// Name of the connection as the server shows it (the service name).
	// It also names the connection's inbox prefix (InboxPrefix).
	Name string
	// ConnectTimeout bounds each dial attempt; Connect itself keeps retrying
	// until its context is done, so a service can start before NATS.
	ConnectTimeout time.Duration
	// PublishTimeout bounds the wait for a publish ack when the caller's
	// context has no deadline.
	PublishTimeout time.Duration
	// MaxBatchSize is the largest atomic batch PublishDurable sends. It must
	// not exceed the server's max_batch_size (default 1000).
	MaxBatchSize int
	// FetchMaxBytes is the ConsumerConfig.FetchMaxBytes of the consumers
	// on this bus that set none: the most bytes one fetch (one batch)
	// takes (RETAIN_NATS_FETCH_MAX_BYTES; 0: DefaultFetchMaxBytes).
	FetchMaxBytes int

	// How the connection logs in: at most one of a credentials file (a
	// user JWT and its nkey seed, as `nsc generate creds` writes), an
	// nkey seed file, a user with a password, or a token. A secret comes
	// from its variable or from a file (a mounted Secret), not both.
	// Credentials in the URL are the alternative to all of these.
	CredsFile    string
	NkeyFile     string
	User         string
	Password     string
	PasswordFile string
	Token        string
	TokenFile    string

	// TLS: TLSCA verifies the server's certificate (without it, the
	// system's roots do); TLSCert and TLSKey are the client certificate
	// a server that verifies clients asks for. Any of them makes the
	// connection use TLS, as a tls:// URL does.
	TLSCA, TLSCert, TLSKey string
}

// RegisterFlags binds the connection settings every service shares to
// flags and RETAIN_NATS_* variables.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	for _, b := range []struct {
		p     *string
		s     setting
		usage string
	}{
		{&c.URL, settingURL, "NATS server URL(s), comma-separated"},
		{&c.CredsFile, settingCreds, "NATS credentials file (user JWT and nkey seed)"},
		{&c.NkeyFile, settingNkey, "NATS nkey seed file"},
		{&c.User, settingUser, "NATS user"},
		{&c.Password, settingPassword, "NATS password of the user"},
		{&c.PasswordFile, settingPasswordFile, "file holding the NATS password of the user"},
		{&c.Token, settingToken, "NATS authentication token"},
		{&c.TokenFile, settingTokenFile, "file holding the NATS authentication token"},
		{&c.TLSCA, settingTLSCA, "CA certificate(s) verifying the NATS server (PEM file)"},
		{&c.TLSCert, settingTLSCert, "client certificate for NATS (PEM file)"},
		{&c.TLSKey, settingTLSKey, "private key of the NATS client certificate (PEM file)"},
	} {
		config.StringVar(fs, b.p, b.s.flag, b.s.env, b.usage)
	}
}

// RegisterConsumerFlags binds the settings the consumers on the bus
// share (RETAIN_NATS_FETCH_MAX_BYTES). They are apart from the connection
// settings RegisterFlags binds, which the chart sets as a whole from its
// NATS login and TLS values.
func (c *Config) RegisterConsumerFlags(fs *flag.FlagSet) {
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = DefaultFetchMaxBytes
	}
	config.IntVar(fs, &c.FetchMaxBytes, settingFetchMaxBytes.flag, settingFetchMaxBytes.env,
		"most bytes of messages a consumer takes in one fetch, so in one batch (a larger message is taken alone)")
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MaxBatchSize == 0 {
		c.MaxBatchSize = DefaultMaxBatchSize
	}
	if c.FetchMaxBytes == 0 {
		c.FetchMaxBytes = DefaultFetchMaxBytes
	}
	return c
}

// InboxPrefix is the subject prefix of the connection's inboxes, where
// replies arrive: request replies, JetStream API answers, publish acks,
// the messages a pull consumer fetches. It is `_INBOX_` and the name
// (withDefaults: DefaultName when empty), with every character a subject
// token must not hold (and any but letters, digits, `-` and `_`) replaced
// by `_`: "retain-campaign" gives `_INBOX_retain-campaign`. Each service
// has its own, so a server can allow each service's user to subscribe to
// its own inboxes only (`_INBOX_retain-campaign.>`) and none reads the
// replies, pulled messages included, of another; nats.go's default,
// `_INBOX.`, would be shared by all.
func (c Config) InboxPrefix() string {
	name := c.Name
	if name == "" {
		name = DefaultName
	}
	return "_INBOX_" + strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
			return r
		}
		return '_'
	}, name)
}

// Validate reports every configuration error at once, in
// config.Validator's form; zero values mean defaults. A bad URL is named
// by the setting services bind it to (service.Config), so it reads like
// their other bad settings.
func (c Config) Validate() error {
	var v config.Validator
	v.Check(c.ConnectTimeout >= 0, "bus ConnectTimeout", "must not be negative, got %s", c.ConnectTimeout)
	v.Check(c.PublishTimeout >= 0, "bus PublishTimeout", "must not be negative, got %s", c.PublishTimeout)
	v.Check(c.MaxBatchSize >= 0, "bus MaxBatchSize", "must not be negative, got %d", c.MaxBatchSize)
	v.Check(c.FetchMaxBytes == 0 || c.FetchMaxBytes >= MinFetchMaxBytes, settingFetchMaxBytes.String(),
		"must be at least %d bytes (64 KiB), such as %d (8 MiB), got %d", MinFetchMaxBytes, DefaultFetchMaxBytes, c.FetchMaxBytes)
	validateURL(&v, settingURL.String(), c.URL)
	c.validateAuth(&v)
	c.validateTLS(&v)
	return v.Err()
}

// urlSchemes are the schemes nats.go dials; a URL without "://" gets
// "nats://" (as nats.go does).
var urlSchemes = map[string]bool{"nats": true, "tls": true, "ws": true, "wss": true}

// validateURL checks the NATS URL list the way nats.go reads it (comma
// separated, blanks skipped, empty meaning the default). A URL nats.go cannot
// use is a configuration error no retry fixes, so Connect reports it at once.
// Messages quote the URL only with its credentials redacted: errors from
// url.Parse quote the raw URL, so their text is never passed on.
func validateURL(v *config.Validator, setting, list string) {
	ws := -1 // unknown until the first URL: 0 plain, 1 websocket
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		full := raw
		if !strings.Contains(full, "://") {
			full = "nats://" + full
		}
		bad := func(format string, args ...any) {
			v.Addf(setting, format+", got %q", append(args, redactOne(raw))...)
		}
		u, err := url.Parse(full)
		if err != nil {
			bad("not a valid URL: %s", parseReason(full))
			continue
		}
		if !urlSchemes[strings.ToLower(u.Scheme)] {
			bad("unsupported scheme %q (use nats, tls, ws or wss)", u.Scheme)
			continue
		}
		isWS := 0
		if s := strings.ToLower(u.Scheme); s == "ws" || s == "wss" {
			isWS = 1
		}
		if ws >= 0 && isWS != ws {
			bad("websocket (ws, wss) and non-websocket URLs cannot be mixed")
			continue
		}
		ws = isWS
	}
}

// parseReason says why url.Parse rejects full without quoting its
// credentials: it parses the URL again with the userinfo replaced, and
// reports that error's reason (not the *url.Error text, which quotes the
// whole URL). If only the userinfo was at fault, it says so.
func parseReason(full string) string {
	_, err := url.Parse(redactUnparsed(full))
	var uerr *url.Error
	switch {
	case err == nil:
		return "invalid user name or password (escape special characters with %XX)"
	case errors.As(err, &uerr):
		return uerr.Err.Error()
	default:
		return "cannot be parsed"
	}
}

// Option customises a Bus beyond its Config (things that are not
// configuration but wiring: telemetry providers).
type Option func(*options)

type options struct {
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
}

// WithTracerProvider sets where publish and consume spans go (default: noop).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithMeterProvider sets where the bus metrics go (default: noop).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// Bus is a connection to NATS with its JetStream context, and the telemetry
// every publisher, consumer and relay built on it shares.
type Bus struct {
	NC *nats.Conn
	JS jetstream.JetStream

	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer
	// prop is W3C trace context only, chosen explicitly rather than the
	// global propagator so trace headers on the wire never depend on what
	// some other package registered globally.
	prop propagation.TextMapPropagator
	inst *instruments

	routesMu sync.RWMutex
	routes   []streamRoute     // subject filters of streams declared by EnsureStreams
	bySubj   map[string]string // subject -> stream learnt from the server
}

// Connect dials NATS, retrying with exponential backoff until ctx is done,
// so services may start before NATS does. Once connected, the client
// reconnects forever on its own.
func Connect(ctx context.Context, cfg Config, log *slog.Logger, opts ...Option) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.tracerProvider == nil {
		o.tracerProvider = tracenoop.NewTracerProvider()
	}
	if o.meterProvider == nil {
		o.meterProvider = metricnoop.NewMeterProvider()
	}
	inst, err := newInstruments(o.meterProvider.Meter(instrumentationName))
	if err != nil {
		return nil, err
	}
	log = log.With("component", "bus")

	loginOpts, err := cfg.connectOptions()
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	asyncErrs := &repeatedErrors{log: log}
	// The server last connected to, for the disconnect line: nats.go
	// names it only while connected, and the handler runs after.
	var server atomic.Pointer[string]
	setServer := func(nc *nats.Conn) { s := nc.ConnectedUrlRedacted(); server.Store(&s) }
	natsOpts := append(loginOpts,
		nats.Name(cfg.Name),
		// The jetstream package takes its reply subjects from this too
		// (jetstream.New reads nc.Opts.InboxPrefix; pulls use
		// nc.NewInbox), as do requests and PublishDurable's batch acks.
		nats.CustomInboxPrefix(cfg.InboxPrefix()),
		nats.Timeout(cfg.ConnectTimeout),
		nats.MaxReconnects(-1),
		// By default nats.go stops reconnecting for good when a server
		// refuses the login twice in a row, leaving a service up but
		// never ready again. Keep trying instead: the server's users may
		// be being updated, or a rotated credentials file be on its way.
		nats.IgnoreAuthErrorAbort(),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return
			}
			attrs := []any{"error", err}
			if s := server.Load(); s != nil {
				attrs = append(attrs, "server", *s)
			}
			if errors.Is(err, nats.ErrStaleConnection) {
				attrs = append(attrs, "reason", staleReason)
			}
			log.Warn("nats disconnected", attrs...)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			setServer(nc)
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted(), "async_errors_not_logged", asyncErrs.reset())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			asyncErrs.report(subject, err)
		}),
	)

	delay := 100 * time.Millisecond
	// A server away at start is waited for as long as the caller's ctx
	// lets: said at once, then once a minute, not at every retry.
	retries := telemetry.FailureRun{Every: connectLogEvery}
	for attempt := 1; ; attempt++ {
		nc, err := nats.Connect(cfg.URL, natsOpts...)
		if err == nil {
			js, err := jetstream.New(nc)
			if err != nil {
				nc.Close()
				return nil, fmt.Errorf("bus: jetstream context: %w", err)
			}
			setServer(nc)
			_, notTLS := nc.TLSConnectionState()
			log.Info("nats connected", "server", nc.ConnectedUrlRedacted(), "attempts", attempt, "login", cfg.login(), "tls", notTLS == nil)
			return &Bus{
				NC:     nc,
				JS:     js,
				cfg:    cfg,
				log:    log,
				tracer: o.tracerProvider.Tracer(instrumentationName),
				prop:   propagation.TraceContext{},
				inst:   inst,
				bySubj: map[string]string{},
			}, nil
		}
		// Validate caught the URLs nats.go cannot parse; should nats.go
		// still reject one, retrying would not help.
		var uerr *url.Error
		if errors.As(err, &uerr) || errors.Is(err, nats.ErrMixingWebsocketSchemes) {
			return nil, fmt.Errorf("bus: URL %q (RETAIN_NATS_URL) rejected: %s", redactURL(cfg.URL), redactErr(err, cfg.URL))
		}
		// Nor does a retry change the login or TLS settings the server
		// refuses: stop with the settings to fix.
		refused := cfg.refusal(err)
		if refused == nil {
			refused = cfg.clientCertRefusal(err)
		}
		if refused != nil {
			return nil, fmt.Errorf("bus: connect to %s: %s", redactURL(cfg.URL), redactErr(refused, cfg.URL))
		}
		if retries.Failed(time.Now()).Log {
			log.Warn("nats connect failed, retrying", "url", redactURL(cfg.URL), "setting", "RETAIN_NATS_URL", "attempt", attempt,
				"retry_in", delay, "next_log_in", connectLogEvery, "error", redactErr(err, cfg.URL))
		}
		if werr := sleepCtx(ctx, delay); werr != nil {
			return nil, fmt.Errorf("bus: connect to %s: gave up after %d attempts: %w (last error: %s)", redactURL(cfg.URL), attempt, werr, redactErr(err, cfg.URL))
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// connectLogEvery paces the log of a connection retried at start.
const connectLogEvery = time.Minute

// A server that stops answering without closing the connection (a hung or
// paused process, a network path dropping packets) is noticed by pings
// alone: nats.go's defaults (2 min, 2 out) take 4-6 minutes, during which
// the service reports ready and every publish waits out its timeout. With
// these the connection is given up, and the service not ready, after 10-15
// s of silence (maxPingsOut pings unanswered at the next ping), well under
// a publish timeout yet far above any pong delay of a healthy server. A
// PING and its PONG are a few bytes each, so even hundreds of replicas
// pinging every few seconds are nothing to the server (which pings its
// clients too, every 2 minutes by default).
const (
	pingInterval = 5 * time.Second
	maxPingsOut  = 2
)

// staleReason explains nats.ErrStaleConnection in the disconnect line.
var staleReason = fmt.Sprintf("the server answered none of %d pings sent %s apart: it is hung or paused, or the network path to it is broken", maxPingsOut, pingInterval)

// clientCertRefusals are the texts of the TLS alerts (crypto/tls's) with
// which a server refuses the client's certificate, or its lack of one.
var clientCertRefusals = map[string]bool{
	"tls: certificate required":          true,
	"tls: bad certificate":               true,
	"tls: unsupported certificate":       true,
	"tls: revoked certificate":           true,
	"tls: expired certificate":           true,
	"tls: unknown certificate":           true,
	"tls: unknown certificate authority": true,
}

// clientCertRefusal names the settings to fix when err is the server's
// alert refusing the client's certificate (a remote error: the client's
// own checks of the server's certificate fail locally). With TLS 1.3 the
// server sends it after the client's side of the handshake is done, and
// closes: the client reads the alert first nearly always, but now and
// then its write meets the closed connection, and nats.go reports only
// "connection closed by remote after TLS handshake", which many other
// things cause. That one is retried, like any other, and the alert comes
// with the next attempt.
func (c Config) clientCertRefusal(err error) error {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil || !clientCertRefusals[op.Err.Error()] {
		return nil
	}
	if c.TLSCert == "" {
		return fmt.Errorf("NATS requires a client certificate (%v): set %s and %s to a certificate it trusts and its key", err, settingTLSCert, settingTLSKey)
	}
	return fmt.Errorf("NATS refused the client certificate (%v): check %s and %s: the server must trust the CA that signed it, and it must be valid now", err, settingTLSCert, settingTLSKey)
}

// Close closes the connection at once; pending acks and publishes are lost
// (which the inbox and dedupe make harmless). Prefer Drain at shutdown.
func (b *Bus) Close() {
	b.NC.Close()
}

// Drain unsubscribes, lets in-flight messages finish, flushes and closes the
// connection; it returns when closed or when ctx is done.
func (b *Bus) Drain(ctx context.Context) error {
	closed := make(chan struct{})
	b.NC.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := b.NC.Drain(); err != nil {
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("bus: drain: %w", err)
	}
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		b.NC.Close()
		return fmt.Errorf("bus: drain: %w", ctx.Err())
	}
}

// Logger returns the bus logger (components derive theirs from it).
func (b *Bus) Logger() *slog.Logger { return b.log }

// sleepCtx waits d or until ctx is done (then returns ctx.Err()).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// jitter spreads d by +-20% so that many workers retrying the same failure
// do not retry in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// redactURL hides credentials in a NATS URL list before it is logged, also
// in URLs that do not parse. A user name alone is hidden too: in NATS it is
// the token form of authentication (nats://TOKEN@host).
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = redactOne(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// redactedSecret replaces credentials in logged URLs.
const redactedSecret = "xxxxx"

// redactOne hides the credentials of one URL.
func redactOne(raw string) string {
	full := raw
	if !strings.Contains(full, "://") {
		full = "nats://" + full
	}
	u, err := url.Parse(full)
	if err != nil {
		return redactUnparsed(raw)
	}
	if u.User == nil {
		return raw
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), redactedSecret)
	} else {
		u.User = url.User(redactedSecret)
	}
	return u.String()
}

// redactUnparsed hides everything between "://" (or the start, without a
// scheme) and the last "@" of a URL that url.Parse rejects: which part is
// the user name cannot be trusted then, and hiding too much is harmless.
func redactUnparsed(raw string) string {
	start, end := userinfo(raw)
	if end < 0 {
		return raw
	}
	return raw[:start] + redactedSecret + raw[end:]
}

// userinfo is where the credentials of raw are by position alone: from
// after "://" (or the start) to the last "@" (end, -1 without one).
func userinfo(raw string) (start, end int) {
	if i := strings.Index(raw, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndex(raw[start:], "@")
	if at < 0 {
		return start, -1
	}
	return start, start + at
}

// redactErr is err's text with the credentials of every URL in list
// replaced, for errors (from nats.go, the resolver, the dialer) that may quote
// a URL as given.
func redactErr(err error, list string) string {
	msg := err.Error()
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if r := redactOne(p); r != p {
			msg = strings.ReplaceAll(msg, p, r)
		}
		if start, end := userinfo(p); end > start {
			msg = strings.ReplaceAll(msg, p[start:end+1], redactedSecret+"@")
		}
	}
	return msg
}
