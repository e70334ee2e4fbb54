package churnsignal_test

import (
	"context"
	"testing"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/churnsignal"
)

// TestConfigMessages: a bad churn-signal setting is reported as a bad
// shared one is (the first case), by the check the binary's main runs
// (service.Parse) and by New: variable and flag, the form wanted, the
// value.
func TestConfigMessages(t *testing.T) {
	pub := authtest.Keys(t).Public
	valid := []string{"RETAIN_AUTH_PUBLIC_KEY=" + pub, "RETAIN_CHURN_DATABASE_URL=postgres://retain@db/churn"}
	testenv.ConfigMessages(t, valid,
		func(environ []string) (churnsignal.Config, error) {
			cfg := churnsignal.DefaultConfig()
			_, err := service.Parse("churnsignal", &cfg, nil, environ)
			return cfg, err
		},
		func(cfg churnsignal.Config) error {
			_, err := churnsignal.New(context.Background(), cfg, nil)
			return err
		},
		[]testenv.ConfigCase{
			{Env: []string{"RETAIN_STREAM_REPLICAS=7"}, Want: "RETAIN_STREAM_REPLICAS (-stream-replicas): must be 1-5, got 7"},
			{Env: []string{"RETAIN_CHURN_RESCORE_INTERVAL=-1h"}, Want: "RETAIN_CHURN_RESCORE_INTERVAL (-rescore-interval): must not be negative (0: never on a schedule), got -1h0m0s"},
			{Env: []string{"RETAIN_CHURN_REFIT_INTERVAL=0s"}, Want: "RETAIN_CHURN_REFIT_INTERVAL (-refit-interval): must be positive, such as 24h, got 0s"},
			{Env: []string{"RETAIN_CHURN_REFIT_GROWTH_PERCENT=0"}, Want: "RETAIN_CHURN_REFIT_GROWTH_PERCENT (-refit-growth-percent): must be 1-1000, got 0"},
			{Env: []string{"RETAIN_CHURN_REFIT_MIN_GAP=0s"}, Want: "RETAIN_CHURN_REFIT_MIN_GAP (-refit-min-gap): must be 1s or more, such as 5m, got 0s"},
			{Env: []string{"RETAIN_CHURN_MAX_LAG=500ms"}, Want: "RETAIN_CHURN_MAX_LAG (-max-lag): must be 1s or more, such as 1m, got 500ms"},
			{Env: []string{"RETAIN_CHURN_HORIZON_WEEKS=521"}, Want: "RETAIN_CHURN_HORIZON_WEEKS (-horizon-weeks): must be 1-520, got 521"},
			{Env: []string{"RETAIN_CHURN_BATCH_SIZE=0"}, Want: "RETAIN_CHURN_BATCH_SIZE (-batch-size): must be 1-10000, got 0"},
			{Env: []string{"RETAIN_CHURN_RESCORE_CHUNK=100001"}, Want: "RETAIN_CHURN_RESCORE_CHUNK (-rescore-chunk): must be 1-100000, got 100001"},
			{Env: []string{"RETAIN_CHURN_RESCORE_WORKERS=65"}, Want: "RETAIN_CHURN_RESCORE_WORKERS (-rescore-workers): must be 1-64, got 65"},
		}...)
}
