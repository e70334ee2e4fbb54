// Package notifier is the composition root of the notifier service: it
// projects customer.updated into contacts, takes notification.requested
// from RETAIN_NOTIFICATIONS, decides per request (consent, suppression,
// frequency cap, quiet hours) with a recorded decision trail, sends by
// email, SMS or webhook exactly once per request id, and publishes each
// outcome to RETAIN_DELIVERIES through a transactional outbox.
// cmd/notifier runs it alone; `retain dev` runs it beside the others.
package notifier

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/telemetry"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/api"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/channel"
	"github.com/retainhq/retain/services/notifier/internal/policy"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// databaseEnv is the variable of the service's database URL.
const databaseEnv = "RETAIN_NOTIFIER_DATABASE_URL"

// Durable consumer names.
const (
	RequestsConsumer = "notifier-requests"
	ContactsConsumer = "notifier-contacts"
)

// Config is everything the notifier needs.
type Config struct {
	service.Config

	// PublicURL is the base URL customers reach the notifier's HTTP
	// endpoint at (unsubscribe links), e.g. https://retain.shop.example.
	PublicURL string
	// UnsubscribeSecret signs unsubscribe links (at least 32 bytes).
	UnsubscribeSecret string

	CapMax                 int
	CapWindow              time.Duration
	QuietStart, QuietEnd   string
	DefaultTimeZone        string
	DefaultTTL             time.Duration
	MaxAttempts            int
	RetryInitial, RetryMax time.Duration
	Lease, SendTimeout     time.Duration
	SendBatch, SendWorkers int
	BatchSize              int
	PollInterval           time.Duration

	// OutboxDir, when set, replaces every channel by files written there
	// (development).
	OutboxDir string
	SMTP      channel.SMTPConfig
	SMS       channel.SMSConfig
	Webhook   channel.WebhookConfig
	// SMSRate is the SMS provider's request limit per second (0: none).
	SMSRate int

	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// DefaultConfig returns the defaults documented in the README.
func DefaultConfig() Config {
	c := Config{
		Config:          service.DefaultConfig("notifier"),
		PublicURL:       "http://127.0.0.1:8080",
		CapMax:          2,
		CapWindow:       7 * 24 * time.Hour,
		QuietStart:      "21:00",
		QuietEnd:        "09:00",
		DefaultTimeZone: "UTC",
		DefaultTTL:      72 * time.Hour,
		MaxAttempts:     6,
		RetryInitial:    30 * time.Second,
		RetryMax:        30 * time.Minute,
		Lease:           2 * time.Minute,
		SendTimeout:     30 * time.Second,
		SendBatch:       100,
		SendWorkers:     16,
		BatchSize:       250,
		PollInterval:    time.Second,
		SMTP:            channel.SMTPConfig{TLS: channel.TLSOpportunistic, PoolSize: 8, Timeout: 30 * time.Second},
		SMS:             channel.SMSConfig{AuthHeader: "Authorization", Timeout: 10 * time.Second},
		SMSRate:         10,
		Webhook:         channel.WebhookConfig{Timeout: 10 * time.Second},
	}
	c.Addrs.HTTP = ":8080" // the unsubscribe endpoint
	return c
}

// RegisterFlags binds every setting to a flag and its RETAIN_* variable.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	c.Config.RegisterFlags(fs, databaseEnv, "Postgres URL of the notifier database")
	config.StringVar(fs, &c.PublicURL, "public-url", "RETAIN_NOTIFIER_PUBLIC_URL", "base URL of the notifier's HTTP endpoint as customers reach it (unsubscribe links)")
	config.StringVar(fs, &c.UnsubscribeSecret, "unsubscribe-secret", "RETAIN_NOTIFIER_UNSUBSCRIBE_SECRET", "secret signing unsubscribe links (at least 32 bytes)")
	config.IntVar(fs, &c.CapMax, "cap-max", "RETAIN_NOTIFIER_CAP_MAX", "most marketing messages per customer per cap window (0: no cap)")
	config.DurationVar(fs, &c.CapWindow, "cap-window", "RETAIN_NOTIFIER_CAP_WINDOW", "frequency cap window")
	config.StringVar(fs, &c.QuietStart, "quiet-start", "RETAIN_NOTIFIER_QUIET_START", "start of quiet hours, customer's local time (HH:MM)")
	config.StringVar(fs, &c.QuietEnd, "quiet-end", "RETAIN_NOTIFIER_QUIET_END", "end of quiet hours, customer's local time (HH:MM; equal to start: none)")
	config.StringVar(fs, &c.DefaultTimeZone, "default-time-zone", "RETAIN_NOTIFIER_DEFAULT_TIME_ZONE", "time zone of customers without one (IANA)")
	config.DurationVar(fs, &c.DefaultTTL, "default-ttl", "RETAIN_NOTIFIER_DEFAULT_TTL", "how long a request without expires_at may wait (deferrals)")
	config.IntVar(fs, &c.MaxAttempts, "max-attempts", "RETAIN_NOTIFIER_MAX_ATTEMPTS", "provider attempts before a transient failure becomes FAILED")
	config.DurationVar(fs, &c.RetryInitial, "retry-initial", "RETAIN_NOTIFIER_RETRY_INITIAL", "first retry delay (doubled per attempt, with jitter)")
	config.DurationVar(fs, &c.RetryMax, "retry-max", "RETAIN_NOTIFIER_RETRY_MAX", "longest retry delay")
	config.DurationVar(fs, &c.Lease, "send-lease", "RETAIN_NOTIFIER_SEND_LEASE", "how long a send attempt may last before it is reconciled (above every provider timeout)")
	config.DurationVar(fs, &c.SendTimeout, "send-timeout", "RETAIN_NOTIFIER_SEND_TIMEOUT", "bound of one provider call")
	config.IntVar(fs, &c.SendBatch, "send-batch", "RETAIN_NOTIFIER_SEND_BATCH", "deliveries claimed per send pass")
	config.IntVar(fs, &c.SendWorkers, "send-workers", "RETAIN_NOTIFIER_SEND_WORKERS", "provider calls in flight at once")
	config.IntVar(fs, &c.BatchSize, "batch-size", "RETAIN_NOTIFIER_BATCH_SIZE", "most requests or contacts applied in one transaction")
	config.DurationVar(fs, &c.PollInterval, "poll-interval", "RETAIN_NOTIFIER_POLL_INTERVAL", "how often due timers and sends are looked for without a wake-up")
	config.StringVar(fs, &c.OutboxDir, "outbox-dir", "RETAIN_NOTIFIER_OUTBOX_DIR", "write every message to files here instead of sending (development)")
	config.StringVar(fs, &c.SMTP.Addr, "smtp-addr", "RETAIN_NOTIFIER_SMTP_ADDR", "SMTP server host:port (empty: no email)")
	config.StringVar(fs, &c.SMTP.Username, "smtp-username", "RETAIN_NOTIFIER_SMTP_USERNAME", "SMTP AUTH user")
	config.StringVar(fs, &c.SMTP.Password, "smtp-password", "RETAIN_NOTIFIER_SMTP_PASSWORD", "SMTP AUTH password")
	config.StringVar(fs, &c.SMTP.From, "smtp-from", "RETAIN_NOTIFIER_SMTP_FROM", `sender, e.g. "Shop <news@shop.example>"`)
	config.StringVar(fs, &c.SMTP.TLS, "smtp-tls", "RETAIN_NOTIFIER_SMTP_TLS", "starttls (required), opportunistic, tls (implicit, port 465) or none")
	config.IntVar(fs, &c.SMTP.PoolSize, "smtp-pool-size", "RETAIN_NOTIFIER_SMTP_POOL_SIZE", "SMTP connections kept open and reused")
	config.DurationVar(fs, &c.SMTP.Timeout, "smtp-timeout", "RETAIN_NOTIFIER_SMTP_TIMEOUT", "SMTP connection and command timeout")
	config.StringVar(fs, &c.SMS.URL, "sms-url", "RETAIN_NOTIFIER_SMS_URL", "SMS provider API endpoint (JSON POST; empty: no SMS)")
	config.StringVar(fs, &c.SMS.AuthHeader, "sms-auth-header", "RETAIN_NOTIFIER_SMS_AUTH_HEADER", "header carrying the SMS provider credential")
	config.StringVar(fs, &c.SMS.AuthValue, "sms-auth", "RETAIN_NOTIFIER_SMS_AUTH", `value of that header, e.g. "Bearer <key>"`)
	config.StringVar(fs, &c.SMS.From, "sms-from", "RETAIN_NOTIFIER_SMS_FROM", "SMS sender id or number")
	config.IntVar(fs, &c.SMSRate, "sms-rate", "RETAIN_NOTIFIER_SMS_RATE", "SMS provider requests per second (0: unlimited)")
	config.StringVar(fs, &c.Webhook.URL, "webhook-url", "RETAIN_NOTIFIER_WEBHOOK_URL", "endpoint of webhook messages (empty: no webhooks)")
	config.StringVar(fs, &c.Webhook.Secret, "webhook-secret", "RETAIN_NOTIFIER_WEBHOOK_SECRET", "HMAC-SHA256 secret signing webhooks")
}

