package app_test

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/notifier/internal/app"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestLoopsLogAnOutageOnce: the sender and the timers, polling every
// 20 ms through a real database outage (connections refused, backends
// ended), each log it when it starts and when it ends, not once a retry.
func TestLoopsLogAnOutageOnce(t *testing.T) {
	pool := testenv.MigratedPool(t, store.Migrations)
	var logs testenv.SyncBuffer
	e, err := app.New(pool, app.Config{Lease: 30 * time.Second, SendTimeout: 5 * time.Second, MaxAttempts: 3,
		RetryInitial: time.Second, RetryMax: time.Minute, SendBatch: 50, SendWorkers: 2, PollInterval: 20 * time.Millisecond},
		nil, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	time.Sleep(200 * time.Millisecond) // a few passes that find nothing to do
	end := testenv.DatabaseOutage(t, pool)
	time.Sleep(3 * time.Second) // retries with backoff: 100 ms, 200 ms, ... 1.6 s
	end()
	logs.WaitFor(t, "notifier sender pass: database answers again", "notifier timers pass: database answers again")
	out := logs.String()
	for what, want := range map[string]int{
		"notifier sender pass: database unreachable": 1, "notifier sender pass: database answers again": 1,
		"notifier timers pass: database unreachable": 1, "notifier timers pass: database answers again": 1,
		"pass failed": 0,
	} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines %q for one outage, want %d:\n%s", n, what, want, out)
		}
	}
	if !regexp.MustCompile(`msg="notifier sender pass: database unreachable.*" retry_in=\S+ error=.+`).MatchString(out) {
		t.Errorf("the start of the outage does not say the error:\n%s", out)
	}
	if !regexp.MustCompile(`msg="notifier sender pass: database answers again" outage=\S+ failed_passes=[2-9]`).MatchString(out) {
		t.Errorf("the end of the outage does not count the failed passes:\n%s", out)
	}
}
