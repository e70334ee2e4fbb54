package ingest_test

import (
	"context"
	"testing"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/ingest"
)

// TestConfigMessages: a bad ingest setting is reported as a bad shared one
// is (the first case), by the check the binary's main runs (service.Parse)
// and by New: variable and flag, the form wanted, the value.
func TestConfigMessages(t *testing.T) {
	pub := authtest.Keys(t).Public
	valid := []string{"RETAIN_AUTH_PUBLIC_KEY=" + pub, "RETAIN_INGEST_DATABASE_URL=postgres://retain@db/ingest"}
	testenv.ConfigMessages(t, valid,
		func(environ []string) (ingest.Config, error) {
			cfg := ingest.DefaultConfig()
			_, err := service.Parse("ingest", &cfg, nil, environ)
			return cfg, err
		},
		func(cfg ingest.Config) error {
			_, err := ingest.New(context.Background(), cfg, nil)
			return err
		},
		[]testenv.ConfigCase{
			{Env: []string{"RETAIN_HTTP_ADDR=:http"}, Want: `RETAIN_HTTP_ADDR (-http-addr): want a numeric port in host:port, got ":http"`},
			{Env: []string{"RETAIN_INGEST_MAX_BATCH=5000"}, Want: "RETAIN_INGEST_MAX_BATCH (-max-batch): must be 1-1000 (the server's limit: the max batch it takes atomically), got 5000"},
			{Env: []string{"RETAIN_INGEST_LINGER=2s"}, Want: "RETAIN_INGEST_LINGER (-linger): must be 0-1s, such as 1ms, got 2s"},
			{Env: []string{"RETAIN_INGEST_PUBLISHERS=0"}, Want: "RETAIN_INGEST_PUBLISHERS (-publishers): must be at least 1, got 0"},
			{Env: []string{"RETAIN_INGEST_QUEUE_DEPTH=0"}, Want: "RETAIN_INGEST_QUEUE_DEPTH (-queue-depth): must be at least 1, got 0"},
			{Env: []string{"RETAIN_INGEST_LOG_RETENTION=0s"}, Want: "RETAIN_INGEST_LOG_RETENTION (-log-retention): must be positive, such as 720h (the streams' max age), got 0s"},
			{Env: []string{"RETAIN_INGEST_MAX_EVENT_BYTES=100"}, Want: "RETAIN_INGEST_MAX_EVENT_BYTES (-max-event-bytes): must be 1024-67108864 bytes (NATS takes at most 64 MiB in one message), such as 524288, got 100"},
		}...)
}
