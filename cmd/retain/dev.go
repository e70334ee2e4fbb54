package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/natsembed"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/simulate"
	"github.com/retainhq/retain/platform/telemetry"
	"github.com/retainhq/retain/services/campaign"
	"github.com/retainhq/retain/services/churnsignal"
	"github.com/retainhq/retain/services/ingest"
	"github.com/retainhq/retain/services/metrics"
	"github.com/retainhq/retain/services/notifier"
)

const (
	devPrivateKeyFile = "auth.key"
	devPublicKeyFile  = "auth.pub"
	// devUnsubscribeFile holds the secret signing unsubscribe links, kept
	// across restarts so links in earlier messages keep working.
	devUnsubscribeFile = "unsubscribe.secret"
	devTenant          = "demo"
)

type devOptions struct {
	dir                     string
	grpcAddr, httpAddr, ops string
	natsPort                int
	logLevel                string
	demo, exitAfterDemo     bool
	demoCustomers, demoDays int
	demoSeed                int64
	// args are the positional arguments, of which dev takes none.
	args []string
}

func runDev(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "dev", "dev [--demo] [flags]")
	o := devOptions{}
	fs.StringVar(&o.dir, "dir", stateDir, "directory for the dev stack's data (NATS store, Postgres cluster, keys)")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "127.0.0.1:9090", "gRPC listen address (every service's API)")
	fs.StringVar(&o.httpAddr, "http-addr", "127.0.0.1:8080", "public HTTP API listen address (POST /v1/events)")
	fs.StringVar(&o.ops, "ops-addr", "127.0.0.1:9100", "ops HTTP listen address (/healthz, /readyz, /metrics)")
	fs.IntVar(&o.natsPort, "nats-port", 4222, "port of the embedded NATS server (0 or -1: any free port)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	fs.BoolVar(&o.demo, "demo", false, "load a sample shop through the public API and print a report")
	fs.BoolVar(&o.exitAfterDemo, "exit-after-demo", false, "stop after the demo report instead of serving until Ctrl-C")
	fs.IntVar(&o.demoCustomers, "demo-customers", 2000, "customers in the demo shop")
	fs.IntVar(&o.demoDays, "demo-days", 365, "days of history in the demo shop")
	fs.Int64Var(&o.demoSeed, "demo-seed", 42, "seed of the demo shop")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o.args = fs.Args()
	return startDev(ctx, env, o)
}

// validate reports every bad flag at once, before anything is started.
func (o devOptions) validate() error {
	var v config.Validator
	if len(o.args) > 0 {
		v.Addf("", "unexpected arguments %q: dev takes flags only", o.args)
	}
	v.Require("--dir", o.dir)
	natsOK := o.natsPort >= -1 && o.natsPort <= 65535
	v.Check(natsOK, "--nats-port", "must be 1-65535, or 0 or -1 for any free port, got %d", o.natsPort)
	natsAddr := net.JoinHostPort(natsHost, strconv.Itoa(o.natsPort))
	// Two of the stack's servers on one address (checked among the valid
	// ones): the second would find it taken by the first.
	type listen struct{ flag, addr string }
	var valid []listen
	for _, a := range []listen{{"--grpc-addr", o.grpcAddr}, {"--http-addr", o.httpAddr}, {"--ops-addr", o.ops}} {
		if !validateListenAddr(&v, a.flag, a.addr) {
			continue
		}
		for _, b := range valid {
			if sameListenAddr(a.addr, b.addr) {
				v.Addf(a.flag, "%s clashes with %s %s", a.addr, b.flag, b.addr)
			}
		}
		if natsOK && o.natsPort > 0 && sameListenAddr(a.addr, natsAddr) {
			v.Addf(a.flag, "%s clashes with --nats-port %d", a.addr, o.natsPort)
		}
		valid = append(valid, a)
	}
	if o.logLevel != "" { // empty is info, as for the services
		v.OneOf("--log-level", strings.ToLower(o.logLevel), telemetry.LevelDebug, telemetry.LevelInfo, telemetry.LevelWarn, telemetry.LevelError)
	}
	// The demo shop's limits are the simulator's; checked even without
	// --demo, since a bad value is a mistake either way.
	v.Check(!o.exitAfterDemo || o.demo, "--exit-after-demo", "needs --demo")
	checkShop(&v, "--demo-customers", func(c *simulate.Config) { c.Customers = o.demoCustomers })
	checkShop(&v, "--demo-days", func(c *simulate.Config) { c.Days = o.demoDays })
	return v.Err()
}

