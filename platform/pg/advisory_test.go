package pg_test

import (
	"context"
	"fmt"
	neturl "net/url"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

// TestSessionLock: a session lock is taken once, names its holder to the
// others, and is free again after Release. The keys are a job's hashes:
// negative ones (high bit set) are found too, their halves read as the
// unsigned oids pg_locks shows.
func TestSessionLock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := testenv.Postgres(t)
	one, other := connect(t, url), connect(t, url)
	for _, key := range []int64{0x5245_5441_494E, -0x1234_5678_9abc_def0, -1} {
		l, holder, err := pg.TrySessionLock(ctx, one, key)
		if err != nil || l == nil || holder != nil {
			t.Fatalf("key %#x: free lock: %v, %v, %v", key, l, holder, err)
		}
		// A failure below must not leave the pool waiting for the
		// connection at its Close.
		released := false
		t.Cleanup(func() {
			if !released {
				l.Release(ctx)
			}
		})
		var pid int32
		if err := l.Conn().QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		h, ok, err := pg.HolderOf(ctx, other, key)
		if err != nil || !ok || h.PID != pid || h.ConnectedAt.IsZero() {
			t.Fatalf("key %#x: HolderOf = %+v, %v, %v; want pid %d", key, h, ok, err, pid)
		}
		again, holder, err := pg.TrySessionLock(ctx, other, key)
		if err != nil || again != nil || holder == nil || holder.PID != pid {
			t.Fatalf("key %#x: lock held elsewhere: %v, %+v, %v; want its holder, pid %d", key, again, holder, err, pid)
		}
		if s := holder.String(); !strings.HasPrefix(s, "pid ") || !strings.Contains(s, "connected ") {
			t.Fatalf("holder reads %q", s)
		}
		// Released also when the work's context is done.
		done, stop := context.WithCancel(ctx)
		stop()
		l.Release(done)
		released = true
		if _, ok, err := pg.HolderOf(ctx, other, key); ok || err != nil {
			t.Fatalf("key %#x: held after Release (%v)", key, err)
		}
	}
	if n := count(t, one, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"); n != 0 {
		t.Fatalf("%d advisory locks still held", n)
	}
}

// TestHolderOfAnotherRole: a holder whose session another role may not
// look at (Postgres hides its address and start) is not named as
// connected from a local socket in the year 1.
func TestHolderOfAnotherRole(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := testenv.Postgres(t)
	admin := connect(t, url)
	role := fmt.Sprintf("retain_test_other_%d", time.Now().UnixNano())
	if _, err := admin.Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD 'other-pw'"); err != nil {
		// Integration tests are never skipped (testenv): a server of
		// RETAIN_TEST_DATABASE_URL must let its user create roles too.
		t.Fatalf("create a second role (the test server's user needs CREATEROLE): %v", err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	u.User = neturl.UserPassword(role, "other-pw")
	other, err := pg.Connect(ctx, u.String(), 1, "")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	holder, err := pg.Connect(ctx, url, 1, "retain-metrics@pod-1")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	const key = 0x5245_5441_494F
	l, _, err := pg.TrySessionLock(ctx, holder, key)
	if err != nil || l == nil {
		t.Fatalf("free lock: %v, %v", l, err)
	}
	defer l.Release(ctx)

	h, ok, err := pg.HolderOf(ctx, other, key)
	if err != nil || !ok || h.PID == 0 {
		t.Fatalf("HolderOf from another role = %+v, %v, %v; want the holder", h, ok, err)
	}
	s := h.String()
	if !strings.Contains(s, "retain-metrics@pod-1") || strings.Contains(s, "local socket") || strings.Contains(s, "0001-01-01") {
		t.Fatalf("holder seen from another role reads %q: want its application name, and its address and start said hidden", s)
	}
}
