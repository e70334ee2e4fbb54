package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	metricsv1 "github.com/retainhq/retain/proto/gen/go/retain/metrics/v1"
)

// halfRebuilt starts a rebuild of "shop" as an admin caller and returns,
// with the call still waiting, once the shop's orders are partial (the
// reset went through, the replay has not). stop stops waiting (as Ctrl-C
// or a deadline does) and returns the call's error.
func halfRebuilt(t *testing.T, s *stack, orders int) (stop func() error) {
	t.Helper()
	admin := s.client(t, "shop", auth.ScopeAdmin)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds)
		done <- err
	}()
	stop = func() error {
		cancel()
		return <-done
	}
	pool := s.pool(t)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		var n int
		if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE tenant = 'shop'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 && n < orders/2 {
			return stop
		}
		select {
		case err := <-done:
			t.Fatalf("the rebuild ended (%v) before it was seen half-way: make it longer", err)
		default:
		}
		if time.Now().After(deadline) {
			_ = stop()
			t.Fatalf("the rebuild was not seen half-way in 30s (%d of %d orders)", n, orders)
		}
	}
}

// rebuildableShop is a service replaying one event a batch (so that a
// rebuild lasts long enough to be seen half-way) with "shop"'s events
// applied, its figure queries and their answers before any rebuild.
func rebuildableShop(t *testing.T) (*stack, *shop, []query, []figure) {
	t.Helper()
	s := setupWith(t, &stack{batchSize: 1})
	sh := newShop(5, 300, shopStart, shopDays)
	s.publish(t, "shop", sh.events)
	s.caughtUp(t)
	qs := figureQueries(shopStart, shopEnd)
	return s, sh, qs, figures(t, s.client(t, "shop"), qs)
}

// rebuildingRefused checks that a query of a tenant half-way through a
// rebuild says so instead of answering with the partial rows.
func rebuildingRefused(t *testing.T, s *stack, qs []query) {
	t.Helper()
	for _, q := range qs {
		_, err := q.call(context.Background(), s.client(t, "shop"))
		st, _ := status.FromError(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "being rebuilt") {
			t.Fatalf("%s half-way through a rebuild: %v, want UNAVAILABLE saying the figures are being rebuilt", q.name, err)
		}
	}
}

// wholeAgain waits until the shop's figures answer again (a rebuild
// finished) and compares them with want.
func wholeAgain(t *testing.T, s *stack, qs []query, want []figure) {
	t.Helper()
	c := s.client(t, "shop")
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := qs[0].call(context.Background(), c)
		if status.Code(err) != codes.Unavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the figures still answer %v after 90s", err)
		}
	}
	sameFigures(t, "after the rebuild", figures(t, c, qs), want)
	if n := count(t, s, `SELECT count(*) FROM tenant_rebuilds WHERE started_at IS NOT NULL`); n != 0 {
		t.Fatalf("%d tenants still marked as being rebuilt, want none", n)
	}
}

// TestRebuildOutlivesItsCaller: the caller of a rebuild goes away half-way
// (Ctrl-C). The rebuild ran on the call's context and stopped there,
// leaving the shop with a part of its orders for good, and the queries
// answered with them as if the shop had sold less. It is the service's
// now: it completes, and until then queries say the figures are being
// rebuilt.
func TestRebuildOutlivesItsCaller(t *testing.T) {
	s, sh, qs, before := rebuildableShop(t)

	stop := halfRebuilt(t, s, len(sh.orders))
	if err := stop(); status.Code(err) != codes.Canceled {
		t.Fatalf("the abandoned call ended with %v, want CANCELED", err)
	}
	rebuildingRefused(t, s, qs)
	wholeAgain(t, s, qs, before)

	// Two callers at once: the second joins the first's rebuild (or runs
	// its own after it), never refused.
	admin := s.client(t, "shop", auth.ScopeAdmin)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() {
		_, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds)
		first <- err
	}()
	resp, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds)
	if err != nil || resp.GetEventsReplayed() != int64(len(sh.events)) {
		t.Fatalf("rebuild asked twice: %s, %v; want %d events replayed", dump(resp), err, len(sh.events))
	}
	t.Logf("a rebuild of %d events took %s", resp.GetEventsReplayed(), resp.GetFinishedAt().AsTime().Sub(resp.GetStartedAt().AsTime()))
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	sameFigures(t, "after two rebuilds asked at once", figures(t, s.client(t, "shop"), qs), before)
}

