package metrics_test

import (
	"context"
	"errors"
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
	if st, _ := status.FromError(err); st.Code() != codes.Aborted || !strings.Contains(st.Message(), "another process") {
		t.Fatalf("rebuild asked of a second replica: %v, want ABORTED naming the other process", err)
	}
	if err := stop(); err != nil && !errors.Is(err, context.Canceled) && status.Code(err) != codes.Canceled {
		t.Fatal(err)
	}
	wholeAgain(t, s, qs, before)
}