// validateListenAddr checks a host:port to listen on (port 0 picks a free
// one) and reports whether it is valid.
func validateListenAddr(v *config.Validator, flag, addr string) bool {
	if addr == "" {
		v.Addf(flag, "must be set")
		return false
	}
	n, err := config.AddrPort(addr)
	if err == nil && (n < 0 || n > 65535) {
		err = fmt.Errorf("port must be 1-65535, or 0 for any free port, got %q", addr)
	}
	if err != nil {
		v.Addf(flag, "%v", err)
		return false
	}
	return true
}

// sameListenAddr reports whether two servers listening on a and b would
// clash: same port (not 0), and the same host or one of them on every
// interface.
func sameListenAddr(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb || pa == "0" {
		return false
	}
	norm := func(h string) string {
		switch h {
		case "", "0.0.0.0", "::":
			return ""
		case "localhost":
			return "127.0.0.1"
		}
		return h
	}
	ha, hb = norm(ha), norm(hb)
	return ha == "" || hb == "" || ha == hb
}

// checkShop records as a problem of flag what the simulator says of its
// default shop changed by set (to the flag's value), ending today. Each
// flag is checked on its own, so that a problem is named by its flag.
func checkShop(v *config.Validator, flag string, set func(*simulate.Config)) {
	cfg := simulate.DefaultConfig()
	set(&cfg)
	cfg.Start = time.Now().UTC().AddDate(0, 0, -cfg.Days)
	if err := cfg.Validate(); err != nil {
		msg := strings.TrimPrefix(err.Error(), "invalid simulate config: ")
		v.Addf(flag, "%s", strings.ReplaceAll(msg, "\n", "; "))
	}
}

// natsHost is where the embedded NATS server listens (natsembed's default).
const natsHost = "127.0.0.1"

// checkPorts tries every address the stack listens on, so a taken one fails
// the start at once, each named with its flag, instead of after the private
// Postgres started (or, for NATS, after a readiness timeout). Another
// process can still take one before the stack binds it; that is reported
// where it is bound.
func checkPorts(o devOptions) error {
	type listen struct{ what, addr, flag string }
	ls := []listen{{"gRPC API", o.grpcAddr, "--grpc-addr"}, {"HTTP API", o.httpAddr, "--http-addr"}, {"ops server", o.ops, "--ops-addr"}}
	if o.natsPort > 0 {
		ls = append([]listen{{"embedded NATS", net.JoinHostPort(natsHost, strconv.Itoa(o.natsPort)), "--nats-port"}}, ls...)
	}
	var problems []string
	for _, l := range ls {
		if _, port, _ := net.SplitHostPort(l.addr); port == "0" {
			continue
		}
		if err := natsembed.CheckListen(l.addr); err != nil {
			problems = append(problems, listenProblem(l.what, l.flag, err))
		}
	}
	switch len(problems) {
	case 0:
		return nil
	case 1:
		return errors.New(problems[0])
	}
	return fmt.Errorf("the dev stack cannot listen on %d addresses:\n  - %s", len(problems), strings.Join(problems, "\n  - "))
}

// listenProblem words a *natsembed.ListenError for the flag that chose the
// address: "embedded NATS: 127.0.0.1:4222 is already in use (another retain
// dev running? pass --nats-port)".
func listenProblem(what, flag string, err error) string {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Sprintf("%s: %v (another retain dev running? pass %s)", what, err, flag)
	}
	return fmt.Sprintf("%s: %v (pass another %s)", what, err, flag)
}