// TestRebuildResumesAfterARestart: the service stops half-way through a
// rebuild (a deploy, a crash). The next process finds the tenant marked
// and runs the rebuild again; queries say the figures are being rebuilt
// until it is done, never answer with the partial rows.
func TestRebuildResumesAfterARestart(t *testing.T) {
	s, sh, qs, before := rebuildableShop(t)

	// The caller goes first: the host's graceful stop would wait for its
	// call, and so for the end of the rebuild.
	stop := halfRebuilt(t, s, len(sh.orders))
	if err := stop(); err == nil {
		t.Fatal("the abandoned rebuild call succeeded")
	}
	s.stop()
	if n := count(t, s, `SELECT count(*) FROM orders WHERE tenant = 'shop'`); n >= len(sh.orders) {
		t.Fatalf("the rebuild finished (%d orders) before the service stopped: make it longer", n)
	}
	if n := count(t, s, `SELECT count(*) FROM tenant_rebuilds WHERE tenant = 'shop' AND started_at IS NOT NULL`); n != 1 {
		t.Fatal("the shop's partial figures are not marked as being rebuilt after the stop")
	}
	s.start(t)
	rebuildingRefused(t, s, qs[:1])
	wholeAgain(t, s, qs, before)
}

// TestRebuildElsewhereIsNamed: a second process asked to rebuild a tenant
// whose rebuild another process runs says so, rather than start another
// one over it.
func TestRebuildElsewhereIsNamed(t *testing.T) {
	s, sh, qs, before := rebuildableShop(t)

	first := s.conn
	stop := halfRebuilt(t, s, len(sh.orders))
	s.start(t) // a second replica; s.conn is now its
	if first == s.conn {
		t.Fatal("no second replica")
	}
	admin := s.client(t, "shop", auth.ScopeAdmin)
	_, err := admin.Rebuild(context.Background(), &metricsv1.RebuildRequest{}, admin.creds)
	if st, _ := status.FromError(err); st.Code() != codes.Aborted || !strings.Contains(st.Message(), "another process") || !strings.Contains(st.Message(), "pid ") {
		t.Fatalf("rebuild asked of a second replica: %v, want ABORTED naming the other process", err)
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
		t.Fatal(err)
	}
	wholeAgain(t, s, qs, before)
}

// rebuildStatus asks the service where the shop's rebuild stands, as an
// admin caller.
func rebuildStatus(t *testing.T, s *stack) *metricsv1.GetRebuildResponse {
	t.Helper()
	admin := s.client(t, "shop", auth.ScopeAdmin)
	st, err := admin.GetRebuild(context.Background(), &metricsv1.GetRebuildRequest{}, admin.creds)
	if err != nil {
		t.Fatalf("GetRebuild: %v", err)
	}
	return st
}

