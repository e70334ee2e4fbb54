package service

import (
	"context"
	"strings"
	"testing"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

// TestSessionNameTellsPodsApart: as Postgres shows it, a service's
// session name keeps the service and the end of its pod's name, the part
// that differs between replicas, however long the release makes the pod
// names.
func TestSessionNameTellsPodsApart(t *testing.T) {
	url := testenv.Postgres(t)
	ctx := context.Background()
	long := "retain-production-eu-west-1-churnsignal-7f9c8d6b5d-x2k9p"
	for _, tc := range []struct{ service, host, want string }{
		{"metrics", "retain-metrics-6d4cf56db6-abcde", "retain-metrics@retain-metrics-6d4cf56db6-abcde"},
		{"churnsignal", long, "retain-churnsignal@" + long[len(long)-44:]},
		{"churnsignal", "", "retain-churnsignal@"},
	} {
		pool, err := pg.Connect(ctx, url, 1, sessionName(tc.service, tc.host))
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = pool.QueryRow(ctx, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&got)
		pool.Close()
		if err != nil || got != tc.want {
			t.Errorf("session of %s on %q: application_name %q %v, want %q", tc.service, tc.host, got, err, tc.want)
		}
		if tc.host != "" && !strings.HasSuffix(got, "-"+tc.host[len(tc.host)-5:]) {
			t.Errorf("session of %s on %q: %q lost the pod's suffix", tc.service, tc.host, got)
		}
	}
}
