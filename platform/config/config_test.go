package config

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

type settings struct {
	addr    *string
	workers *int
	debug   *bool
	timeout *time.Duration
}

func bindAll(fs *flag.FlagSet) settings {
	return settings{
		addr:    String(fs, "grpc-addr", "RETAIN_GRPC_ADDR", ":9090", "gRPC address"),
		workers: Int(fs, "workers", "RETAIN_WORKERS", 4, "worker count"),
		debug:   Bool(fs, "debug", "RETAIN_DEBUG", false, "debug mode"),
		timeout: Duration(fs, "timeout", "RETAIN_TIMEOUT", 5*time.Second, "timeout"),
	}
}

func env(m map[string]string) LookupFunc {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParsePrecedence(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		addr    string
		workers int
		debug   bool
		timeout time.Duration
	}{
		{"defaults", nil, nil, ":9090", 4, false, 5 * time.Second},
		{"environment overrides defaults", nil,
			map[string]string{"RETAIN_GRPC_ADDR": ":1", "RETAIN_WORKERS": "8", "RETAIN_DEBUG": "true", "RETAIN_TIMEOUT": "1m"},
			":1", 8, true, time.Minute},
		{"flags override environment", []string{"-grpc-addr", ":2", "-workers=16", "-debug=false", "-timeout", "2s"},
			map[string]string{"RETAIN_GRPC_ADDR": ":1", "RETAIN_WORKERS": "8", "RETAIN_DEBUG": "true", "RETAIN_TIMEOUT": "1m"},
			":2", 16, false, 2 * time.Second},
		{"bool flag without value", []string{"-debug"}, nil, ":9090", 4, true, 5 * time.Second},
		{"empty environment value is a value", nil, map[string]string{"RETAIN_GRPC_ADDR": ""}, "", 4, false, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("svc", flag.ContinueOnError)
			s := bindAll(fs)
			if err := Parse(fs, tt.args, env(tt.env)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if *s.addr != tt.addr || *s.workers != tt.workers || *s.debug != tt.debug || *s.timeout != tt.timeout {
				t.Errorf("got %q %d %v %s", *s.addr, *s.workers, *s.debug, *s.timeout)
			}
		})
	}
}

func TestParseReportsEveryBadEnvironmentValue(t *testing.T) {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	bindAll(fs)
	err := Parse(fs, nil, env(map[string]string{"RETAIN_WORKERS": "many", "RETAIN_DEBUG": "yes please", "RETAIN_TIMEOUT": "10"}))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("Parse = %v, want 3 problems", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"invalid configuration (3 problems):",
		"RETAIN_DEBUG (-debug): cannot parse environment value",
		"RETAIN_TIMEOUT (-timeout): cannot parse environment value: want a duration",
		"RETAIN_WORKERS (-workers): cannot parse environment value: invalid syntax",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "yes please") || strings.Contains(msg, "many") {
		t.Errorf("error echoes raw values (may be secrets):\n%s", msg)
	}
}

func TestParseFlagErrors(t *testing.T) {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bindAll(fs)
	if err := Parse(fs, []string{"-workers=x"}, env(nil)); err == nil {
		t.Error("bad flag value accepted")
	}
}

func TestVarFormsUseCurrentValueAsDefault(t *testing.T) {
	type cfg struct {
		Addr    string
		Retries int
		Verbose bool
		Wait    time.Duration
	}
	c := cfg{Addr: ":8081", Retries: 3, Verbose: true, Wait: time.Second}
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	StringVar(fs, &c.Addr, "ops-addr", "RETAIN_OPS_ADDR", "ops address")
	IntVar(fs, &c.Retries, "retries", "", "retries")
	BoolVar(fs, &c.Verbose, "verbose", "RETAIN_VERBOSE", "verbose")
	DurationVar(fs, &c.Wait, "wait", "RETAIN_WAIT", "wait")
	if err := Parse(fs, []string{"-retries=5"}, env(map[string]string{"RETAIN_WAIT": "3s"})); err != nil {
		t.Fatal(err)
	}
	want := cfg{Addr: ":8081", Retries: 5, Verbose: true, Wait: 3 * time.Second}
	if c != want {
		t.Errorf("got %+v, want %+v", c, want)
	}

	t.Run("usage names the environment variable", func(t *testing.T) {
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		out := b.String()
		if !strings.Contains(out, "ops address (env RETAIN_OPS_ADDR)") || strings.Contains(out, "panic") {
			t.Errorf("usage:\n%s", out)
		}
	})
}

func TestValidator(t *testing.T) {
	var v Validator
	if v.Err() != nil {
		t.Fatal("empty validator has an error")
	}
	v.Require("RETAIN_DATABASE_URL", " ")
	v.Check(-1 > 0, "RETAIN_BATCH_SIZE", "must be positive, got %d", -1)
	v.OneOf("RETAIN_LOG_FORMAT", "xml", "json", "text")
	v.Require("RETAIN_OK", "x")
	v.Add(nil)
	v.Add(errors.New("nats url and embedded nats are exclusive"))

	var nested Validator
	nested.Addf("RETAIN_GRPC_ADDR", "must be set")
	v.Add(Validate(nested.Err(), nil))

	err := v.Err()
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 5 {
		t.Fatalf("Err = %v, want 5 problems", err)
	}
	want := `invalid configuration (5 problems):
  - nats url and embedded nats are exclusive
  - RETAIN_BATCH_SIZE: must be positive, got -1
  - RETAIN_DATABASE_URL: must be set
  - RETAIN_GRPC_ADDR: must be set
  - RETAIN_LOG_FORMAT: must be one of json, text, got "xml"`
	if err.Error() != want {
		t.Errorf("message:\n%s\nwant:\n%s", err, want)
	}

	t.Run("single problem reads as one line", func(t *testing.T) {
		var v Validator
		v.Require("RETAIN_NATS_URL", "")
		if got := v.Err().Error(); got != "invalid configuration: RETAIN_NATS_URL: must be set" {
			t.Errorf("got %q", got)
		}
	})
	t.Run("Validate of nils is nil", func(t *testing.T) {
		if err := Validate(nil, nil); err != nil {
			t.Errorf("Validate = %v", err)
		}
	})
}

func TestSettingName(t *testing.T) {
	tests := []struct{ env, flag, want string }{
		{"RETAIN_X", "x", "RETAIN_X (-x)"},
		{"", "x", "-x"},
		{"RETAIN_X", "", "RETAIN_X"},
	}
	for _, tt := range tests {
		if got := SettingName(tt.env, tt.flag); got != tt.want {
			t.Errorf("SettingName(%q, %q) = %q, want %q", tt.env, tt.flag, got, tt.want)
		}
	}
}

func TestAddrPort(t *testing.T) {
	for addr, want := range map[string]int{"127.0.0.1:9090": 9090, "notifier:0": 0, "[::1]:70000": 70000} {
		if got, err := AddrPort(addr); err != nil || got != want {
			t.Errorf("AddrPort(%q) = %d, %v; want %d", addr, got, err, want)
		}
	}
	for addr, want := range map[string]string{"8080": "want host:port", "notifier:": "want a numeric port", "notifier:http": "want a numeric port"} {
		if _, err := AddrPort(addr); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("AddrPort(%q): %v, want %q", addr, err, want)
		}
	}
}
