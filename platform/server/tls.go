package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/filewatch"
	"github.com/retainhq/retain/platform/telemetry"
)

// DefaultTLSReloadInterval is how often the certificate files are checked
// for changes. cert-manager renews a certificate well before it expires,
// and the kubelet takes up to a minute to update a mounted Secret: a few
// seconds more change nothing.
const DefaultTLSReloadInterval = 10 * time.Second

// TLSExpiryWarning is how close to its expiry the serving certificate is
// logged at warn level: cert-manager renews at two thirds of a 90-day
// certificate's life (30 days before), so one this close has missed a
// renewal, and two weeks leave time to find out why.
const TLSExpiryWarning = 14 * 24 * time.Hour

// tlsExpiryRepeat is how often a certificate still near its expiry is
// logged again: daily, so the warning stays in any log search window
// without filling the log.
const tlsExpiryRepeat = 24 * time.Hour

// TLSConfig is the certificate the gRPC and public HTTP listeners serve;
// without one they serve plaintext. The ops listener always serves
// plaintext: the kubelet's probes and Prometheus reach it inside the
// cluster, and it carries no token.
type TLSConfig struct {
	// CertFile and KeyFile are the certificate (PEM, the chain after the
	// leaf) and its private key; both or neither. They are read again
	// when they change (a renewed certificate in a mounted Secret).
	CertFile, KeyFile string
	// ReloadInterval is how often the files are checked for changes;
	// zero means DefaultTLSReloadInterval.
	ReloadInterval time.Duration
}

var (
	settingTLSCert = config.SettingName("RETAIN_TLS_CERT_FILE", "tls-cert-file")
	settingTLSKey  = config.SettingName("RETAIN_TLS_KEY_FILE", "tls-key-file")
)

// RegisterFlags binds -tls-cert-file/RETAIN_TLS_CERT_FILE and
// -tls-key-file/RETAIN_TLS_KEY_FILE.
func (c *TLSConfig) RegisterFlags(fs *flag.FlagSet) {
	config.StringVar(fs, &c.CertFile, "tls-cert-file", "RETAIN_TLS_CERT_FILE", "certificate (PEM file) the gRPC and public HTTP APIs serve TLS with, re-read when it changes (default: none, plaintext); needs -tls-key-file")
	config.StringVar(fs, &c.KeyFile, "tls-key-file", "RETAIN_TLS_KEY_FILE", "private key (PEM file) of -tls-cert-file")
}

// Enabled reports whether the listeners serve TLS.
func (c TLSConfig) Enabled() bool { return c.CertFile != "" }

// Validate names a file set without the other, and reads the pair: a file
// that cannot be read, or a key that is not the certificate's, stops the
// start with the other bad settings rather than when the listeners open.
func (c TLSConfig) Validate() error {
	var v config.Validator
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		v.Addf(settingTLSCert, "needs %s, the certificate's private key", settingTLSKey)
	case c.KeyFile != "" && c.CertFile == "":
		v.Addf(settingTLSKey, "needs %s, the certificate of the key", settingTLSCert)
	case c.CertFile != "":
		cert, certErr := os.ReadFile(c.CertFile)
		if certErr != nil {
			v.Addf(settingTLSCert, "%s", config.CannotRead(c.CertFile, certErr, false))
		}
		key, keyErr := os.ReadFile(c.KeyFile)
		if keyErr != nil {
			v.Addf(settingTLSKey, "%s", config.CannotRead(c.KeyFile, keyErr, true))
		}
		if certErr == nil && keyErr == nil {
			if _, err := parseKeyPair(c.CertFile, cert, c.KeyFile, key); err != nil {
				v.Addf(settingTLSCert, "%v", err)
			}
		}
	}
	v.Check(c.ReloadInterval >= 0, "TLS reload interval", "must not be negative, got %s", c.ReloadInterval)
	return v.Err()
}

// parseKeyPair is the pair of PEM files at certPath and keyPath. The
// errors of crypto/tls describe the PEM blocks, never the key.
func parseKeyPair(certPath string, cert []byte, keyPath string, key []byte) (*tls.Certificate, error) {
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("certificate %q with key %q: %w", certPath, keyPath, err)
	}
	return &pair, nil
}

// Certificate is the certificate a server presents, read again when its
// files change. Each TLS handshake takes the pair last read successfully:
// new connections get a renewed certificate at once, open ones keep the
// one they were made with, and a broken file (a half-written Secret) leaves
// the last good pair in use.
type Certificate struct {
	pair *filewatch.Value[*tls.Certificate]
}

// LoadCertificate reads the certificate and key at certFile and keyFile.
// An error names the file and the problem.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	pair, err := filewatch.Load("TLS certificate", readKeyPair, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &Certificate{pair: pair}, nil
}

func readKeyPair(files []filewatch.File) (*tls.Certificate, error) {
	cert, err := os.ReadFile(files[0].Path)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %s", config.CannotRead(files[0].Path, err, false))
	}
	key, err := os.ReadFile(files[1].Path)
	if err != nil {
		return nil, fmt.Errorf("TLS key: %s", config.CannotRead(files[1].Path, err, true))
	}
	return parseKeyPair(files[0].Path, cert, files[1].Path, key)
}

// ServerConfig is the TLS configuration of a listener serving c: TLS 1.2
// or later, the certificate taken at each handshake.
func (c *Certificate) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.pair.Get(), nil
		},
	}
}

