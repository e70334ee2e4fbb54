package channel

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"sync"
	"time"
)

// TLS modes of the SMTP connection.
const (
	TLSStartTLS      = "starttls"      // STARTTLS required
	TLSOpportunistic = "opportunistic" // STARTTLS when offered
	TLSImplicit      = "tls"           // TLS from the first byte (port 465)
	TLSNone          = "none"
)

// SMTPConfig configures the email sender.
type SMTPConfig struct {
	Addr     string // host:port
	Username string
	Password string
	From     string // "Shop <news@shop.example>"
	TLS      string
	// TLSConfig overrides the TLS settings (tests, private CAs).
	TLSConfig *tls.Config
	// PoolSize is the most connections open at once; idle ones are reused.
	PoolSize int
	Timeout  time.Duration
	// HelloName is sent in EHLO (default "localhost").
	HelloName string
}

// SMTP sends email over a pool of reused SMTP connections (one message per
// MAIL transaction, many transactions per connection).
type SMTP struct {
	cfg  SMTPConfig
	sem  chan struct{}
	mu   sync.Mutex
	idle []*smtpConn
}

type smtpConn struct {
	c    *smtp.Client
	conn net.Conn
}

// NewSMTP returns a sender; connections are opened on demand.
func NewSMTP(cfg SMTPConfig) *SMTP {
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 4
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSOpportunistic
	}
	if cfg.HelloName == "" {
		cfg.HelloName = "localhost"
	}
	return &SMTP{cfg: cfg, sem: make(chan struct{}, cfg.PoolSize)}
}

func (s *SMTP) tlsConfig() *tls.Config {
	if s.cfg.TLSConfig != nil {
		return s.cfg.TLSConfig.Clone()
	}
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	return &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
}

func (s *SMTP) dial(ctx context.Context) (*smtpConn, error) {
	d := net.Dialer{Timeout: s.cfg.Timeout}
	var conn net.Conn
	var err error
	if s.cfg.TLS == TLSImplicit {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: s.tlsConfig()}).DialContext(ctx, "tcp", s.cfg.Addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", s.cfg.Addr)
	}
	if err != nil {
		return nil, Transient("provider_unavailable", fmt.Errorf("connect to SMTP server %s: %w", s.cfg.Addr, err))
	}
	// The greeting, EHLO, STARTTLS and AUTH are bounded by the send's
	// context too: RETAIN_NOTIFIER_SEND_TIMEOUT bounds the whole call, and
	// a server that accepts connections but does not answer would
	// otherwise hold the attempt (and the send pass waiting on it) for the
	// SMTP timeout.
	_ = conn.SetDeadline(s.deadline(ctx))
	host, _, _ := net.SplitHostPort(s.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return nil, s.smtpErr("greeting", err)
	}
	if err := c.Hello(s.cfg.HelloName); err != nil {
		c.Close()
		return nil, s.smtpErr("EHLO", err)
	}
	if s.cfg.TLS == TLSStartTLS || s.cfg.TLS == TLSOpportunistic {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(s.tlsConfig()); err != nil {
				c.Close()
				return nil, s.smtpErr("STARTTLS", err)
			}
		} else if s.cfg.TLS == TLSStartTLS {
			c.Close()
			return nil, Permanent("provider_misconfigured", fmt.Errorf("SMTP server %s does not offer STARTTLS and RETAIN_NOTIFIER_SMTP_TLS is starttls", s.cfg.Addr))
		}
	}
	if s.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.cfg.Username, s.cfg.Password, host)); err != nil {
			c.Close()
			return nil, s.smtpErr("AUTH", err)
		}
	}
	return &smtpConn{c: c, conn: conn}, nil
}

func (s *SMTP) get(ctx context.Context) (*smtpConn, bool, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, false, Transient("provider_timeout", ctx.Err())
	}
	s.mu.Lock()
	if n := len(s.idle); n > 0 {
		c := s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	c, err := s.dial(ctx)
	if err != nil {
		<-s.sem
		return nil, false, err
	}
	return c, false, nil
}

func (s *SMTP) put(c *smtpConn, ok bool) {
	if ok {
		s.mu.Lock()
		s.idle = append(s.idle, c)
		s.mu.Unlock()
	} else {
		_ = c.conn.Close()
	}
	<-s.sem
}

// errBeforeData marks a failure before the message was handed over:
// nothing can have been delivered, so retrying at once on a fresh
// connection is safe (an idle connection the server closed fails here).
var errBeforeData = errors.New("before DATA")

// Send delivers one message; its provider id is the Message-ID.
func (s *SMTP) Send(ctx context.Context, m *Message) (string, error) {
	data, id := BuildEmail(m, s.cfg.From)
	for try := 0; ; try++ {
		c, reused, err := s.get(ctx)
		if err != nil {
			return "", err
		}
		err = s.transact(ctx, c, m.To, data)
		s.put(c, err == nil)
		if err == nil {
			return id, nil
		}
		if errors.Is(err, errBeforeData) && reused && try == 0 {
			continue
		}
		return "", err
	}
}

func (s *SMTP) transact(ctx context.Context, c *smtpConn, to string, data []byte) error {
	_ = c.conn.SetDeadline(s.deadline(ctx))
	from := s.cfg.From
	if a, err := parseAddr(from); err == nil {
		from = a
	}
	if err := c.c.Mail(from); err != nil {
		return fmt.Errorf("%w: %w", errBeforeData, s.smtpErr("MAIL FROM", err))
	}
	if err := c.c.Rcpt(to); err != nil {
		_ = c.c.Reset()
		return fmt.Errorf("%w: %w", errBeforeData, s.smtpErr("RCPT TO", err))
	}
	w, err := c.c.Data()
	if err != nil {
		return fmt.Errorf("%w: %w", errBeforeData, s.smtpErr("DATA", err))
	}
	if _, err := w.Write(data); err != nil {
		return s.smtpErr("DATA", err)
	}
	if err := w.Close(); err != nil {
		return s.smtpErr("end of DATA", err)
	}
	return nil
}

// deadline is when the SMTP timeout ends, or ctx's deadline if earlier.
func (s *SMTP) deadline(ctx context.Context) time.Time {
	deadline := time.Now().Add(s.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		return d
	}
	return deadline
}

// smtpErr classifies an SMTP reply: 5xx permanent, 4xx and network errors
// transient. The reply's text, which may span lines and echo what the
// client sent, is shown as scrub makes it, without the AUTH credentials.
func (s *SMTP) smtpErr(stage string, err error) error {
	var te *textproto.Error
	if errors.As(err, &te) {
		reply := fmt.Errorf("SMTP %s: %d %s", stage, te.Code, bounded(scrub(te.Msg, secretsOf(s.cfg.Username, s.cfg.Password)), maxDetail))
		if te.Code >= 500 {
			return Permanent("provider_rejected", reply)
		}
		return Transient("provider_unavailable", reply)
	}
	return Classify(fmt.Errorf("SMTP %s: %w", stage, err))
}

// Close closes the idle connections.
func (s *SMTP) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.idle {
		_ = c.c.Quit()
	}
	s.idle = nil
}