// Validate names every bad setting at once, each with its variable and
// flag, its value and the form wanted, as the shared settings are named.
// Secrets are described by their length, never shown.
func (c Config) Validate() error {
	var v config.Validator
	v.Add(c.Config.Validate(databaseEnv))
	name := func(env, flagName string) string { return config.SettingName("RETAIN_NOTIFIER_"+env, flagName) }
	v.Check(isHTTPURL(c.PublicURL, true), name("PUBLIC_URL", "public-url"),
		"want an http(s) URL such as https://retain.shop.example, got %q", c.PublicURL)
	v.Check(len(c.UnsubscribeSecret) >= 32, name("UNSUBSCRIBE_SECRET", "unsubscribe-secret"),
		"must be at least 32 bytes, got %d", len(c.UnsubscribeSecret))
	v.Check(c.CapMax >= 0, name("CAP_MAX", "cap-max"), "must not be negative (0: no cap), got %d", c.CapMax)
	v.Check(c.CapWindow > 0, name("CAP_WINDOW", "cap-window"), "must be positive, such as 168h, got %s", c.CapWindow)
	_, err := policy.ParseClock(c.QuietStart)
	v.Check(err == nil, name("QUIET_START", "quiet-start"), "want a time of day (HH:MM) such as 21:00, got %q", c.QuietStart)
	_, err = policy.ParseClock(c.QuietEnd)
	v.Check(err == nil, name("QUIET_END", "quiet-end"), "want a time of day (HH:MM) such as 09:00, got %q", c.QuietEnd)
	_, err = time.LoadLocation(c.DefaultTimeZone)
	v.Check(err == nil, name("DEFAULT_TIME_ZONE", "default-time-zone"), "want an IANA time zone such as Europe/Berlin, got %q", c.DefaultTimeZone)
	v.Check(c.DefaultTTL > 0, name("DEFAULT_TTL", "default-ttl"), "must be positive, such as 72h, got %s", c.DefaultTTL)
	v.Check(c.MaxAttempts >= 1 && c.MaxAttempts <= 100, name("MAX_ATTEMPTS", "max-attempts"), "must be 1-100, got %d", c.MaxAttempts)
	// Each of a pair is checked on its own when its partner is bad, so
	// both are reported at once.
	retryMax := name("RETRY_MAX", "retry-max")
	v.Check(c.RetryInitial > 0, name("RETRY_INITIAL", "retry-initial"), "must be positive, such as 30s, got %s", c.RetryInitial)
	if c.RetryInitial > 0 {
		v.Check(c.RetryMax >= c.RetryInitial, retryMax, "must be at least RETAIN_NOTIFIER_RETRY_INITIAL (%s), got %s", c.RetryInitial, c.RetryMax)
	} else {
		v.Check(c.RetryMax > 0, retryMax, "must be positive, such as 30m, got %s", c.RetryMax)
	}
	lease := name("SEND_LEASE", "send-lease")
	v.Check(c.SendTimeout > 0, name("SEND_TIMEOUT", "send-timeout"), "must be positive, such as 30s, got %s", c.SendTimeout)
	if c.SendTimeout > 0 {
		v.Check(c.Lease > c.SendTimeout, lease,
			"must exceed RETAIN_NOTIFIER_SEND_TIMEOUT (%s) so that an attempt still running is not reconciled, got %s", c.SendTimeout, c.Lease)
	} else {
		v.Check(c.Lease > 0, lease, "must be positive, such as 2m, got %s", c.Lease)
	}
	v.Check(c.SendBatch >= 1 && c.SendBatch <= 10000, name("SEND_BATCH", "send-batch"), "must be 1-10000, got %d", c.SendBatch)
	v.Check(c.SendWorkers >= 1 && c.SendWorkers <= 1000, name("SEND_WORKERS", "send-workers"), "must be 1-1000, got %d", c.SendWorkers)
	v.Check(c.BatchSize >= 1 && c.BatchSize <= 10000, name("BATCH_SIZE", "batch-size"), "must be 1-10000, got %d", c.BatchSize)
	v.Check(c.SMSRate >= 0, name("SMS_RATE", "sms-rate"), "must not be negative (0: unlimited), got %d", c.SMSRate)
	v.Check(c.PollInterval > 0, name("POLL_INTERVAL", "poll-interval"), "must be positive, such as 1s, got %s", c.PollInterval)
	// With an outbox directory nothing is sent, so the channels' settings
	// are not used.
	if c.OutboxDir == "" {
		if c.SMTP.Addr != "" {
			v.Check(c.SMTP.From != "", name("SMTP_FROM", "smtp-from"),
				`must be set with RETAIN_NOTIFIER_SMTP_ADDR: the sender, such as "Shop <news@shop.example>"`)
			v.OneOf(name("SMTP_TLS", "smtp-tls"), c.SMTP.TLS, channel.TLSStartTLS, channel.TLSOpportunistic, channel.TLSImplicit, channel.TLSNone)
			// A pool of 0 or less was quietly made 4, a timeout of 0 or less
			// 30s: the operator's value is refused instead of replaced.
			v.Check(c.SMTP.PoolSize >= 1 && c.SMTP.PoolSize <= 1000, name("SMTP_POOL_SIZE", "smtp-pool-size"), "must be 1-1000, got %d", c.SMTP.PoolSize)
			v.Check(c.SMTP.Timeout > 0 && c.SMTP.Timeout <= maxSMTPTimeout, name("SMTP_TIMEOUT", "smtp-timeout"),
				"must be positive and at most 10m (RFC 5321's longest command timeout), such as 30s, got %s", c.SMTP.Timeout)
		}
		if c.SMS.URL != "" {
			v.Check(isHTTPURL(c.SMS.URL, false), name("SMS_URL", "sms-url"), "want an http(s) URL, got %s", shownURL(c.SMS.URL))
			// A bad header name or value failed every SMS at the provider
			// call (net/http refuses it), retried as if the provider were
			// down; a whole "Authorization: Bearer <key>" in the name sent
			// no credential at all.
			header := name("SMS_AUTH_HEADER", "sms-auth-header")
			switch problem := headerNameProblem(c.SMS.AuthHeader); {
			case c.SMS.AuthHeader == "":
				v.Check(c.SMS.AuthValue == "", header, "must be set with RETAIN_NOTIFIER_SMS_AUTH: the header carrying it, such as Authorization")
			case problem != "":
				v.Addf(header, "want a header name such as Authorization (letters, digits and !#$%%&'*+-.^_`|~), got %d bytes with %s (not shown: it may hold the credential)",
					len(c.SMS.AuthHeader), problem)
			}
			if i := strings.IndexFunc(c.SMS.AuthValue, isControl); i >= 0 {
				v.Addf(name("SMS_AUTH", "sms-auth"), "must be one line without control characters (a header value), got %d bytes with %s at byte %d (not shown: it is the credential)",
					len(c.SMS.AuthValue), controlName(rune(c.SMS.AuthValue[i])), i)
			}
		}
		if c.Webhook.URL != "" {
			v.Check(isHTTPURL(c.Webhook.URL, false), name("WEBHOOK_URL", "webhook-url"), "want an http(s) URL, got %s", shownURL(c.Webhook.URL))
			v.Check(len(c.Webhook.Secret) >= 16, name("WEBHOOK_SECRET", "webhook-secret"),
				"must be at least 16 bytes with RETAIN_NOTIFIER_WEBHOOK_URL, got %d", len(c.Webhook.Secret))
		}
	}
	return v.Err()
}

