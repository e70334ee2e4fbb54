package service_test

import (
	"context"
	"errors"
	"flag"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/server/servertest"
	"github.com/retainhq/retain/platform/service"
	"github.com/retainhq/retain/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestDepsRun: a failing run stops the others, stop runs once after all
// of them returned, then the connections close; the first error comes back.
func TestDepsRun(t *testing.T) {
	pub := authtest.Keys(t).Public
	ctx := context.Background()
	deps, err := service.Open(ctx, service.Options{
		Name: "deps-run", AuthPublicKey: pub, DatabaseURL: testenv.Postgres(t),
		NATS: bus.Config{URL: testenv.NATS(t).URL()},
	}, servertest.Telemetry(t, "deps-run"))
	if err != nil {
		t.Fatal(err)
	}
	var running, stopped atomic.Int32
	boom := errors.New("boom")
	waits := func(ctx context.Context) error {
		running.Add(1)
		defer running.Add(-1)
		<-ctx.Done()
		return nil
	}
	fails := func(context.Context) error {
		time.Sleep(10 * time.Millisecond)
		return boom
	}
	err = deps.Run(ctx, func() {
		if n := running.Load(); n != 0 {
			t.Errorf("stop ran with %d runs still going", n)
		}
		if err := deps.DatabaseReady(ctx); err != nil {
			t.Errorf("stop ran after the pool closed: %v", err)
		}
		stopped.Add(1)
	}, waits, fails, waits)
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want the failing run's error", err)
	}
	if stopped.Load() != 1 {
		t.Fatalf("stop ran %d times, want once", stopped.Load())
	}
	if deps.DatabaseReady(ctx) == nil || deps.BusReady() == nil {
		t.Fatal("the connections are still open after Run")
	}
}

// TestOpenNamesTheDatabaseSetting: a database that cannot be used is
// reported with the setting to fix, from RegisterFlags.
func TestOpenNamesTheDatabaseSetting(t *testing.T) {
	pub := authtest.Keys(t).Public
	url, err := pg.DatabaseURL(testenv.Postgres(t), "no_such_database")
	if err != nil {
		t.Fatal(err)
	}
	cfg := service.DefaultConfig("metrics")
	cfg.RegisterFlags(flag.NewFlagSet("metrics", flag.ContinueOnError), "RETAIN_METRICS_DATABASE_URL", "the metrics database")
	cfg.AuthPublicKey, cfg.DatabaseURL = pub, url
	_, err = service.Open(context.Background(), cfg.Options("metrics"), servertest.Telemetry(t, "metrics"))
	if err == nil || !strings.Contains(err.Error(), "metrics database (RETAIN_METRICS_DATABASE_URL): ") {
		t.Fatalf("Open with a missing database: %v; want RETAIN_METRICS_DATABASE_URL named", err)
	}
}

// TestReadinessNamesWhatItWaitsFor: a database that does not answer (hung,
// not refusing) and a NATS server that is gone are reported with the
// database's name and host and the NATS URL, as a refused connection is.
func TestReadinessNamesWhatItWaitsFor(t *testing.T) {
	pub := authtest.Keys(t).Public
	ctx := context.Background()
	u, err := url.Parse(testenv.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	link := testenv.NewHangingLink(t, u.Host)
	u.Host = link.Addr()
	ns := testenv.NATS(t)
	deps, err := service.Open(ctx, service.Options{
		Name: "ready", AuthPublicKey: pub, DatabaseURL: u.String(),
		NATS: bus.Config{URL: ns.URL()},
	}, servertest.Telemetry(t, "ready"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = deps.Close() })

	link.Hang()
	cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	err = deps.DatabaseReady(cctx)
	link.Resume()
	if want := "database " + link.Addr() + "/" + strings.TrimPrefix(u.Path, "/") + " did not answer within"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("hung database: %v, want %q", err, want)
	}

	ns.Shutdown()
	testenv.WaitFor(t, "the NATS connection to drop", func() bool { return !deps.Bus.NC.IsConnected() })
	if err, want := deps.BusReady(), "not connected to NATS at "+ns.URL()+" (RETAIN_NATS_URL)"; err == nil || err.Error() != want {
		t.Errorf("NATS gone: %v, want %q", err, want)
	}
}