// LogAttrs describe the certificate in use, for the log: what it is for,
// its serial number and when it expires.
func (c *Certificate) LogAttrs() []any {
	leaf := c.pair.Get().Leaf
	return []any{"cert_file", c.pair.Paths()[0], "dns_names", leaf.DNSNames, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter}
}

// Watch checks the files every interval (DefaultTLSReloadInterval when
// not positive) until ctx is done, reading a change once it has held for
// one interval (filewatch.Value.Watch), logging each new certificate, and
// a file that cannot be used once until it can. It logs a warning for a
// certificate expiring within TLSExpiryWarning when it is loaded, and
// daily after, and exports its expiry as the gauge
// retain.tls.certificate.expiry on tel's meter provider (tel may be nil:
// no gauge).
func (c *Certificate) Watch(ctx context.Context, interval time.Duration, log *slog.Logger, tel *telemetry.Telemetry) {
	if interval <= 0 {
		interval = DefaultTLSReloadInterval
	}
	if tel != nil && tel.MeterProvider != nil {
		unregister, err := c.observeExpiry(tel.MeterProvider.Meter("github.com/retainhq/retain/platform/server"))
		if err != nil {
			// The certificate serves as well without its gauge.
			log.Error("TLS certificate expiry gauge not registered", "error", err)
		} else {
			defer unregister()
		}
	}
	w := expiryWarner{c: c, log: log}
	w.check()
	c.pair.Watch(ctx, interval, log, filewatch.Logs{
		Reloaded:  "TLS certificate reloaded",
		Failed:    "TLS certificate not reloaded: still serving the last good one",
		Recovered: "TLS certificate files readable again",
		Attrs:     c.LogAttrs,
		Checked:   w.check,
	})
}

// observeExpiry registers the gauge retain.tls.certificate.expiry: the
// serving certificate's NotAfter as Unix seconds, read from the pair in
// use at each collection, so a reload shows at the next scrape. The
// timestamp rather than the seconds left: it is exact whenever it was
// scraped, never drifts between scrapes, and alert rules subtract time()
// themselves (`retain_tls_certificate_expiry_seconds - time() < 14*86400`),
// as they do with other exporters' expiry timestamps.
func (c *Certificate) observeExpiry(m metric.Meter) (unregister func(), err error) {
	gauge, err := m.Int64ObservableGauge("retain.tls.certificate.expiry",
		metric.WithDescription("When the certificate the gRPC and public HTTP APIs serve expires (its NotAfter, as Unix time), by certificate (its subject's common name, else its first DNS name or IP address)."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		leaf := c.pair.Get().Leaf
		o.ObserveInt64(gauge, leaf.NotAfter.Unix(), metric.WithAttributes(attribute.String("certificate", certificateName(leaf))))
		return nil
	}, gauge)
	if err != nil {
		return nil, err
	}
	return func() { _ = reg.Unregister() }, nil
}

// certificateName names a certificate in the gauge: cert-manager leaves
// the common name empty unless asked for one, so the first name the
// certificate is for stands in.
func certificateName(leaf *x509.Certificate) string {
	switch {
	case leaf.Subject.CommonName != "":
		return leaf.Subject.CommonName
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0]
	case len(leaf.IPAddresses) > 0:
		return leaf.IPAddresses[0].String()
	}
	return ""
}

// expiryWarner logs a warning when the certificate in use expires within
// TLSExpiryWarning and is new or was last warned of a day ago: the gauge
// needs an alert rule, the log line reaches whoever reads the log. Watch
// checks at start and after each check of the files.
type expiryWarner struct {
	c        *Certificate
	log      *slog.Logger
	warned   *tls.Certificate
	warnedAt time.Time
}

func (w *expiryWarner) check() {
	pair := w.c.pair.Get()
	now := time.Now()
	left := pair.Leaf.NotAfter.Sub(now)
	if left >= TLSExpiryWarning || (pair == w.warned && now.Sub(w.warnedAt) < tlsExpiryRepeat) {
		return
	}
	w.warned, w.warnedAt = pair, now
	msg := "TLS certificate expires within 14 days: renew it"
	if left <= 0 {
		msg = "TLS certificate has expired: clients refuse it until it is renewed"
	}
	w.log.Warn(msg, append([]any{"expires_in", left.Round(time.Second)}, w.c.LogAttrs()...)...)
}

// ClientTLS is how a client connects to a Retain gRPC API: in plaintext,
// or over TLS verifying the server's certificate. The `retain` command and
// the campaign service's notifier client share it.
type ClientTLS struct {
	// Enabled asks for TLS with the system's roots; CAFile and ServerName
	// imply it.
	Enabled bool
	// CAFile holds the CA certificate(s) (PEM) that verify the server
	// instead of the system's roots.
	CAFile string
	// ServerName is the name the server's certificate must be for, when
	// it is not the host dialled: a port-forward reaches
	// retain-ingest.retain.svc's certificate at 127.0.0.1.
	ServerName string
}

// On reports whether the client uses TLS.
func (c ClientTLS) On() bool { return c.Enabled || c.CAFile != "" || c.ServerName != "" }

// TransportCredentials are the gRPC credentials of c: plaintext ones when
// TLS is off. A CA file that cannot be read or holds no certificate is an
// error naming its path; the caller names the setting.
func (c ClientTLS) TransportCredentials() (credentials.TransportCredentials, error) {
	if !c.On() {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, errors.New(config.CannotRead(c.CAFile, err, false))
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%q holds no PEM certificate: want the CA certificate(s) that signed the server's", c.CAFile)
		}
	}
	return credentials.NewTLS(cfg), nil
}
