package pg_test

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

// TestOutageLoggedWhenItStartsAndEnds runs a pass on the database every
// 20 ms through a real outage (connections refused, backends ended): one
// line when it starts, with the error, and one when it ends, with its
// duration and the count of failed passes; a statement that fails while
// the database answers is logged every time.
func TestOutageLoggedWhenItStartsAndEnds(t *testing.T) {
	pool := testenv.MigratedPool(t)
	var logs testenv.SyncBuffer
	o := pg.NewOutageLog(slog.New(slog.NewTextHandler(&logs, nil)), "test pass", pool.Ping)
	ctx := context.Background()
	pass := func(sql string) bool {
		_, err := pool.Exec(ctx, sql)
		return o.Pass(ctx, err, "test pass failed", "pass", "p")
	}
	for range 3 {
		if pass(`SELECT 1/0`) {
			t.Fatal("a division by zero taken for an outage")
		}
	}
	if n := strings.Count(logs.String(), "test pass failed"); n != 3 {
		t.Fatalf("%d lines for 3 failed statements, want 3:\n%s", n, logs.String())
	}

	end := testenv.DatabaseOutage(t, pool)
	outages := 0
	// 1.5 s and dozens of passes, however few a loaded machine fits in.
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline) || outages < 20; time.Sleep(20 * time.Millisecond) {
		if pass(`SELECT 1`) {
			outages++
		}
	}
	end()
	for i := 0; pass(`SELECT 1`); i++ {
		if i > 100 {
			t.Fatal("the database did not come back")
		}
		outages++
		time.Sleep(20 * time.Millisecond)
	}
	out := logs.String()
	if outages < 20 {
		t.Fatalf("%d passes failed for the outage, want dozens:\n%s", outages, out)
	}
	if n := strings.Count(out, "test pass: database unreachable"); n != 1 {
		t.Errorf("%d lines for the start of one outage, want 1:\n%s", n, out)
	}
	if !regexp.MustCompile(`test pass: database unreachable.* pass=p error=.+`).MatchString(out) {
		t.Errorf("the start of the outage does not say the error:\n%s", out)
	}
	if n := strings.Count(out, "test pass failed"); n != 3 {
		t.Errorf("%d lines for failed statements, want the 3 before the outage:\n%s", n, out)
	}
	m := regexp.MustCompile(`level=INFO msg="test pass: database answers again" outage=(\S+) failed_passes=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no line for the end of the outage:\n%s", out)
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d < time.Second {
		t.Errorf("outage lasted %s, want the 1.5 s it did", m[1])
	}
	if n, _ := strconv.Atoi(m[2]); n != outages {
		t.Errorf("the end of the outage counts %s failed passes, want %d", m[2], outages)
	}
}

// TestOutageLogFailed: a caller that decides itself what an outage is
// (ingest's look-up publishes without it whatever the failure) counts
// with Failed and Answered.
func TestOutageLogFailed(t *testing.T) {
	var logs testenv.SyncBuffer
	o := &pg.OutageLog{Log: slog.New(slog.NewTextHandler(&logs, nil)), Down: "look-up failed", Up: "look-up answers again", Count: "failed_lookups"}
	o.Answered()
	for range 5 {
		o.Failed(errors.New("timeout"))
	}
	o.Answered()
	o.Answered()
	out := logs.String()
	if strings.Count(out, "look-up failed") != 1 || strings.Count(out, "answers again") != 1 || !strings.Contains(out, "failed_lookups=5") {
		t.Fatalf("want one line for the start and one for the end counting 5 failures:\n%s", out)
	}
}
