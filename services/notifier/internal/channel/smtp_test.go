package channel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// selfSigned returns a server certificate for 127.0.0.1 made in the test,
// and a pool that trusts it (as a private CA would be configured).
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "retain test SMTP"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// sink is a real SMTP server (go-smtp) that records, per connection,
// whether it was encrypted and who authenticated, and every message.
type sink struct {
	addr        string
	mu          sync.Mutex
	conns       int
	tlsMessages int
	auths       []string
	msgs        []string
	// password is the one AUTH accepts (for mailer); rcptErr, when set,
	// refuses every recipient. Both are set before the first message.
	password string
	rcptErr  error
}

type sinkSession struct {
	s    *sink
	conn *smtp.Conn
	user string
}

func (ss *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }
func (ss *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		ss.s.mu.Lock()
		defer ss.s.mu.Unlock()
		ss.s.auths = append(ss.s.auths, user+":"+pass)
		if user != "mailer" || pass != ss.s.password {
			// What real servers answer (RFC 4954).
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "Authentication credentials invalid"}
		}
		ss.user = user
		return nil
	}), nil
}
func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	return ss.s.rcptErr
}
func (ss *sinkSession) Reset()        {}
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, encrypted := ss.conn.TLSConnectionState()
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	if encrypted {
		ss.s.tlsMessages++
	}
	ss.s.msgs = append(ss.s.msgs, string(b))
	return nil
}

// newSink starts the server; with cert it offers STARTTLS (or, implicit,
// speaks TLS from the first byte) and requires it for AUTH.
func newSink(t *testing.T, cert *tls.Certificate, implicit bool) *sink {
	t.Helper()
	s := &sink{password: "s3cret"}
	// go-smtp starts a new session after STARTTLS: connections are counted
	// where they are accepted.
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{s: s, conn: c}, nil
	}))
	srv.Domain = "localhost"
	srv.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	var l net.Listener
	var err error
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	} else {
		srv.AllowInsecureAuth = true
	}
	if implicit {
		l, err = tls.Listen("tcp", "127.0.0.1:0", srv.TLSConfig)
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(countingListener{l, s}) }()
	t.Cleanup(func() { srv.Close() })
	s.addr = l.Addr().String()
	return s
}

type countingListener struct {
	net.Listener
	s *sink
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns++
		l.s.mu.Unlock()
	}
	return c, err
}

func (s *sink) stats() (conns, msgs, encrypted int, auths []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, len(s.msgs), s.tlsMessages, append([]string(nil), s.auths...)
}

func testMessage(i int) *Message {
	return &Message{Tenant: "shop", RequestID: fmt.Sprintf("r-%d", i), To: fmt.Sprintf("c%d@example.com", i), Subject: "Hi",
		Text: "hello", HTML: "<p>hello</p>", RequestedAt: time.Unix(0, 0)}
}