// TestRebuildStatus: ops can tell where a tenant's rebuild stands, from
// any replica: none yet, running (in which process, how far), cut short
// by its process stopping (marked, nobody holding its lock), and done,
// with the last rebuild's counts. There was no way to ask.
func TestRebuildStatus(t *testing.T) {
	s, sh, qs, before := rebuildableShop(t)
	events := int64(len(sh.events))

	reader := s.client(t, "shop")
	if _, err := reader.GetRebuild(context.Background(), &metricsv1.GetRebuildRequest{}, reader.creds); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("GetRebuild with a read token: %v, want PERMISSION_DENIED (it names the service's sessions)", err)
	}
	if st := rebuildStatus(t, s); st.GetState() != metricsv1.RebuildState_REBUILD_STATE_NONE || st.GetStartedAt() != nil || st.GetFinishedAt() != nil || st.GetProcess() != nil {
		t.Fatalf("before any rebuild: %s, want NONE and nothing else", dump(st))
	}

	// A second replica, whose start has looked for unfinished rebuilds
	// (and run the one of "idle"), so that it runs none until its next
	// look, 30 s later: the first replica's, when it stops half-way,
	// stays interrupted meanwhile.
	first, stopFirst := s.conn, s.stop
	if _, err := s.pool(t).Exec(context.Background(), `INSERT INTO tenant_rebuilds (tenant, started_at) VALUES ('idle', now())`); err != nil {
		t.Fatal(err)
	}
	s.start(t)
	second := s.conn
	for deadline := time.Now().Add(20 * time.Second); count(t, s, `SELECT count(*) FROM tenant_rebuilds WHERE started_at IS NOT NULL`) != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the second replica did not run the rebuild left unfinished at its start")
		}
	}

	s.conn = first
	stopCaller := halfRebuilt(t, s, len(sh.orders))
	running := rebuildStatus(t, s)
	p := running.GetProcess()
	if running.GetState() != metricsv1.RebuildState_REBUILD_STATE_RUNNING || p.GetPid() == 0 || p.GetConnectedAt() == nil ||
		running.GetPartialSince() == nil || running.GetStartedAt() == nil || running.GetProgressAt() == nil || running.GetLastError() != "" {
		t.Fatalf("half-way: %s, want RUNNING naming its process, partial since and started", dump(running))
	}
	if r := running.GetEventsReplayed(); r == 0 || r >= events || running.EventsPending == nil || r+running.GetEventsPending() != events {
		t.Fatalf("half-way: %d replayed, %d pending; want part of the %d events, adding up to them", r, running.GetEventsPending(), events)
	}
	later := rebuildStatus(t, s)
	if later.GetEventsReplayed() < running.GetEventsReplayed() || later.GetStartedAt().AsTime() != running.GetStartedAt().AsTime() {
		t.Fatalf("progress went back: %s after %s", dump(later), dump(running))
	}

	// The second replica answers alike, and its refusal to run another
	// rebuild names the same process.
	s.conn = second
	if st := rebuildStatus(t, s); st.GetState() != metricsv1.RebuildState_REBUILD_STATE_RUNNING || st.GetProcess().GetPid() != p.GetPid() {
		t.Fatalf("asked of a second replica: %s, want RUNNING in pid %d", dump(st), p.GetPid())
	}
	admin := s.client(t, "shop", auth.ScopeAdmin)
	_, err := admin.Rebuild(context.Background(), &metricsv1.RebuildRequest{}, admin.creds)
	if st, _ := status.FromError(err); st.Code() != codes.Aborted || !strings.Contains(st.Message(), fmt.Sprintf("pid %d (", p.GetPid())) {
		t.Fatalf("rebuild asked of a second replica: %v, want ABORTED naming pid %d", err, p.GetPid())
	}

	// The first replica stops half-way: its lock goes with it, the
	// tenant stays marked.
	_ = stopCaller()
	stopFirst()
	cut := rebuildStatus(t, s)
	if cut.GetState() != metricsv1.RebuildState_REBUILD_STATE_INTERRUPTED || cut.GetProcess() != nil || cut.GetLastError() != "" ||
		cut.GetPartialSince().AsTime() != running.GetPartialSince().AsTime() || cut.GetEventsReplayed() < later.GetEventsReplayed() || cut.GetEventsReplayed() >= events {
		t.Fatalf("after the running replica stopped: %s, want INTERRUPTED, partial since %v, the attempt's counts", dump(cut), running.GetPartialSince().AsTime())
	}

	resp, err := admin.Rebuild(context.Background(), &metricsv1.RebuildRequest{}, admin.creds)
	if err != nil {
		t.Fatal(err)
	}
	done := rebuildStatus(t, s)
	if done.GetState() != metricsv1.RebuildState_REBUILD_STATE_NONE || done.GetPartialSince() != nil || done.GetProcess() != nil ||
		done.GetEventsReplayed() != events || done.GetEventsApplied() != resp.GetEventsApplied() || done.GetEventsPending() != 0 ||
		done.GetStartedAt().AsTime().Before(resp.GetStartedAt().AsTime().Truncate(time.Microsecond)) ||
		done.GetFinishedAt() == nil || done.GetFinishedAt().AsTime().After(resp.GetFinishedAt().AsTime()) {
		t.Fatalf("after the rebuild: %s, want NONE with the rebuild's counts %s", dump(done), dump(resp))
	}
	sameFigures(t, "after the rebuild", figures(t, s.client(t, "shop"), qs), before)

	// Detached: the call answers once the tenant is reset, the rebuild
	// goes on.
	started, err := admin.Rebuild(context.Background(), &metricsv1.RebuildRequest{Detach: true}, admin.creds)
	if err != nil || started.GetStartedAt() == nil || started.GetFinishedAt() != nil {
		t.Fatalf("detached rebuild: %s, %v; want it started, not finished", dump(started), err)
	}
	if st := rebuildStatus(t, s); st.GetState() != metricsv1.RebuildState_REBUILD_STATE_RUNNING && st.GetFinishedAt() == nil {
		t.Fatalf("after a detached rebuild started: %s, want RUNNING (or done)", dump(st))
	}
	wholeAgain(t, s, qs, before)
	if st := rebuildStatus(t, s); st.GetState() != metricsv1.RebuildState_REBUILD_STATE_NONE || st.GetEventsReplayed() != events {
		t.Fatalf("after the detached rebuild: %s, want NONE with %d replayed", dump(st), events)
	}
}

