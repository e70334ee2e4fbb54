package config

import (
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// TestParseReportsEveryBadValue: every value a setting cannot take, from
// the environment or a flag, is reported at once, each naming its variable
// and flag, the value and the form wanted.
func TestParseReportsEveryBadValue(t *testing.T) {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	s := bindAll(fs)
	err := Parse(fs, []string{"-workers=x", "-debug=maybe"}, env(map[string]string{
		"RETAIN_WORKERS": "many", "RETAIN_DEBUG": "yes please", "RETAIN_TIMEOUT": "10", "RETAIN_GRPC_ADDR": "s3cret",
	}))
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("Parse = %v, want 3 problems", err)
	}
	want := `invalid configuration (3 problems):
  - RETAIN_DEBUG (-debug): flag value "maybe": want true or false
  - RETAIN_TIMEOUT (-timeout): environment value "10": want a duration with its unit, such as 500ms, 30s, 5m or 720h
  - RETAIN_WORKERS (-workers): flag value "x": want a whole number such as 500`
	if err.Error() != want {
		t.Errorf("message:\n%s\nwant:\n%s", err, want)
	}
	if *s.workers != 4 || *s.debug {
		t.Errorf("bad values changed the settings: workers %d, debug %v", *s.workers, *s.debug)
	}

	t.Run("out of range", func(t *testing.T) {
		fs := flag.NewFlagSet("svc", flag.ContinueOnError)
		bindAll(fs)
		err := Parse(fs, nil, env(map[string]string{"RETAIN_WORKERS": "99999999999999999999"}))
		if err == nil || !strings.Contains(err.Error(), `RETAIN_WORKERS (-workers): environment value "99999999999999999999": out of range`) {
			t.Errorf("Parse = %v", err)
		}
	})
	t.Run("a long value is cut", func(t *testing.T) {
		fs := flag.NewFlagSet("svc", flag.ContinueOnError)
		bindAll(fs)
		err := Parse(fs, nil, env(map[string]string{"RETAIN_TIMEOUT": strings.Repeat("x", 100)}))
		if err == nil || strings.Contains(err.Error(), strings.Repeat("x", 41)) || !strings.Contains(err.Error(), `..."`[:3]) {
			t.Errorf("Parse = %v", err)
		}
	})
}