// maxSMTPTimeout bounds RETAIN_NOTIFIER_SMTP_TIMEOUT: 10 minutes is the
// longest of RFC 5321's command timeouts (4.5.3.2, the reply to the end
// of DATA); a longer one is a slip (30m for 30s) that would let a server
// that stopped answering hold a pool connection that long.
const maxSMTPTimeout = 10 * time.Minute

// headerNameProblem describes the first character of name that an HTTP
// header name cannot hold ("" when it is a header name): a colon says the
// value was written into the name too.
func headerNameProblem(name string) string {
	for i, r := range name {
		switch {
		case httpguts.IsTokenRune(r):
			continue
		case r == ':':
			return fmt.Sprintf("a colon at byte %d: the header's value goes in RETAIN_NOTIFIER_SMS_AUTH", i)
		case isControl(r):
			return fmt.Sprintf("%s at byte %d", controlName(r), i)
		case r == ' ' || r == '\t':
			return fmt.Sprintf("a space at byte %d", i)
		default:
			return fmt.Sprintf("%s at byte %d", strconv.QuoteRune(r), i)
		}
	}
	return ""
}

// isControl reports whether r is a control character a header value
// cannot hold (horizontal tab is allowed there).
func isControl(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }

// controlName names a control character without showing it.
func controlName(r rune) string {
	if r == '\r' || r == '\n' {
		return "a line break (CR or LF)"
	}
	return fmt.Sprintf("the control character %U", r)
}