func startDev(ctx context.Context, env *cliEnv, o devOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	self, _ := os.Executable()
	if s, err := readDevState(o.dir); err == nil && devRunning(s.PID, filepath.Base(self)) {
		return fmt.Errorf("a dev stack (pid %d) is already running from %s; stop it first (Ctrl-C where it runs, or kill %d)", s.PID, o.dir, s.PID)
	}
	// Before anything is created: a start that cannot listen leaves
	// nothing behind.
	if err := checkPorts(o); err != nil {
		return err
	}
	// 0755, not 0700: when run as root, the private Postgres runs as the
	// postgres user and must be able to reach its directory inside. The
	// secrets in it (key, token) are files readable by their owner only.
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", o.dir, err)
	}
	pub, priv, err := devKeys(o.dir)
	if err != nil {
		return err
	}
	signer, err := auth.NewSignerFromString(priv)
	if err != nil {
		return err
	}
	token, err := signer.Issue(auth.Claims{Tenant: devTenant, Scopes: []string{auth.ScopeAdmin}})
	if err != nil {
		return err
	}

	tel, err := telemetry.Setup(ctx, telemetry.Config{Service: "retain-dev", Version: version, LogLevel: o.logLevel, LogFormat: "text", Output: env.stderr})
	if err != nil {
		return err
	}
	defer func() { _ = tel.Shutdown(context.Background()) }()
	log := tel.Logger
	warnUnreadEnv(log, os.Environ())

	natsDir, err := filepath.Abs(filepath.Join(o.dir, "nats"))
	if err != nil {
		return err
	}
	ns, err := natsembed.StartEmbeddedNATS(natsembed.EmbeddedNATSOptions{Host: natsHost, Port: o.natsPort, StoreDir: natsDir, SyncAlways: true, ServerName: "retain-dev"})
	if err != nil {
		var le *natsembed.ListenError
		if errors.As(err, &le) {
			// Taken since checkPorts.
			return errors.New(listenProblem("embedded NATS", "--nats-port", le))
		}
		return fmt.Errorf("embedded NATS: %w", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	natsURL := ns.ClientURL()

	dbURL, stopPG, err := devPostgres(ctx, env, o.dir, log)
	if err != nil {
		return err
	}
	defer stopPG()

	icfg := ingest.DefaultConfig()
	icfg.NATS.URL = natsURL
	icfg.AuthPublicKey = pub
	icfg.DatabaseURL, err = dbURL("retain_ingest")
	if err != nil {
		return err
	}
	svc, err := ingest.New(ctx, icfg, tel)
	if err != nil {
		return err
	}
	mcfg := metrics.DefaultConfig()
	mcfg.NATS.URL = natsURL
	mcfg.AuthPublicKey = pub
	if mcfg.DatabaseURL, err = dbURL("retain_metrics"); err != nil {
		return err
	}
	metricsSvc, err := metrics.New(ctx, mcfg, tel)
	if err != nil {
		return err
	}
	ccfg := churnsignal.DefaultConfig()
	ccfg.NATS.URL = natsURL
	ccfg.AuthPublicKey = pub
	if ccfg.DatabaseURL, err = dbURL("retain_churnsignal"); err != nil {
		return err
	}
	churnSvc, err := churnsignal.New(ctx, ccfg, tel)
	if err != nil {
		return err
	}
	cpcfg := campaign.DefaultConfig()
	// One process hosts every service, so the facts consumer has no other
	// replica to exclude; its lease would only make a restart after a
	// crash wait for the dead process's lease to lapse (up to 15 s).
	cpcfg.FactsExclusive = false
	cpcfg.NATS.URL = natsURL
	cpcfg.AuthPublicKey = pub
	if cpcfg.DatabaseURL, err = dbURL("retain_campaign"); err != nil {
		return err
	}
	campaignSvc, err := campaign.New(ctx, cpcfg, tel)
	if err != nil {
		return err
	}
	ncfg := notifier.DefaultConfig()
	ncfg.NATS.URL = natsURL
	ncfg.AuthPublicKey = pub
	if ncfg.DatabaseURL, err = dbURL("retain_notifier"); err != nil {
		return err
	}
	if ncfg.OutboxDir, err = filepath.Abs(filepath.Join(o.dir, "outbox")); err != nil {
		return err
	}
	if ncfg.UnsubscribeSecret, err = devSecret(filepath.Join(o.dir, devUnsubscribeFile)); err != nil {
		return err
	}
	notifierSvc, err := notifier.New(ctx, ncfg, tel)
	if err != nil {
		return err
	}
	host, err := server.NewHost(server.HostConfig{Addrs: server.Addrs{GRPC: o.grpcAddr, HTTP: o.httpAddr, Ops: o.ops}, Telemetry: tel, Verifier: svc.Verifier()}, svc, metricsSvc, churnSvc, campaignSvc, notifierSvc)
	if err != nil {
		return err
	}
	addrs := host.Addrs()
	// Unsubscribe links point at the shared HTTP server, and the campaign
	// service checks the templates of campaigns saved against the notifier
	// on the shared gRPC server: their ports are known only now.
	notifierSvc.SetPublicURL("http://" + addrs.HTTP)
	if err := campaignSvc.SetNotifierAddr(addrs.GRPC); err != nil {
		return err
	}
	state := devState{GRPCAddr: addrs.GRPC, HTTPAddr: addrs.HTTP, OpsAddr: addrs.Ops, Token: token, NATSURL: natsURL, PID: os.Getpid()}
	if err := writeDevState(o.dir, state); err != nil {
		return fmt.Errorf("write dev state: %w", err)
	}
	defer os.Remove(devStatePath(o.dir))

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	hostDone := make(chan error, 1)
	go func() { hostDone <- host.Run(runCtx) }()
	if err := host.WaitReady(ctx, 30*time.Second); err != nil {
		stop()
		return errors.Join(err, <-hostDone)
	}
	printBanner(env.stdout, state, natsURL, o.dir, ncfg.OutboxDir, foundHere(o.dir))

	if o.demo {
		if err := runDemo(runCtx, env, state, natsURL, o, metricsSvc, churnSvc, campaignSvc, notifierSvc); err != nil {
			stop()
			return errors.Join(fmt.Errorf("demo: %w", err), <-hostDone)
		}
		if o.exitAfterDemo {
			stop()
			return <-hostDone
		}
	}
	fmt.Fprintln(env.stdout, "Serving. Press Ctrl-C to stop.")
	select {
	case err := <-hostDone:
		return err
	case <-ctx.Done():
		stop()
		return <-hostDone
	}
}

// devKeys loads the dev stack's signing key pair, creating it on first use.
func devKeys(dir string) (pub, priv string, err error) {
	privPath, pubPath := filepath.Join(dir, devPrivateKeyFile), filepath.Join(dir, devPublicKeyFile)
	privB, perr := os.ReadFile(privPath)
	pubB, uerr := os.ReadFile(pubPath)
	if perr == nil && uerr == nil {
		return strings.TrimSpace(string(pubB)), strings.TrimSpace(string(privB)), nil
	}
	pub, priv, err = auth.GenerateKeyPair()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(privPath, []byte(priv+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write %s: %w", privPath, err)
	}
	if err := os.WriteFile(pubPath, []byte(pub+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", pubPath, err)
	}
	return pub, priv, nil
}

// devSecret loads a random secret from path, creating it on first use.
func devSecret(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return secret, nil
}

// devPostgres returns a function giving the URL of a service's database:
// databases in RETAIN_DATABASE_URL's server when set, else in a private
// cluster under dir/pg (kept across restarts).
func devPostgres(ctx context.Context, env *cliEnv, dir string, log *slog.Logger) (dbURL func(string) (string, error), stop func(), err error) {
	if base := env.getenv("RETAIN_DATABASE_URL"); base != "" {
		return func(db string) (string, error) {
			u, err := pg.CreateDatabaseAt(ctx, base, db)
			if err != nil {
				return "", fmt.Errorf("RETAIN_DATABASE_URL: %w", err)
			}
			return u, nil
		}, func() {}, nil
	}
	pgDir, err := filepath.Abs(filepath.Join(dir, "pg"))
	if err != nil {
		return nil, nil, err
	}
	cl, err := pg.StartCluster(ctx, pg.ClusterOptions{Dir: pgDir, Durable: true})
	if err != nil {
		return nil, nil, fmt.Errorf("private Postgres under %s (set RETAIN_DATABASE_URL to use your own): %w", pgDir, err)
	}
	var stopping atomic.Bool
	go func() {
		// The services only say their database is unreachable; say why,
		// and what brings it back (nothing restarts the server).
		select {
		case <-cl.Exited():
			if !stopping.Load() && ctx.Err() == nil {
				log.Error("private Postgres exited: the services wait for their databases until the dev stack is restarted",
					"exit", fmt.Sprint(cl.ExitErr()), "server_log", cl.LogPath(), "to_recover", "stop retain dev (Ctrl-C) and start it again")
			}
		case <-ctx.Done():
		}
	}()
	stop = func() {
		stopping.Store(true)
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.Stop(sctx); err != nil {
			log.Warn("stop private Postgres", "err", err)
		}
	}
	return func(db string) (string, error) {
		if err := cl.CreateDatabase(ctx, db); err != nil {
			return "", err
		}
		return cl.URL(db), nil
	}, stop, nil
}

// devRunning reports whether pid, from a state file, is a `retain dev`
// still running: a process that is not a zombie (killed, not yet reaped),
// of an executable named exe (this one's: `go run` builds it elsewhere
// each time, under the same name) and whose command line has the dev
// command. A stack killed with -9 leaves its state file, and its pid may
// be reused by another program by the next start (`npm run dev`): neither
// must refuse that start.
func devRunning(pid int, exe string) bool {
	if pid <= 0 || pid == os.Getpid() || !pg.ProcessRunning(pid) {
		return false
	}
	if path, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil || filepath.Base(path) != exe {
		return false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && slices.Contains(strings.Split(string(cmdline), "\x00"), "dev")
}

// foundHere reports whether the commands run from the working directory
// find the dev stack of dir by themselves: whether its state file is the
// one findStateFile finds. With --dir elsewhere than ./.retain (or a
// .retain above the working directory) it is not.
func foundHere(dir string) bool {
	found, err := os.Stat(findStateFile(devStateFile))
	if err != nil {
		return false
	}
	own, err := os.Stat(devStatePath(dir))
	return err == nil && os.SameFile(found, own)
}

// printBanner says where the stack listens and how to use it: found says
// whether the commands run from here find it by themselves (foundHere);
// if not, the banner gives the variables that point them at it.
func printBanner(w io.Writer, s devState, natsURL, dir, outbox string, found bool) {
	try := fmt.Sprintf(`Try (retain commands run from this directory find this stack by themselves;
build the command with: go build -o bin/retain ./cmd/retain):
  export RETAIN_TOKEN=%s`, s.Token)
	if !found {
		try = fmt.Sprintf(`Try (retain commands do not find this stack by themselves: its --dir is not
./.retain, so set where it is in each shell you run them from; build the command
with: go build -o bin/retain ./cmd/retain):
  export RETAIN_ADDR=%s RETAIN_TOKEN=%s`, s.GRPCAddr, s.Token)
	}
	fmt.Fprintf(w, `
Retain dev stack is up (data in %s)
  gRPC API      %s   (all services; server reflection on: grpcurl -plaintext %s list)
  HTTP API      http://%s/v1/events
  ops           http://%s/readyz  /metrics
  NATS          %s   (JetStream, fsync on every write)
  outbox        %s   (every email, SMS and webhook the notifier sends, as files: open the .eml files)
  tenant        %s
  token         %s

%s
  curl -s -H "Authorization: Bearer $RETAIN_TOKEN" -H 'Content-Type: application/json' -d '{"events":[{"id":"o-1","occurred_at":"2026-01-02T10:00:00Z","order_placed":{"customer_id":"c-1","order_id":"o-1","total":{"amount_minor":4200,"currency":"EUR"}}}]}' http://%s/v1/events
  retain simulate --customers 500 --days 180 --send
  retain templates list    retain deliveries list --customer CUSTOMER    retain preferences get CUSTOMER
  retain import orders FILE.csv --map order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total --currency GBP --time-format "2006-01-02 15:04:05"

`, dir, s.GRPCAddr, s.GRPCAddr, s.HTTPAddr, s.OpsAddr, natsURL, outbox, devTenant, s.Token, try, s.HTTPAddr)
}
