package app_test

import (
	"context"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
	"github.com/retainhq/retain/services/campaign/internal/app"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestSchedulerLogsAnOutageOnce: the timer and audience passes, ticking
// every 20 ms through a real database outage (connections refused,
// backends ended), each log it when it starts and when it ends, not once a
// tick (the timer pass alone wrote a line a second in production).
func TestSchedulerLogsAnOutageOnce(t *testing.T) {
	pool := testenv.MigratedPool(t, store.Migrations)
	var logs testenv.SyncBuffer
	e := app.New(pool, app.Config{TimerInterval: 20 * time.Millisecond, AudienceInterval: 20 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	time.Sleep(200 * time.Millisecond) // passes that find nothing due
	end := testenv.DatabaseOutage(t, pool)
	time.Sleep(2 * time.Second) // dozens of ticks
	end()
	logs.WaitFor(t, "timer pass: database answers again", "audience pass: database answers again")
	out := logs.String()
	for what, want := range map[string]int{
		"timer pass: database unreachable": 1, "timer pass: database answers again": 1,
		"audience pass: database unreachable": 1, "audience pass: database answers again": 1,
		"pass failed": 0,
	} {
		if n := strings.Count(out, what); n != want {
			t.Errorf("%d lines %q for one outage, want %d:\n%s", n, what, want, out)
		}
	}
	if !regexp.MustCompile(`msg="timer pass: database unreachable.*" error=.+`).MatchString(out) {
		t.Errorf("the start of the outage does not say the error:\n%s", out)
	}
	m := regexp.MustCompile(`msg="timer pass: database answers again" outage=(\S+) failed_passes=(\d+)`).FindStringSubmatch(out)
	if m == nil || len(m[2]) < 2 {
		t.Errorf("the end of the outage does not count dozens of failed passes:\n%s", out)
	}
}
