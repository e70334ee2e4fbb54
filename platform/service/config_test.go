package service_test

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/service"
)

// demoSettings is a service's configuration as the services build theirs:
// the shared Config and a setting of its own.
type demoSettings struct {
	service.Config
	BatchSize int
}

func newDemoSettings() *demoSettings {
	s := &demoSettings{Config: service.DefaultConfig("demo")}
	s.Addrs.HTTP = ":8080"
	return s
}

func (s *demoSettings) RegisterFlags(fs *flag.FlagSet) {
	s.Config.RegisterFlags(fs, "RETAIN_DEMO_DATABASE_URL", "the demo database")
	config.IntVar(fs, &s.BatchSize, "batch-size", "RETAIN_DEMO_BATCH_SIZE", "most events in one transaction")
}

func (s *demoSettings) Validate() error {
	var v config.Validator
	v.Add(s.Config.Validate("RETAIN_DEMO_DATABASE_URL"))
	v.Check(s.BatchSize >= 1, config.SettingName("RETAIN_DEMO_BATCH_SIZE", "batch-size"), "must be at least 1, got %d", s.BatchSize)
	return v.Err()
}

// TestParseReportsEveryBadSetting: values that do not parse, settings the
// checks refuse and bad listen addresses come in one report, each naming
// its variable and flag, before anything connects.
func TestParseReportsEveryBadSetting(t *testing.T) {
	s := newDemoSettings()
	_, err := service.Parse("demo", s, []string{"-ops-addr=:99999"}, []string{
		"RETAIN_DUPLICATE_WINDOW=10",
		"RETAIN_STREAM_REPLICAS=three",
		"RETAIN_EVENTS_MAX_AGE=-1h",
		"RETAIN_LOG_LEVEL=loud",
		"RETAIN_GRPC_ADDR=nope",
		"RETAIN_HTTP_ADDR=:http",
		"RETAIN_NATS_URL=ftp://nats:4222",
		"RETAIN_TLS_CERT_FILE=/etc/retain/tls/tls.crt",
		"RETAIN_DEMO_BATCH_SIZE=abc", // does not parse, and its default (0) is refused: reported once
	})
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse = %v, want a *config.ValidationError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		`RETAIN_AUTH_PUBLIC_KEY (-auth-public-key): must be set`,
		`RETAIN_DEMO_BATCH_SIZE (-batch-size): environment value "abc": want a whole number`,
		`RETAIN_DEMO_DATABASE_URL (-database-url): must be set`,
		`RETAIN_DUPLICATE_WINDOW (-duplicate-window): environment value "10": want a duration with its unit`,
		`RETAIN_EVENTS_MAX_AGE (-events-max-age): must not be negative`,
		`RETAIN_GRPC_ADDR (-grpc-addr): want host:port such as :9090, got "nope"`,
		`RETAIN_HTTP_ADDR (-http-addr): want a numeric port in host:port, got ":http"`,
		`RETAIN_LOG_LEVEL (-log-level): must be one of debug, info, warn, error, got "loud"`,
		`RETAIN_NATS_URL (-nats-url): unsupported scheme "ftp" (use nats, tls, ws or wss), got "ftp://nats:4222"`,
		`RETAIN_OPS_ADDR (-ops-addr): want a port of 0-65535`,
		`RETAIN_STREAM_REPLICAS (-stream-replicas): environment value "three": want a whole number`,
		`RETAIN_TLS_CERT_FILE (-tls-cert-file): needs RETAIN_TLS_KEY_FILE (-tls-key-file), the certificate's private key`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "must be at least 1") {
		t.Errorf("the default of a setting that did not parse is reported too:\n%s", msg)
	}
	if strings.Count(msg, "\n  - ") != len(ve.Problems) || len(ve.Problems) != 12 {
		t.Errorf("%d problems, want 12, one a line:\n%s", len(ve.Problems), msg)
	}
}

// TestParseFindsUnknownVariables: a RETAIN_* variable no setting reads is
// returned with the closest known name; the retain command's and the
// tests' variables are not.
func TestParseFindsUnknownVariables(t *testing.T) {
	pub := authtest.Keys(t).Public
	s := newDemoSettings()
	unknown, err := service.Parse("demo", s, nil, []string{
		"RETAIN_AUTH_PUBLIC_KEY=" + pub,
		"RETAIN_DEMO_DATABASE_URL=postgres://x@db/demo",
		"RETAIN_DEMO_BATCH_SIZ=5", // misspelt: the setting keeps its default
		"RETAIN_DEMO_BATCH_SIZE=7",
		"RETAIN_EVENT_MAX_AGE=1h",
		"RETAIN_TOKEN=t", "RETAIN_ADDR=a", "RETAIN_TEST_DATABASE_URL=u", "RETAIN_BENCH_SECONDS=1",
		"OTEL_SERVICE_NAME=x", "PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []config.UnknownVar{
		{Name: "RETAIN_DEMO_BATCH_SIZ", Suggestion: "RETAIN_DEMO_BATCH_SIZE"},
		{Name: "RETAIN_EVENT_MAX_AGE", Suggestion: "RETAIN_EVENTS_MAX_AGE"},
	}
	if !slices.Equal(unknown, want) {
		t.Errorf("unknown = %v, want %v", unknown, want)
	}
	if s.BatchSize != 7 || s.AuthPublicKey != pub {
		t.Errorf("settings not read: %+v", s)
	}
}

// TestParseDatabaseURL: a database URL that does not parse is reported
// with the other settings, before anything connects, naming the variable
// and the form wanted, and its password is not shown.
func TestParseDatabaseURL(t *testing.T) {
	s := newDemoSettings()
	_, err := service.Parse("demo", s, nil, []string{
		"RETAIN_DEMO_DATABASE_URL=postgres://retain:s3cret@db:port/demo",
		"RETAIN_DEMO_BATCH_SIZE=0",
	})
	msg := fmt.Sprint(err)
	for _, want := range []string{
		"RETAIN_DEMO_BATCH_SIZE (-batch-size): must be at least 1",
		"RETAIN_DEMO_DATABASE_URL (-database-url): want a Postgres URL such as postgres://user:password@host:5432/database: ",
		"invalid port",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "s3cret") {
		t.Errorf("report shows the password:\n%s", msg)
	}
}

var _ service.Configurable = (*demoSettings)(nil)