// TestRebuildFailureIsReported: an attempt that fails (here the database
// refuses its 20th batch) leaves the tenant marked, and GetRebuild says it
// failed and why until a rebuild completes.
func TestRebuildFailureIsReported(t *testing.T) {
	s, _, qs, before := rebuildableShop(t)
	pool := s.pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_progress() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'injected: the database refuses the batch'; END $$;
		CREATE TRIGGER refuse_progress BEFORE UPDATE OF replayed ON tenant_rebuilds
		FOR EACH ROW WHEN (NEW.replayed >= 20) EXECUTE FUNCTION refuse_progress()`); err != nil {
		t.Fatal(err)
	}
	admin := s.client(t, "shop", auth.ScopeAdmin)
	if _, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds); status.Code(err) != codes.Internal {
		t.Fatalf("a rebuild whose batch fails: %v, want INTERNAL", err)
	}
	// The failed attempt is run again every 30 s: it may be running
	// (and failing again) when asked.
	var st *metricsv1.GetRebuildResponse
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if st = rebuildStatus(t, s); st.GetState() != metricsv1.RebuildState_REBUILD_STATE_RUNNING || time.Now().After(deadline) {
			break
		}
	}
	if st.GetState() != metricsv1.RebuildState_REBUILD_STATE_FAILED || !strings.Contains(st.GetLastError(), "injected: the database refuses the batch") ||
		st.GetFailedAt() == nil || st.GetPartialSince() == nil || st.GetProcess() != nil || st.GetEventsReplayed() != 19 {
		t.Fatalf("after a failed rebuild: %s, want FAILED saying why, after 19 events", dump(st))
	}
	rebuildingRefused(t, s, qs[:1])

	if _, err := pool.Exec(ctx, `DROP TRIGGER refuse_progress ON tenant_rebuilds`); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Rebuild(ctx, &metricsv1.RebuildRequest{}, admin.creds); err != nil {
		t.Fatal(err)
	}
	if st := rebuildStatus(t, s); st.GetState() != metricsv1.RebuildState_REBUILD_STATE_NONE || st.GetLastError() != "" || st.GetFailedAt() != nil {
		t.Fatalf("after the rebuild completed: %s, want NONE, the failure forgotten", dump(st))
	}
	wholeAgain(t, s, qs, before)
}