// sendAll sends n messages from workers goroutines.
func sendAll(t *testing.T, s *SMTP, n, workers int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if _, err := s.Send(context.Background(), testMessage(i)); err != nil {
					errs <- err
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestSMTPStartTLSAndAuth(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, tt := range []struct {
		mode     string
		implicit bool
	}{{TLSStartTLS, false}, {TLSOpportunistic, false}, {TLSImplicit, true}} {
		t.Run(tt.mode, func(t *testing.T) {
			srv := newSink(t, &cert, tt.implicit)
			s := NewSMTP(SMTPConfig{Addr: srv.addr, From: "Shop <news@shop.example>", TLS: tt.mode, Username: "mailer", Password: "s3cret",
				TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, PoolSize: 2, Timeout: 5 * time.Second})
			defer s.Close()
			sendAll(t, s, 20, 4)
			conns, msgs, encrypted, auths := srv.stats()
			if msgs != 20 || encrypted != 20 {
				t.Fatalf("%d messages, %d over TLS", msgs, encrypted)
			}
			if conns < 1 || conns > 2 || len(auths) != conns {
				t.Fatalf("%d connections (pool of 2), %d AUTHs", conns, len(auths))
			}
			for _, a := range auths {
				if a != "mailer:s3cret" {
					t.Fatalf("server saw credentials %q", a)
				}
			}
		})
	}
	t.Run("a certificate nobody vouches for is refused", func(t *testing.T) {
		srv := newSink(t, &cert, false)
		s := NewSMTP(SMTPConfig{Addr: srv.addr, From: "news@shop.example", TLS: TLSStartTLS, Timeout: 5 * time.Second})
		defer s.Close()
		if _, err := s.Send(context.Background(), testMessage(1)); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("want a certificate error, got %v", err)
		}
		if _, msgs, _, auths := srv.stats(); msgs != 0 || len(auths) != 0 {
			t.Fatal("nothing may be sent over an unverified connection")
		}
	})
	t.Run("wrong credentials are a permanent failure", func(t *testing.T) {
		srv := newSink(t, &cert, false)
		s := NewSMTP(SMTPConfig{Addr: srv.addr, From: "news@shop.example", TLS: TLSStartTLS, Username: "mailer", Password: "not-the-password-7f3a",
			TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, Timeout: 5 * time.Second})
		defer s.Close()
		_, err := s.Send(context.Background(), testMessage(1))
		if ce := Classify(err); err == nil || !ce.Permanent || ce.Code != "provider_rejected" || !strings.Contains(err.Error(), "AUTH") {
			t.Fatalf("want a permanent AUTH rejection, got %v", err)
		}
		// The error becomes a delivery's reason and a log line.
		if strings.Contains(err.Error(), "not-the-password-7f3a") {
			t.Fatalf("the error shows the password: %v", err)
		}
	})
	t.Run("starttls required but not offered", func(t *testing.T) {
		srv := newSink(t, nil, false)
		s := NewSMTP(SMTPConfig{Addr: srv.addr, From: "news@shop.example", TLS: TLSStartTLS, Timeout: 5 * time.Second})
		defer s.Close()
		_, err := s.Send(context.Background(), testMessage(1))
		if ce := Classify(err); err == nil || !ce.Permanent || ce.Code != "provider_misconfigured" {
			t.Fatalf("want provider_misconfigured, got %v", err)
		}
		if _, msgs, _, _ := srv.stats(); msgs != 0 {
			t.Fatal("sent in the clear although STARTTLS is required")
		}
	})
}

func TestSMTPPoolReusesConnections(t *testing.T) {
	srv := newSink(t, nil, false)
	s := NewSMTP(SMTPConfig{Addr: srv.addr, From: "news@shop.example", TLS: TLSNone, PoolSize: 4, Timeout: 5 * time.Second})
	defer s.Close()
	sendAll(t, s, 50, 1)
	if conns, msgs, _, _ := srv.stats(); msgs != 50 || conns != 1 {
		t.Fatalf("one sender: %d messages over %d connections, want 1", msgs, conns)
	}
	sendAll(t, s, 200, 8)
	if conns, msgs, _, _ := srv.stats(); msgs != 250 || conns > 4 {
		t.Fatalf("eight senders, pool of 4: %d messages over %d connections", msgs, conns)
	}
}

// TestSMTPSetupBoundedBySendContext: a server that accepts the connection
// but never greets holds a send no longer than the send's context allows
// (RETAIN_NOTIFIER_SEND_TIMEOUT), not the longer SMTP timeout. The two are
// far apart (200 ms, a minute) so that a busy machine's delays cannot be
// mistaken for the longer one.
func TestSMTPSetupBoundedBySendContext(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	s := NewSMTP(SMTPConfig{Addr: l.Addr().String(), From: "Shop <news@shop.example>", TLS: TLSNone, PoolSize: 1, Timeout: time.Minute})
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Send(ctx, testMessage(1))
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("the send took %s, past its context's 200ms, towards the SMTP timeout's minute", took.Round(time.Millisecond))
	}
	if ce := Classify(err); err == nil || ce.Permanent || ce.Code != "provider_timeout" {
		t.Fatalf("want a transient provider_timeout failure, got %v (%+v)", err, ce)
	}
}
