package metrics_test

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/metrics"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// TestConfigCacheBytes reads RETAIN_METRICS_CACHE_BYTES and -cache-bytes,
// keeps the default when unset, accepts 0 and rejects a negative budget
// naming the variable and the flag.
func TestConfigCacheBytes(t *testing.T) {
	parse := func(t *testing.T, env map[string]string, args ...string) metrics.Config {
		t.Helper()
		cfg := metrics.DefaultConfig()
		testenv.ParseSettings(t, cfg.RegisterFlags, env, args...)
		return cfg
	}
	if got := parse(t, nil).CacheBytes; got != store.DefaultCacheBytes {
		t.Errorf("default %d, want %d", got, store.DefaultCacheBytes)
	}
	if got := parse(t, map[string]string{"RETAIN_METRICS_CACHE_BYTES": "0"}).CacheBytes; got != 0 {
		t.Errorf("env 0: got %d", got)
	}
	if got := parse(t, map[string]string{"RETAIN_METRICS_CACHE_BYTES": "0"}, "-cache-bytes", "1048576").CacheBytes; got != 1<<20 {
		t.Errorf("flag over env: got %d", got)
	}
	cfg := parse(t, map[string]string{"RETAIN_METRICS_CACHE_BYTES": "-1"})
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "RETAIN_METRICS_CACHE_BYTES (-cache-bytes): must be 0 or more bytes") || !strings.Contains(err.Error(), "got -1") {
		t.Errorf("a negative budget: %v", err)
	}
	cfg.CacheBytes = 0
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "RETAIN_METRICS_CACHE_BYTES") {
		t.Errorf("a budget of 0 rejected: %v", err)
	}
}

// TestConfigReportsEveryBadSetting: a bad log level is reported with the
// other bad settings by the check the binary's main runs (service.Parse),
// not alone by the telemetry setup that needs it first.
func TestConfigReportsEveryBadSetting(t *testing.T) {
	cfg := metrics.DefaultConfig()
	_, err := service.Parse("metrics", &cfg, nil, []string{"RETAIN_LOG_LEVEL=loud", "RETAIN_METRICS_BATCH_SIZE=-3"})
	for _, want := range []string{"RETAIN_LOG_LEVEL", "RETAIN_AUTH_PUBLIC_KEY", "RETAIN_METRICS_DATABASE_URL", "RETAIN_METRICS_BATCH_SIZE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse with four bad settings: %v; want %s named", err, want)
		}
	}
}

// TestConfigMessages: a bad metrics setting is reported as a bad shared one
// is (the first case), by the check the binary's main runs (service.Parse)
// and by New: variable and flag, the form wanted, the value.
func TestConfigMessages(t *testing.T) {
	pub := authtest.Keys(t).Public
	valid := []string{"RETAIN_AUTH_PUBLIC_KEY=" + pub, "RETAIN_METRICS_DATABASE_URL=postgres://retain@db/metrics"}
	testenv.ConfigMessages(t, valid,
		func(environ []string) (metrics.Config, error) {
			cfg := metrics.DefaultConfig()
			_, err := service.Parse("metrics", &cfg, nil, environ)
			return cfg, err
		},
		func(cfg metrics.Config) error {
			_, err := metrics.New(context.Background(), cfg, nil)
			return err
		},
		[]testenv.ConfigCase{
			{Env: []string{"RETAIN_LOG_FORMAT=xml"}, Want: `RETAIN_LOG_FORMAT (-log-format): must be one of json, text, got "xml"`},
			{Env: []string{"RETAIN_METRICS_BATCH_SIZE=5001"}, Want: "RETAIN_METRICS_BATCH_SIZE (-batch-size): must be 1-5000, got 5001"},
			{Env: []string{"RETAIN_METRICS_CONSUMERS=0"}, Want: "RETAIN_METRICS_CONSUMERS (-consumers): must be 1-64, got 0"},
			{Env: []string{"RETAIN_METRICS_CACHE_BYTES=-1"}, Want: "RETAIN_METRICS_CACHE_BYTES (-cache-bytes): must be 0 or more bytes (0: nothing kept between queries), got -1"},
		}...)
}
