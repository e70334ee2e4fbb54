package main

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/server"
	"github.com/retainhq/retain/platform/testenv"
)

func testEnv(vars map[string]string) (*cliEnv, *testenv.SyncBuffer, *testenv.SyncBuffer) {
	out, errOut := &testenv.SyncBuffer{}, &testenv.SyncBuffer{}
	return &cliEnv{stdin: strings.NewReader(""), stdout: out, stderr: errOut, getenv: func(k string) string { return vars[k] }}, out, errOut
}

// devDir returns a directory for a dev stack that the postgres OS user can
// reach when the test runs as root (t.TempDir is private to root).
func devDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "retain-dev-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, ".retain")
}

var devFlags = []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--nats-port", "-1"}

// stackCLI runs retain with words before each call's args against the dev
// stack state describes, returning its stdout and stderr together.
func stackCLI(ctx context.Context, state devState, words ...string) func(args ...string) (string, error) {
	return func(args ...string) (string, error) {
		env, out, errOut := testEnv(map[string]string{"RETAIN_ADDR": state.GRPCAddr, "RETAIN_TOKEN": state.Token})
		err := run(ctx, env, append(slices.Clone(words), args...))
		return out.String() + errOut.String(), err
	}
}

// startDevStack runs `retain dev` in a fresh directory until the test ends
// and waits until it serves. It returns a context cancelled at the end, the
// state directory, what the stack wrote to dev.json and its stdout.
func startDevStack(t *testing.T) (context.Context, string, devState, *testenv.SyncBuffer) {
	t.Helper()
	dir := devDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	env, out, errOut := testEnv(nil)
	done := make(chan error, 1)
	go func() { done <- run(ctx, env, append([]string{"dev", "--dir", dir}, devFlags...)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev stopped with %v\n%s", err, errOut)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := readDevState(dir)
		if err == nil && strings.Contains(out.String(), "Serving") {
			return ctx, dir, s, out
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev stack did not start:\n%s\n%s", out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestDevDemo(t *testing.T) {
	dir := devDir(t)
	env, out, errOut := testEnv(nil)
	args := append([]string{"dev", "--dir", dir, "--demo", "--exit-after-demo", "--demo-customers", "300", "--demo-days", "120"}, devFlags...)
	if err := run(context.Background(), env, args); err != nil {
		t.Fatalf("retain dev --demo: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	for _, want := range []string{
		"Retain dev stack is up",
		"0 duplicates, 0 rejected",
		"re-sent the first 500 events as a client retry would: 0 accepted, 500 duplicates",
		"3 rejected",
		"order_placed.total.amount_minor: must not be negative",
		"survey_answered.score",
		"RETAIN_EVENTS holds",
		"customer retention rate (E - N) / S",
		"Cohorts ",
		"VIP share: the top 20% of customers",
		"Churn risk",
		"BG/NBD model over",
		"installed 9 of 9 playbooks",
		"Campaigns (`retain campaigns report ID`",
		"churn-outreach",
		"outbox        ",
		"Notifications (`retain deliveries list --customer C`",
		"policy-demo/rtl-thank-you",
		"-> SENT",
		"-> DEFERRED: quiet hours 21:00-09:00 in ",
		"-> SUPPRESSED: email marketing consent revoked",
		"Open the .eml files in a mail client",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	// The campaigns' delivered counts are read once the notifier has
	// decided their requests: they add up to what the notifications
	// section reports sent, less the one demo request it sends itself
	// (timers coming due in between may add a few).
	var delivered int
	for _, m := range regexp.MustCompile(`(?m)^  [a-z0-9-]+ +\d+ +\d+ +\d+ +(\d+) +\d+ / \d+`).FindAllStringSubmatch(out.String(), -1) {
		n, _ := strconv.Atoi(m[1])
		delivered += n
	}
	sentLine := regexp.MustCompile(`requests from the playbooks and the demo: (\d+) sent`).FindStringSubmatch(out.String())
	if sentLine == nil {
		t.Fatalf("no notifications line in:\n%s", out)
	}
	sent, _ := strconv.Atoi(sentLine[1])
	if delivered == 0 || delivered > sent-1 || sent-1-delivered > sent/20 {
		t.Errorf("the campaigns report %d delivered, the notifier %d sent (one of them the demo's own)", delivered, sent)
	}
	// Each campaign's lift is in the words of `retain campaigns report`:
	// its interval, or why there is none.
	rows := regexp.MustCompile(`(?m)^  [a-z0-9-]+ +\d+ +\d+ +\d+ +\d+ +\d+ / \d+ +(.*)$`).FindAllStringSubmatch(out.String(), -1)
	liftRE := regexp.MustCompile(`^(n/a: .+|[+-]\d+\.\d points \(95% CI [+-]\d+\.\d to [+-]\d+\.\d\)(: no conversion in either group yet)?)$`)
	for _, m := range rows {
		if !liftRE.MatchString(m[1]) {
			t.Errorf("campaign row %q: the lift is not as `retain campaigns report` says it", m[0])
		}
	}
	if len(rows) == 0 {
		t.Errorf("no campaign rows in:\n%s", out)
	}
	// The champions audience and metrics' champions are the same customers.
	audience := regexp.MustCompile(`RFM champions .*: (\d+) customers would enter now`).FindStringSubmatch(out.String())
	counted := regexp.MustCompile("`retain metrics rfm` counts (\\d+) champions").FindStringSubmatch(out.String())
	if audience == nil || counted == nil || audience[1] != counted[1] || audience[1] == "0" {
		t.Errorf("the RFM audience line: audience %v, metrics %v, want the same non-zero count", audience, counted)
	}
	if _, err := os.Stat(devStatePath(dir)); !os.IsNotExist(err) {
		t.Errorf("dev.json should be removed at exit (stat: %v)", err)
	}
	// The Persian email the report points at is in the outbox, right to left.
	rtl := func() []string {
		m, _ := filepath.Glob(filepath.Join(dir, "outbox", devTenant, "*policy-demo_rtl-thank-you.eml"))
		return m
	}
	if m := rtl(); len(m) != 1 || !strings.Contains(mustRead(t, m[0]), `dir=3D"rtl"`) || !strings.Contains(out.String(), m[0]) {
		t.Errorf("the RTL email of the report: %v", m)
	}

	t.Run("a second run re-sends the same shop as duplicates", func(t *testing.T) {
		env, out, errOut := testEnv(nil)
		if err := run(context.Background(), env, args); err != nil {
			t.Fatalf("second run: %v\n%s\n%s", err, out, errOut)
		}
		if !strings.Contains(out.String(), " 0 accepted, ") {
			t.Errorf("second run accepted new events:\n%s", out)
		}
		// The demo's notification requests are published again: the
		// notifier sends each once.
		if m := rtl(); len(m) != 1 || !strings.Contains(out.String(), "policy-demo/rtl-thank-you") {
			t.Errorf("second run: %v\n%s", m, out)
		}
	})
}

// TestImportThroughDevStack imports the real Online Retail orders through a
// running dev stack, twice: the second import must change nothing.
func TestImportThroughDevStack(t *testing.T) {
	ctx, dir, state, _ := startDevStack(t)

	importArgs := []string{"import", "orders", "../../testdata/online_retail_orders.csv",
		"--map", "order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total", "--currency", "GBP",
		"--time-format", "2006-01-02 15:04:05", "--addr", state.GRPCAddr, "--token", state.Token, "--quiet"}
	for i, want := range []string{"18532 accepted, 0 duplicates, 0 rejected", "0 accepted, 18532 duplicates, 0 rejected"} {
		env, out, errOut := testEnv(nil)
		if err := run(ctx, env, importArgs); err != nil {
			t.Fatalf("import %d: %v\n%s\n%s", i+1, err, out, errOut)
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("import %d: want %q in:\n%s", i+1, want, out)
		}
	}

	t.Run("bad rows are listed with line numbers and the rest imported", func(t *testing.T) {
		csv := "InvoiceNo,customer,at,total\nX1,17850,2011-01-04 10:00:00,12.50\nX2,,2011-01-04 10:00:00,3.00\nX3,17850,2011-01-04 10:00:00,-3\nX4,,2011-01-04 10:00:00,1.234\n"
		env, out, errOut := testEnv(nil)
		env.stdin = strings.NewReader(csv)
		err := run(ctx, env, []string{"import", "orders", "-", "--map", "order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total",
			"--currency", "GBP", "--time-format", "2006-01-02 15:04:05", "--addr", state.GRPCAddr, "--token", state.Token, "--quiet"})
		if err == nil || !strings.Contains(err.Error(), "3 rows rejected") {
			t.Fatalf("want an error counting 3 rejected rows, got %v\n%s\n%s", err, out, errOut)
		}
		// Each line number once; a row's second problem indented under
		// its first; the amount as written, not in minor units.
		for _, want := range []string{"1 accepted",
			"\n  line 3: customer_id (column \"customer\"): is empty\n",
			"\n  line 4: total (column \"total\"): must not be negative, got -3\n",
			"\n  line 5: customer_id (column \"customer\"): is empty\n          total (column \"total\"): \"1.234\" has 3 decimal places; GBP allows at most 2\n"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("want %q in:\n%s", want, out)
			}
		}
		if strings.Count(out.String(), "line ") != 3 {
			t.Errorf("a line number repeated:\n%s", out)
		}
		// The same for NDJSON, where the problems are ingest's own.
		env, out, errOut = testEnv(nil)
		env.stdin = strings.NewReader(`{"id":"o-bad","occurred_at":"2011-01-04T10:00:00Z","order_placed":{"customer_id":"","order_id":"o-bad","total":{"amount_minor":-1,"currency":"EUR"}}}` + "\n")
		if err := run(ctx, env, []string{"publish", "-", "--addr", state.GRPCAddr, "--token", state.Token, "--quiet"}); err == nil {
			t.Fatalf("publish of a bad event: no error\n%s", out)
		}
		if !regexp.MustCompile(`\n  line 1: order_placed\.\S+: .*\n          order_placed\.\S+: `).MatchString(out.String()) || strings.Count(out.String(), "line ") != 1 {
			t.Errorf("NDJSON problems of one line:\n%s%s", out, errOut)
		}
	})

	t.Run("tokens issued with the dev key are accepted, other tenants stay apart", func(t *testing.T) {
		priv, err := os.ReadFile(filepath.Join(dir, devPrivateKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		keyEnv, out, _ := testEnv(map[string]string{"RETAIN_AUTH_PRIVATE_KEY": strings.TrimSpace(string(priv))})
		if err := run(ctx, keyEnv, []string{"tokens", "issue", "--tenant", "acme", "--scopes", "events:write"}); err != nil {
			t.Fatal(err)
		}
		tok := strings.TrimSpace(out.String())
		v, _ := auth.NewVerifierFromString(mustRead(t, filepath.Join(dir, devPublicKeyFile)))
		c, err := v.Verify(tok)
		if err != nil || c.Tenant != "acme" || !c.HasScope(auth.ScopeEventsWrite) || c.HasScope(auth.ScopeRead) {
			t.Fatalf("issued token: %+v, %v", c, err)
		}
		env, out, errOut := testEnv(nil)
		env.stdin = strings.NewReader(`{"id":"o-1","occurred_at":"2011-01-04T10:00:00Z","order_placed":{"customer_id":"c","order_id":"o-1","total":{"amount_minor":1,"currency":"EUR"}}}` + "\n")
		if err := run(ctx, env, []string{"publish", "-", "--addr", state.GRPCAddr, "--token", tok, "--quiet"}); err != nil {
			t.Fatalf("publish: %v\n%s", err, errOut)
		}
		if !strings.Contains(out.String(), "1 accepted") {
			t.Fatalf("publish as acme: %s", out)
		}
		if err := run(ctx, keyEnv, []string{"tokens", "issue", "--tenant", "Bad Tenant", "--scopes", "read"}); err == nil {
			t.Error("a bad tenant id must be refused")
		}
		if err := run(ctx, keyEnv, []string{"tokens", "issue", "--tenant", "acme", "--scopes", "root"}); err == nil || !strings.Contains(err.Error(), "unknown scope") {
			t.Errorf("unknown scope: %v", err)
		}
	})
}

// TestDeadLettersThroughDevStack publishes a message no consumer can decode
// straight to the dev stack's NATS (ingest would refuse it) and finds it with
// `retain deadletters`, reason included; a replay is refused again with the
// reason, and the other dead letters are still reported.
func TestDeadLettersThroughDevStack(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	b, err := bus.Connect(ctx, bus.Config{URL: state.NATSURL, Name: t.Name()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.PublishDurable(ctx, []bus.Message{{Subject: bus.EventSubject(devTenant, "order.placed"), ID: devTenant + "/garbled-1",
		Type: "order.placed", Data: []byte("not protobuf \xff\xff")}}); err != nil {
		t.Fatal(err)
	}

	cli := stackCLI(ctx, state, "deadletters")
	var summary string
	deadline := time.Now().Add(30 * time.Second)
	for {
		summary, err = cli()
		if err != nil {
			t.Fatalf("deadletters: %v\n%s", err, summary)
		}
		if strings.Contains(summary, "metrics-facts") && len(regexp.MustCompile(`RETAIN_EVENTS +1\n`).FindAllString(summary, -1)) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the garbled message was not dead-lettered by the fact consumers:\n%s", summary)
		}
		time.Sleep(100 * time.Millisecond)
	}
	list, err := cli("list", "metrics-facts")
	if err != nil || !strings.Contains(list, "garbled-1") || !strings.Contains(list, "order.placed") {
		t.Fatalf("list: %v\n%s", err, list)
	}
	id := strings.Fields(strings.Split(list, "\n")[1])[0]
	replay, err := cli("replay", "metrics-facts", id, "999999")
	if err == nil || !strings.Contains(err.Error(), "2 of 2 dead letters not replayed") ||
		!strings.Contains(replay, "rejected again") || !strings.Contains(replay, "999999: bus: dead letter not found: id 999999") {
		t.Fatalf("replay: %v\n%s", err, replay)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestEndpointErrors runs API commands where no retain dev left its state:
// the error names what is missing, and -h shows ADDR and TOKEN as the
// placeholders of --addr and --token.
func TestEndpointErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	for _, tt := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"RETAIN_ADDR": "127.0.0.1:9090"}, "no API token for 127.0.0.1:9090: pass --token or set RETAIN_TOKEN"},
		{map[string]string{"RETAIN_TOKEN": "tok"}, "no address to send the token to: pass --addr or set RETAIN_ADDR"},
		{nil, "no Retain to talk to: start `retain dev`"},
	} {
		env, _, _ := testEnv(tt.vars)
		if err := run(context.Background(), env, []string{"campaigns", "list"}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: %v, want %q", tt.vars, err, tt.want)
		}
	}
	env, _, errOut := testEnv(nil)
	_ = run(context.Background(), env, []string{"campaigns", "list", "-h"})
	for _, want := range []string{"-addr ADDR\n", "-token TOKEN\n", "the 'retain dev' running from this directory"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("campaigns list -h lacks %q:\n%s", want, errOut)
		}
	}
}

// TestImportUsageErrors checks what import and publish say before they
// dial: publish names itself and shows its own usage, and an unknown KIND
// lists every kind import accepts, ndjson included.
func TestImportUsageErrors(t *testing.T) {
	env, _, errOut := testEnv(nil)
	err := run(context.Background(), env, []string{"publish"})
	if err == nil || !strings.Contains(err.Error(), "publish needs at least one FILE") ||
		!strings.Contains(errOut.String(), "Usage: retain publish FILE...") || strings.Contains(errOut.String(), "retain import") || strings.Contains(errOut.String(), "-map") {
		t.Errorf("publish without a file: %v\n%s", err, errOut)
	}
	env, _, _ = testEnv(nil)
	err = run(context.Background(), env, []string{"import", "widgets", "f.csv"})
	if err == nil || !strings.Contains(err.Error(), `unknown KIND "widgets": want ndjson, orders, customers, refunds, tickets, surveys`) {
		t.Errorf("import widgets: %v", err)
	}
	env, _, errOut = testEnv(nil)
	err = run(context.Background(), env, []string{"import", "orders"})
	if err == nil || !strings.Contains(err.Error(), "import needs a KIND and at least one FILE") || !strings.Contains(errOut.String(), "-map FIELD=COLUMN") {
		t.Errorf("import without a file: %v\n%s", err, errOut)
	}
}

// TestCallError checks the words a failed call is explained in: the code,
// unless the service's message already says it, and the token hint.
func TestCallError(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.NotFound, "not found"), "not found"},
		{status.Error(codes.NotFound, `campaign "nope": not found`), `campaign "nope": not found`},
		{status.Error(codes.NotFound, `not found: nothing is known about customer "c"`), `not found: nothing is known about customer "c"`},
		{status.Error(codes.NotFound, `consumer "x" is not hosted here`), `not found: consumer "x" is not hosted here`},
		// One prefix, whether the service words it (as platform/server
		// does for every refusal) or not.
		{status.Error(codes.InvalidArgument, "campaign.id: is empty"), "invalid request: campaign.id: is empty"},
		{server.InvalidArgument(server.FieldViolation{Field: "period.from", Description: "is not in the past"}), "invalid request: period.from: is not in the past"},
		{status.Error(codes.InvalidArgument, ""), "invalid request: the service gave no reason"},
		{status.Error(codes.AlreadyExists, `campaign "w": already exists (UpdateCampaign changes it)`), `campaign "w": already exists (UpdateCampaign changes it)`},
		{status.Error(codes.AlreadyExists, ""), "already exists"},
		{status.Error(codes.PermissionDenied, "token lacks scope admin"), "permission denied: token lacks scope admin (check --token / RETAIN_TOKEN: this command needs the scope admin)"},
		{status.Error(codes.Unimplemented, "unknown service"), "this Retain does not run the dead-letter service"},
		{status.Error(codes.Unimplemented, "unknown method Count for service retain.ops.v1.DeadLetterService"), "the dead-letter service there does not have this call (unknown method Count for service retain.ops.v1.DeadLetterService): it runs an earlier release than this command; upgrade it"},
		{notFoundAs(status.Error(codes.NotFound, "not found"), `delivery "x"`), `no delivery "x"`},
		{notFoundAs(status.Error(codes.NotFound, `delivery "x": not found`), `delivery "x"`), `delivery "x": not found`},
		{notFoundAs(status.Error(codes.Unavailable, "not found"), `delivery "x"`), "unavailable: not found"},
	} {
		if got := callError(tt.err, "dead-letter", "admin").Error(); got != tt.want {
			t.Errorf("%v: %q, want %q", tt.err, got, tt.want)
		}
	}
}

// TestSimulateCommand writes a small shop to a file: the summary is in
// words, and a currency ingest would refuse is refused up front.
func TestSimulateCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "shop.ndjson")
	env, stdout, errOut := testEnv(nil)
	if err := run(context.Background(), env, []string{"simulate", "--customers", "20", "--days", "60", "--currency", "GBP", "--out", out}); err != nil {
		t.Fatalf("simulate: %v\n%s", err, errOut)
	}
	lines := strings.Count(mustRead(t, out), "\n") + 1
	m := regexp.MustCompile(`^wrote (\d+) events to (.+): 20 customers, \d+ orders? worth [\d,.]+ GBP, .* support tickets? \(\d+ resolved\), .*; \d+ customers? ordered more than once, \d+ left\n$`).FindStringSubmatch(errOut.String())
	if m == nil || m[1] != strconv.Itoa(lines) || m[2] != out || stdout.String() != "" {
		t.Errorf("simulate --out printed %q (the file has %d lines)", errOut, lines)
	}
	for cur, want := range map[string]string{"XYZ": `invalid value "XYZ" for flag -currency: "XYZ" is not an ISO 4217 currency code`, "gbp": `invalid value "gbp" for flag -currency: "gbp" must be upper case: "GBP"`} {
		env, _, _ := testEnv(nil)
		if err := run(context.Background(), env, []string{"simulate", "--customers", "2", "--days", "2", "--currency", cur, "--out", out}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--currency %s: %v, want %q", cur, err, want)
		}
	}
}