// isHTTPURL reports whether raw is an http or https URL, with a host if
// needHost.
func isHTTPURL(raw string, needHost bool) bool {
	u, err := url.Parse(raw)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && (u.Host != "" || !needHost)
}

// shownURL is a provider URL as a message shows it: channel.ShownURL
// (no userinfo, no query: provider credentials are often put there),
// quoted when it parses.
func shownURL(raw string) string {
	if _, err := url.Parse(raw); err != nil {
		return channel.ShownURL(raw)
	}
	return strconv.Quote(channel.ShownURL(raw))
}

// Service is a wired notifier, ready to be mounted on servers.
type Service struct {
	deps      *service.Deps
	requests  *bus.Consumer
	contacts  *bus.Consumer
	relay     *bus.Relay
	engine    *app.Engine
	grpc      *api.GRPC
	smtp      *channel.SMTP
	outboxDir string
}

// New checks cfg, reporting every bad setting at once, and then wires the
// service. It is for callers that set cfg in code (`retain dev`, tests);
// the standalone process has its settings checked by service.Main.
func New(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notifier config: %w", err)
	}
	return wire(ctx, cfg, tel)
}

// wire connects to the bus and the database, runs the migrations, declares
// the streams and wires the use cases, from a checked cfg (the quiet hours
// and the time zone parse).
func wire(ctx context.Context, cfg Config, tel *telemetry.Telemetry) (_ *Service, err error) {
	deps, err := service.Open(ctx, cfg.Options("notifier", store.Migrations), tel)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			deps.Abort()
		}
	}()
	qs, _ := policy.ParseClock(cfg.QuietStart)
	qe, _ := policy.ParseClock(cfg.QuietEnd)
	zone, _ := time.LoadLocation(cfg.DefaultTimeZone)
	s := &Service{deps: deps, outboxDir: cfg.OutboxDir}
	if cfg.OutboxDir == "" && loopbackURL(cfg.PublicURL) {
		// Allowed (a compose stack on one machine), but in any other
		// deployment every email would carry a dead unsubscribe link.
		deps.Log.Warn("RETAIN_NOTIFIER_PUBLIC_URL points at this machine: unsubscribe links in sent messages only work for recipients on it; set it to the notifier's public address", "public_url", cfg.PublicURL)
	}
	senders := map[notifierv1.Channel]channel.Sender{}
	switch {
	case cfg.OutboxDir != "":
		f := &channel.File{Dir: cfg.OutboxDir, From: cmpOr(cfg.SMTP.From, "Retain dev <retain@localhost>")}
		senders[notifierv1.Channel_CHANNEL_EMAIL] = f.Email()
		senders[notifierv1.Channel_CHANNEL_SMS] = f.SMS()
		senders[notifierv1.Channel_CHANNEL_WEBHOOK] = f.Webhook()
	default:
		if cfg.SMTP.Addr != "" {
			s.smtp = channel.NewSMTP(cfg.SMTP)
			senders[notifierv1.Channel_CHANNEL_EMAIL] = s.smtp
		}
		if cfg.SMS.URL != "" {
			sms := cfg.SMS
			sms.RatePerSecond = float64(cfg.SMSRate)
			// One knob bounds every provider call.
			sms.Timeout = cfg.SendTimeout
			senders[notifierv1.Channel_CHANNEL_SMS] = channel.NewSMS(sms)
		}
		if cfg.Webhook.URL != "" {
			wh := cfg.Webhook
			wh.Timeout = cfg.SendTimeout
			senders[notifierv1.Channel_CHANNEL_WEBHOOK] = channel.NewWebhook(wh)
		}
	}
	warnUnconfigured(deps.Log, senders)
	s.engine, err = app.New(deps.Pool, app.Config{
		Policy:     policy.Config{CapMax: cfg.CapMax, CapWindow: cfg.CapWindow, QuietStart: qs, QuietEnd: qe, DefaultZone: zone},
		DefaultTTL: cfg.DefaultTTL, Lease: cfg.Lease, SendTimeout: cfg.SendTimeout, MaxAttempts: cfg.MaxAttempts,
		// Half the shutdown's time for saving provider answers held through
		// a database outage; the rest for the other components and the
		// bus drain.
		HoldOnStop:   cfg.Supervisor.ShutdownTimeout / 2,
		RetryInitial: cfg.RetryInitial, RetryMax: cfg.RetryMax, SendBatch: cfg.SendBatch, SendWorkers: cfg.SendWorkers,
		PollInterval: cfg.PollInterval, PublicURL: strings.TrimRight(cfg.PublicURL, "/"), UnsubscribeKey: []byte(cfg.UnsubscribeSecret),
		Now: cfg.Now, Meter: tel.MeterProvider.Meter("retain/notifier"),
		// The server's count, whichever replica applies the contacts: the
		// requests consumer may run ahead of them (decision 0047).
		ContactsBacklog: func(ctx context.Context, tenant string) (int64, error) {
			return s.contacts.TenantBacklog(ctx, tenant)
		},
	}, senders, deps.Log)
	if err != nil {
		return nil, err
	}
	s.requests, err = bus.NewConsumer(deps.Bus, deps.Pool, bus.ConsumerConfig{
		Stream:         bus.NotificationsStream,
		Durable:        RequestsConsumer,
		FilterSubjects: []string{bus.NotificationsSubjectPrefix + ".*." + bus.TypeNotificationRequested},
		BatchSize:      cfg.BatchSize,
	}, s.engine.HandleRequests, deps.Log)
	if err != nil {
		return nil, err
	}
	s.contacts, err = bus.NewConsumer(deps.Bus, deps.Pool, bus.ConsumerConfig{
		Stream:         bus.EventsStream,
		Durable:        ContactsConsumer,
		FilterSubjects: []string{bus.EventTypeFilter("customer.updated")},
		BatchSize:      cfg.BatchSize,
		InboxRetention: cfg.Streams.MaxAge,
	}, s.engine.HandleContacts, deps.Log)
	if err != nil {
		return nil, err
	}
	if s.relay, err = bus.NewRelay(deps.Bus, deps.Pool, bus.RelayConfig{}, deps.Log); err != nil {
		return nil, err
	}
	s.grpc = api.NewGRPC(s.engine)
	return s, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// MethodScopes is the scope each gRPC method requires.
