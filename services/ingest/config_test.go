package ingest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/services/ingest"
)

// TestConfigMessages: a bad ingest setting is reported as a bad shared one
// is (the first case), by the check the binary's main runs (service.Parse)
// and by New: variable and flag, the form wanted, the value.
func TestConfigMessages(t *testing.T) {
	pub, _, err := auth.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	valid := []string{"RETAIN_AUTH_PUBLIC_KEY=" + pub, "RETAIN_INGEST_DATABASE_URL=postgres://retain@db/ingest"}
	for _, tc := range []struct{ env, want string }{
		{"RETAIN_HTTP_ADDR=:http", `RETAIN_HTTP_ADDR (-http-addr): want a numeric port in host:port, got ":http"`},
		{"RETAIN_INGEST_MAX_BATCH=5000", "RETAIN_INGEST_MAX_BATCH (-max-batch): must be 1-1000 (the server's limit: the max batch it takes atomically), got 5000"},
		{"RETAIN_INGEST_LINGER=2s", "RETAIN_INGEST_LINGER (-linger): must be 0-1s, such as 1ms, got 2s"},
		{"RETAIN_INGEST_PUBLISHERS=0", "RETAIN_INGEST_PUBLISHERS (-publishers): must be at least 1, got 0"},
		{"RETAIN_INGEST_QUEUE_DEPTH=0", "RETAIN_INGEST_QUEUE_DEPTH (-queue-depth): must be at least 1, got 0"},
		{"RETAIN_INGEST_LOG_RETENTION=0s", "RETAIN_INGEST_LOG_RETENTION (-log-retention): must be positive, such as 720h (the streams' max age), got 0s"},
	} {
		cfg := ingest.DefaultConfig()
		_, err := service.Parse("ingest", &cfg, nil, append(valid, tc.env))
		if want := "invalid configuration: " + tc.want; err == nil || err.Error() != want {
			t.Errorf("%s: Parse = %v\nwant %s", tc.env, err, want)
		}
		// tel is not needed: New reports the configuration before it sets
		// anything up.
		if _, err := ingest.New(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v\nwant it to report %s", tc.env, err, tc.want)
		}
	}
}
