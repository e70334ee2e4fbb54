package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

func setup(t *testing.T, cfg Config) (*Telemetry, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	if cfg.Output == nil {
		cfg.Output = &buf
	}
	tel, err := Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() {
		if err := tel.Shutdown(context.Background()); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return tel, &buf
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings; empty means valid
	}{
		{"minimal", Config{Service: "ingest"}, nil},
		{"full", Config{Service: "ingest", Version: "1.2.3", LogLevel: "debug", LogFormat: "text"}, nil},
		{"level case-insensitive", Config{Service: "ingest", LogLevel: "WARN"}, nil},
		{"missing service", Config{}, []string{"service name: must be set"}},
		{"bad level and format reported together", Config{Service: "x", LogLevel: "verbose", LogFormat: "xml"},
			[]string{"RETAIN_LOG_LEVEL (-log-level): must be one of debug, info, warn, error", "RETAIN_LOG_FORMAT (-log-format): must be one of json, text"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("Setup refuses an invalid config", func(t *testing.T) {
		if _, err := Setup(context.Background(), Config{Service: "x", LogLevel: "loud", Output: io.Discard}); err == nil {
			t.Fatal("Setup accepted an invalid level")
		}
	})
}

func TestLogsCarryTraceIDs(t *testing.T) {
	tel, buf := setup(t, Config{Service: "ingest", Version: "test"})

	ctx, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "publish")
	tel.Logger.InfoContext(ctx, "inside span", "n", 1)
	span.End()
	tel.Logger.InfoContext(context.Background(), "outside span")
	tel.Logger.DebugContext(ctx, "below level")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 log lines, got %d:\n%s", len(lines), buf)
	}
	var inside, outside map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &inside); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &outside); err != nil {
		t.Fatal(err)
	}

	sc := span.SpanContext()
	if !sc.IsValid() || !sc.IsSampled() {
		t.Fatalf("span is not a real sampled span: %v", sc)
	}
	if inside["trace_id"] != sc.TraceID().String() || inside["span_id"] != sc.SpanID().String() {
		t.Errorf("inside span: trace_id=%v span_id=%v, want %s/%s", inside["trace_id"], inside["span_id"], sc.TraceID(), sc.SpanID())
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("log outside a span has a trace_id: %s", lines[1])
	}

	t.Run("text format carries them too", func(t *testing.T) {
		tel, buf := setup(t, Config{Service: "ingest", LogFormat: "text"})
		ctx, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "op")
		defer span.End()
		tel.Logger.With("k", "v").InfoContext(ctx, "hello")
		if !strings.Contains(buf.String(), "trace_id="+span.SpanContext().TraceID().String()) {
			t.Errorf("text log lacks trace_id: %s", buf)
		}
	})
}

func TestMetricsHandlerServesMeterProviderInstruments(t *testing.T) {
	tel, _ := setup(t, Config{Service: "ingest", Version: "test"})

	counter, err := tel.MeterProvider.Meter("retain/test").Int64Counter("retain_test_events_accepted",
		metric.WithDescription("events accepted in the test"))
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(context.Background(), 3)

	rec := httptest.NewRecorder()
	tel.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	for _, want := range []string{
		"retain_test_events_accepted_total",
		"go_goroutines",
		"process_cpu_seconds_total",
		`service_name="ingest"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	var sample string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "retain_test_events_accepted_total{") {
			sample = line
		}
	}
	if !strings.HasSuffix(sample, " 3") {
		t.Errorf("counter sample = %q, want value 3", sample)
	}

	t.Run("each Telemetry has its own registry", func(t *testing.T) {
		other, _ := setup(t, Config{Service: "metrics"})
		rec := httptest.NewRecorder()
		other.MetricsHandler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if strings.Contains(rec.Body.String(), "retain_test_events_accepted") {
			t.Error("a second Telemetry sees the first one's instruments")
		}
	})
}

func TestOTLPExporterIsOptIn(t *testing.T) {
	t.Run("endpoint set builds an exporting provider", func(t *testing.T) {
		// Nothing listens there: exporter creation does not dial, and no span
		// is ended, so shutdown has nothing to send.
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
		tel, buf := setup(t, Config{Service: "ingest"})
		if !strings.Contains(buf.String(), "exporting traces over OTLP") {
			t.Errorf("no notice of the exporter in logs: %s", buf)
		}
		if _, ok := tel.TracerProvider.(trace.TracerProvider); !ok {
			t.Fatal("no tracer provider")
		}
	})
	t.Run("no endpoint exports nothing but still records spans", func(t *testing.T) {
		t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
		tel, buf := setup(t, Config{Service: "ingest"})
		_, span := tel.TracerProvider.Tracer("t").Start(context.Background(), "op")
		defer span.End()
		if !span.IsRecording() {
			t.Error("span is not recording")
		}
		if strings.Contains(buf.String(), "OTLP") {
			t.Errorf("exporter configured without an endpoint: %s", buf)
		}
	})
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "info", "warn", "error", "", "INFO"} {
		if _, err := ParseLevel(s); err != nil {
			t.Errorf("ParseLevel(%q) = %v", s, err)
		}
	}
	if _, err := ParseLevel("trace"); err == nil {
		t.Error("ParseLevel accepted trace")
	}
}

// durationValuer is a LogValuer whose value is a duration, as a type
// logging its own elapsed time would be.
type durationValuer time.Duration

func (d durationValuer) LogValue() slog.Value { return slog.DurationValue(time.Duration(d)) }

// TestDurationsReadable: a duration is logged as Go writes it ("6.4s"), in
// both formats, wherever the attribute comes from, and reads back with
// time.ParseDuration; JSON does not get nanoseconds.
func TestDurationsReadable(t *testing.T) {
	log := func(l *slog.Logger) {
		l.With("held_for", 15031*time.Millisecond).WithGroup("g").Info("durations",
			"retry_in", 6400*time.Millisecond, slog.Duration("outage", 16009*time.Millisecond),
			"failing_for", durationValuer(2*time.Minute), "count", 3)
	}
	want := map[string]string{"held_for": "15.031s", "retry_in": "6.4s", "outage": "16.009s", "failing_for": "2m0s"}

	tel, buf := setup(t, Config{Service: "ingest"})
	log(tel.Logger)
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf)
	}
	group, _ := line["g"].(map[string]any)
	for k, w := range want {
		v, ok := line[k]
		if !ok {
			v = group[k]
		}
		if v != w {
			t.Errorf("JSON %s = %#v, want %q: %s", k, v, w, buf)
		}
		if s, _ := v.(string); s != "" {
			if _, err := time.ParseDuration(s); err != nil {
				t.Errorf("JSON %s = %q does not parse back: %v", k, s, err)
			}
		}
	}
	if group["count"] != 3.0 {
		t.Errorf("a number is no longer a number: %s", buf)
	}

	tel, buf = setup(t, Config{Service: "ingest", LogFormat: FormatText})
	log(tel.Logger)
	for _, w := range []string{"held_for=15.031s", "g.retry_in=6.4s", "g.outage=16.009s", "g.failing_for=2m0s", "g.count=3"} {
		if !strings.Contains(buf.String(), " "+w) {
			t.Errorf("text log lacks %q: %s", w, buf)
		}
	}
}