func (s *Service) MethodScopes() map[string]string { return api.MethodScopes }

// RegisterGRPC mounts NotifierService.
func (s *Service) RegisterGRPC(srv *grpc.Server) {
	notifierv1.RegisterNotifierServiceServer(srv, s.grpc)
}

// RegisterHTTP mounts the unsubscribe endpoint (authenticated by the
// signed token in the link, not by a bearer token).
func (s *Service) RegisterHTTP(mux *http.ServeMux) {
	mux.Handle(app.UnsubscribePath, api.Unsubscribe(s.engine, s.deps.Log))
}

// Verifier is the token verifier built from the config (for hosts).
func (s *Service) Verifier() *auth.Verifier { return s.deps.Verifier }

// Consumers are listed by the host's dead-letter API.
func (s *Service) Consumers() []*bus.Consumer { return []*bus.Consumer{s.requests, s.contacts} }

// SetPublicURL changes the base URL of unsubscribe links, for hosts that
// learn their HTTP address only once listening (`retain dev` on port 0).
// Call it before Run.
func (s *Service) SetPublicURL(u string) { s.engine.SetPublicURL(strings.TrimRight(u, "/")) }

// OutboxDir is where the file outbox writes ("" when sending for real).
func (s *Service) OutboxDir() string { return s.outboxDir }