// TestTopLevelUsage: `retain` alone prints the usage to stderr and exits 2
// like every usage error (an unknown command or flag, missing arguments); `retain help` prints it to stdout and succeeds; the
// descriptions line up whatever the length of the command's name.
func TestTopLevelUsage(t *testing.T) {
	env, out, errOut := testEnv(nil)
	err := run(context.Background(), env, nil)
	if !errors.Is(err, errNoCommand) || exitCode(err) != 2 || out.String() != "" || !strings.Contains(errOut.String(), "Usage: retain <command>") {
		t.Errorf("retain alone: %v (exit %d)\nstdout %q\nstderr %q", err, exitCode(err), out, errOut)
	}
	if code := exitCode(errors.New("x")); code != 1 {
		t.Errorf("other errors exit %d, want 1", code)
	}
	// Every other usage error exits 2 as well, so a script tells a typo
	// from a failure.
	for _, args := range [][]string{{"nope"}, {"campaigns"}, {"campaigns", "nope"}, {"campaigns", "list", "--bogus"},
		{"dev", "--bogus"}, {"metrics", "retention", "--bogus"}, {"tokens", "issue", "--bogus"}, {"campaigns", "show"},
		{"metrics"}, {"metrics", "retention", "--output", "xml"}, {"campaigns", "list", "--output", "xml"}, {"deliveries", "list"}} {
		env, _, _ := testEnv(nil)
		if err := run(context.Background(), env, args); exitCode(err) != 2 {
			t.Errorf("retain %v: %v (exit %d), want exit 2", args, err, exitCode(err))
		}
	}
	// -h on a command prints its usage, and that is a success.
	for _, args := range [][]string{{"campaigns", "list", "-h"}, {"metrics", "retention", "-h"}, {"churn", "risk", "-h"}} {
		env, _, errOut := testEnv(nil)
		err := run(context.Background(), env, args)
		if exitCode(err) != 0 || !strings.Contains(errOut.String(), "-output") {
			t.Errorf("retain %v: %v (exit %d)\n%s", args, err, exitCode(err), errOut)
		}
	}
	env, out, _ = testEnv(nil)
	if err := run(context.Background(), env, []string{"help"}); err != nil {
		t.Fatal(err)
	}
	columns := map[int][]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		if m := regexp.MustCompile(`^  ([a-z]+) +(\S)`).FindStringSubmatchIndex(l); m != nil {
			columns[m[4]] = append(columns[m[4]], l[m[2]:m[3]])
		}
	}
	if len(columns) != 1 || len(slices.Concat(slices.Collect(maps.Values(columns))...)) != len(commands()) {
		t.Errorf("descriptions start at columns %v:\n%s", columns, out)
	}
	if !regexp.MustCompile(`(?m)^  churn .*weights`).MatchString(out.String()) {
		t.Errorf("churn's entry does not mention weights:\n%s", out)
	}
}