func TestParseFlagErrors(t *testing.T) {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	bindAll(fs)
	if err := Parse(fs, []string{"-nosuchflag"}, env(nil)); err == nil || !strings.Contains(err.Error(), "nosuchflag") {
		t.Errorf("unknown flag: %v", err)
	}
	// The collector is gone after Parse: a later Set reports its error.
	if err := fs.Set("workers", "x"); err == nil {
		t.Error("bad value accepted after Parse")
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

	t.Run("the problems of several checks are listed one by one", func(t *testing.T) {
		var a, b Validator
		a.Addf("RETAIN_B", "bad")
		b.Addf("RETAIN_A", "bad")
		want := `invalid configuration (3 problems):
  - not a setting's problem
  - RETAIN_A: bad
  - RETAIN_B: bad`
		if got := Validate(a.Err(), errors.New("not a setting's problem"), b.Err(), nil).Error(); got != want {
			t.Errorf("got:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("Without drops the problems of settings", func(t *testing.T) {
		var v Validator
		v.Addf("RETAIN_A", "does not parse")
		v.Addf("RETAIN_B", "must be positive")
		err := Without(v.Err(), Settings(Validate(errors.New("x"), func() error { var p Validator; p.Addf("RETAIN_A", "x"); return p.Err() }())))
		if err == nil || err.Error() != "invalid configuration: RETAIN_B: must be positive" {
			t.Errorf("Without = %v", err)
		}
		if err := Without(v.Err(), map[string]bool{"RETAIN_A": true, "RETAIN_B": true}); err != nil {
			t.Errorf("Without all = %v", err)
		}
	})
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

func TestUnknownEnv(t *testing.T) {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	bindAll(fs)
	String(fs, "linger", "RETAIN_INGEST_LINGER", "1ms", "linger")
	Int(fs, "max-batch", "RETAIN_INGEST_MAX_BATCH", 1000, "max batch")
	known := EnvNames(fs)
	if want := []string{"RETAIN_DEBUG", "RETAIN_GRPC_ADDR", "RETAIN_INGEST_LINGER", "RETAIN_INGEST_MAX_BATCH", "RETAIN_TIMEOUT", "RETAIN_WORKERS"}; !slices.Equal(known, want) {
		t.Fatalf("EnvNames = %v, want %v", known, want)
	}
	environ := []string{
		"PATH=/bin", "OTEL_SERVICE_NAME=x", "RETAIN_WORKERS=2",
		"RETAIN_INGEST_LINGR=5ms",      // a letter left out
		"RETAIN_INGEST_MAXBATCH=10",    // an underscore left out
		"RETAIN_LINGER=1ms",            // the service prefix left out
		"RETAIN_GRCP_ADDR=:1",          // two letters swapped
		"retain_workers=3",             // not ours: lower case
		"RETAIN_SOMETHING_ELSE=s3cret", // nothing close
		"RETAIN_TOKEN=t", "RETAIN_ADDR=a", "RETAIN_DATABASE_URL=u", "RETAIN_AUTH_PRIVATE_KEY=k",
		"RETAIN_TLS=true", "RETAIN_TLS_CA=ca.crt", "RETAIN_TLS_SERVER_NAME=retain-ingest.retain.svc",
		"RETAIN_TEST_DATABASE_URL=u", "RETAIN_BENCH_SECONDS=5",
		"RETAIN_INGEST_LINGR=again",
	}
	got := UnknownEnv(environ, known)
	want := []UnknownVar{
		{"RETAIN_GRCP_ADDR", "RETAIN_GRPC_ADDR"},
		{"RETAIN_INGEST_LINGR", "RETAIN_INGEST_LINGER"},
		{"RETAIN_INGEST_MAXBATCH", "RETAIN_INGEST_MAX_BATCH"},
		{"RETAIN_LINGER", "RETAIN_INGEST_LINGER"},
		{"RETAIN_SOMETHING_ELSE", ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("UnknownEnv =\n%v\nwant\n%v", got, want)
	}
}

// TestEnv: the variable a flag is bound to, and none for a flag of the
// flag package or one not defined.
func TestEnv(t *testing.T) {
	fs := flag.NewFlagSet("svc", flag.ContinueOnError)
	bindAll(fs)
	fs.Int("plain", 0, "a flag bound to no variable")
	if got := Env(fs.Lookup("workers")); got != "RETAIN_WORKERS" {
		t.Errorf("Env(-workers) = %q, want RETAIN_WORKERS", got)
	}
	if got := Env(fs.Lookup("plain")) + Env(fs.Lookup("missing")); got != "" {
		t.Errorf("Env of an unbound and a missing flag = %q, want none", got)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "ab", 2}, {"LINGER", "LINGR", 1},
		{"GRPC", "GRCP", 1}, {"kitten", "sitting", 3}, {"MAX_BATCH", "MAXBATCH", 1},
	} {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestReadElsewhereCoversTheRepository: every RETAIN_* variable the code
// reads with os.Getenv or os.LookupEnv (not through a setting) is known to
// ReadElsewhere, so no process warns about it.
func TestReadElsewhereCoversTheRepository(t *testing.T) {
	read := regexp.MustCompile(`(?:[Gg]etenv|LookupEnv)\("(RETAIN_[A-Z0-9_]+)"\)`)
	root := filepath.Join("..", "..")
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, m := range read.FindAllStringSubmatch(string(b), -1) {
			if !ReadElsewhere(m[1]) {
				t.Errorf("%s reads %s outside the settings; add it to readElsewhere (or bind it as a setting)", path, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d Go files under %s", files, root)
	}
}
