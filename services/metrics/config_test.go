package metrics_test

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/metrics"
	"github.com/retainhq/retain/services/metrics/internal/store"
)

// TestCacheBytesSetting reads RETAIN_METRICS_CACHE_BYTES and -cache-bytes,
// keeps the default when unset, accepts 0 and rejects a negative budget
// naming the variable.
func TestCacheBytesSetting(t *testing.T) {
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
	if err == nil || !strings.Contains(err.Error(), "RETAIN_METRICS_CACHE_BYTES -1") {
		t.Errorf("a negative budget: %v", err)
	}
	cfg.CacheBytes = 0
	if err := cfg.Validate(); err != nil && strings.Contains(err.Error(), "RETAIN_METRICS_CACHE_BYTES") {
		t.Errorf("a budget of 0 rejected: %v", err)
	}
}

// TestRunReportsEveryBadSetting: a bad log level is reported with the
// other bad settings, not alone by the telemetry setup that needs it first.
func TestRunReportsEveryBadSetting(t *testing.T) {
	cfg := metrics.DefaultConfig()
	testenv.ParseSettings(t, cfg.RegisterFlags, map[string]string{
		"RETAIN_LOG_LEVEL": "loud", "RETAIN_METRICS_BATCH_SIZE": "-3",
	})
	cfg.AuthPublicKey, cfg.DatabaseURL = "", ""
	err := metrics.Run(context.Background(), cfg, "test")
	for _, want := range []string{"RETAIN_LOG_LEVEL", "RETAIN_AUTH_PUBLIC_KEY", "RETAIN_METRICS_DATABASE_URL", "RETAIN_METRICS_BATCH_SIZE"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Run with four bad settings: %v; want %s named", err, want)
		}
	}
}