// Count is how many of a tenant's deliveries have a status (sent,
// deferred, suppressed, ...) and reason code ("" for sent).
type Count struct {
	Status, ReasonCode string
	N                  int
}

// Counts are a tenant's deliveries by status and reason, most first (the
// `retain dev --demo` report).
func (s *Service) Counts(ctx context.Context, tenant string) ([]Count, error) {
	cs, err := s.engine.Counts(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]Count, len(cs))
	for i, c := range cs {
		out[i] = Count(c)
	}
	return out, nil
}

// WaitCaughtUp waits until both consumers have applied everything on
// their streams so far.
func (s *Service) WaitCaughtUp(ctx context.Context) error {
	if err := s.contacts.WaitCaughtUp(ctx); err != nil {
		return err
	}
	return s.requests.WaitCaughtUp(ctx)
}

// WaitRelayed waits until every message the service committed so far
// (its delivery outcomes) has been published, or ctx is done.
func (s *Service) WaitRelayed(ctx context.Context) error { return s.relay.WaitRelayed(ctx) }

// Run runs the consumers, the outbox relay, the timers and the senders
// until ctx is done, then drains the bus connection.
func (s *Service) Run(ctx context.Context) error {
	return s.deps.Run(ctx, func() {
		if s.smtp != nil {
			s.smtp.Close()
		}
	}, s.contacts.Run, s.requests.Run, s.relay.Run, s.engine.Run)
}

// Ready reports whether the bus connection and the database are up.
func (s *Service) Ready(ctx context.Context) error { return s.deps.Ready(ctx) }

// Run is the standalone process: telemetry, the service, its gRPC, HTTP and
// ops servers under one supervisor, until ctx is done. cfg is as
// service.Main parsed and checked it, so it is not checked again.
func Run(ctx context.Context, cfg Config, version string) error {
	return service.Run(ctx, cfg, version, func(ctx context.Context, tel *telemetry.Telemetry) (service.Hosted, error) {
		return wire(ctx, cfg, tel)
	})
}

// loopbackURL reports whether u's host is localhost or a loopback address.
func loopbackURL(u string) bool {
	parsed, err := url.Parse(u)
	if err != nil {
		return false
	}
	host := parsed.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
