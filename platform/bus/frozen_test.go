//go:build unix

package bus_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retainhq/retain/platform/bus"
)

// frozenHolderEnv passes the helper process its NATS and Postgres URLs.
const (
	frozenHolderNATS = "RETAIN_BUS_TEST_FROZEN_NATS"
	frozenHolderPG   = "RETAIN_BUS_TEST_FROZEN_PG"
)

// frozenCfg is the exclusive consumer both processes of
// TestExclusiveConsumerOutlivesFrozenHolder run: a short lease, and an ack
// wait that brings the frozen batch's messages back soon after the
// takeover.
var frozenCfg = bus.ConsumerConfig{Durable: "frozen", BatchSize: 10, Exclusive: true,
	LeaseTTL: 2 * time.Second, AckWait: 4 * time.Second}

// TestHelperFrozenLeaseHolder is not a test: it is the holder process of
// TestExclusiveConsumerOutlivesFrozenHolder. Its handler says "inside" on
// its first batch and waits, transaction open, for a line on stdin (the
// parent stops the process meanwhile), then applies the batch and says
// how that went. Every call of the handler says "handler". It exits when
// stdin closes.
func TestHelperFrozenLeaseHolder(t *testing.T) {
	natsURL, pgURL := os.Getenv(frozenHolderNATS), os.Getenv(frozenHolderPG)
	if natsURL == "" || pgURL == "" {
		return
	}
	ctx := context.Background()
	var out sync.Mutex
	say := func(format string, args ...any) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	lines := make(chan string)
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			lines <- in.Text()
		}
		os.Exit(0)
	}()
	b, err := bus.Connect(ctx, bus.Config{URL: natsURL, Name: "frozen-holder"}, testLogger())
	if err != nil {
		say("FAILED %v", err)
		os.Exit(1)
	}
	pool, err := pgxpool.New(ctx, pgURL)
	if err != nil {
		say("FAILED %v", err)
		os.Exit(1)
	}
	cfg := frozenCfg
	cfg.Stream = bus.EventsStream
	first := true
	c, err := bus.NewConsumer(b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		say("handler")
		if first {
			first = false
			say("inside")
			<-lines
			err := applyAll(ctx, tx, ds)
			say("thawed: %v", err)
			return err
		}
		return applyAll(ctx, tx, ds)
	}, testLogger())
	if err != nil {
		say("FAILED %v", err)
		os.Exit(1)
	}
	_ = c.Run(ctx)
}

// TestExclusiveConsumerOutlivesFrozenHolder: a holder process frozen
// (SIGSTOP) in the middle of a batch leaves its transaction open on the
// server, share-locking the lease row; a replica standing by still takes
// over within about LeaseTTL and a poll, because the server ends a batch
// transaction idle for LeaseTTL. Once thawed, the old holder's batch fails
// (its session is gone), it stands by, and every message is applied once,
// none dead-lettered.
func TestExclusiveConsumerOutlivesFrozenHolder(t *testing.T) {
	srv, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	cfg := frozenCfg
	if _, err := b.PublishDurable(ctx, events("z", 100)); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperFrozenLeaseHolder$")
	cmd.Env = append(os.Environ(), frozenHolderNATS+"="+srv.URL(), frozenHolderPG+"="+pool.Config().ConnString())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("holder's stderr:\n%s", stderr.String())
		}
	})
	said := make(chan string, 100)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			said <- lines.Text()
		}
		close(said)
	}()
	var handlerCalls int
	await := func(prefix string) string {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case line, ok := <-said:
				if !ok {
					t.Fatalf("the holder exited before saying %q", prefix)
				}
				if line == "handler" {
					handlerCalls++
				}
				if strings.HasPrefix(line, "FAILED") {
					t.Fatalf("holder: %s", line)
				}
				if strings.HasPrefix(line, prefix) {
					return line
				}
			case <-timeout:
				t.Fatalf("the holder did not say %q in 30s", prefix)
			}
		}
	}

	// The holder freezes with its first batch's transaction open.
	await("inside")
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	run(t, newConsumer(t, b, pool, cfg, applyAll))

	// The standby applies what the frozen batch does not hold within
	// LeaseTTL (the server ends the idle transaction, and the lease
	// lapses) and a poll; without the bound it waits on the frozen
	// batch's lock for as long as that session lives.
	poll := min(time.Second, cfg.LeaseTTL/3)
	bound := cfg.LeaseTTL + poll + 2*time.Second // slack for a loaded machine
	for {
		if rows, _ := appliedCounts(t, pool); rows >= 90 {
			break
		}
		if time.Since(frozen) > bound {
			var waits string
			_ = pool.QueryRow(ctx, `SELECT coalesce(string_agg(state || ' ' || coalesce(wait_event_type || '/' || wait_event, '-'), '; '), '') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&waits)
			t.Fatalf("no takeover %s after the holder froze (LeaseTTL %s, poll %s); sessions: %s", time.Since(frozen).Round(time.Millisecond), cfg.LeaseTTL, poll, waits)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the standby took over %s after the holder froze (LeaseTTL %s, poll %s)", time.Since(frozen).Round(time.Millisecond), cfg.LeaseTTL, poll)
	// The frozen batch's messages come back after the ack wait.
	waitFor(t, "every message applied", func() (bool, string) {
		rows, distinct := appliedCounts(t, pool)
		return rows == 100 && distinct == 100, fmt.Sprintf("%d rows, %d distinct", rows, distinct)
	})

	// Thawed, the old holder's batch fails: its session was ended.
	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go on\n"); err != nil {
		t.Fatal(err)
	}
	if line := await("thawed: "); line == "thawed: <nil>" {
		t.Fatalf("the thawed holder's batch went on after its session should have been ended")
	}
	// It stands by: the next messages are the standby's, the lease too.
	if _, err := b.PublishDurable(ctx, events("after", 20)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the messages after the thaw applied", func() (bool, string) {
		rows, distinct := appliedCounts(t, pool)
		return rows == 120 && distinct == 120, fmt.Sprintf("%d rows, %d distinct", rows, distinct)
	})
	time.Sleep(cfg.LeaseTTL) // a lease period for the thawed holder to misbehave in
	if rows, distinct := appliedCounts(t, pool); rows != 120 || distinct != 120 {
		t.Fatalf("%d rows, %d distinct applied; want 120 of each", rows, distinct)
	}
	if n := deadLetterCount(t, pool); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
	var holder string
	if err := pool.QueryRow(ctx, `SELECT holder FROM bus_leases WHERE name = $1`, "consumer:"+cfg.Durable).Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(holder, fmt.Sprintf("/%d/", os.Getpid())) {
		t.Fatalf("lease holder %q after the thaw, want this process (%d)", holder, os.Getpid())
	}
	for drained := false; !drained; {
		select {
		case line, ok := <-said:
			if !ok {
				drained = true
			} else if line == "handler" {
				handlerCalls++
			}
		default:
			drained = true
		}
	}
	if handlerCalls != 1 {
		t.Fatalf("the holder's handler ran %d times, want once (the frozen batch)", handlerCalls)
	}
}

// TestConsumerOutlivesFrozenReplica: a replica of a shared (not
// exclusive) consumer that froze in the middle of a batch keeps its
// transaction open on the server, holding the inbox rows it claimed. The
// server redelivers the batch to another replica after AckWait, whose
// claim of the same ids would wait on those rows for as long as the
// frozen session lives; the server ends a batch transaction idle for
// AckWait, so the other replica applies it. The frozen replica's batch
// fails when it wakes, and every message is applied once.
func TestConsumerOutlivesFrozenReplica(t *testing.T) {
	_, b := setupNATS(t)
	pool := setupPG(t)
	ctx := testCtx(t)
	cfg := bus.ConsumerConfig{Durable: "shared", BatchSize: 10, AckWait: 2 * time.Second}
	inside, thaw := make(chan struct{}), make(chan struct{})
	thawed := make(chan error, 1)
	var once sync.Once
	run(t, newConsumer(t, b, pool, cfg, func(ctx context.Context, tx pgx.Tx, ds []*bus.Delivery) error {
		frozen := false
		once.Do(func() { frozen = true })
		if !frozen {
			return applyAll(ctx, tx, ds)
		}
		close(inside)
		<-thaw // stops talking to the database, its transaction open
		err := applyAll(ctx, tx, ds)
		thawed <- err
		return err
	}))
	if _, err := b.PublishDurable(ctx, events("s", 10)); err != nil {
		t.Fatal(err)
	}
	<-inside
	frozen := time.Now()
	run(t, newConsumer(t, b, pool, cfg, applyAll))

	bound := cfg.AckWait + 3*time.Second // the redelivery, then slack
	for {
		if rows, _ := appliedCounts(t, pool); rows == 10 {
			break
		}
		if time.Since(frozen) > bound {
			close(thaw)
			t.Fatalf("the other replica did not apply the batch %s after the first froze (AckWait %s)", time.Since(frozen).Round(time.Millisecond), cfg.AckWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("the other replica applied the frozen batch %s after the first froze (AckWait %s)", time.Since(frozen).Round(time.Millisecond), cfg.AckWait)
	close(thaw)
	if err := <-thawed; err == nil {
		t.Fatal("the frozen replica's batch went on after its session should have been ended")
	}
	time.Sleep(cfg.AckWait) // room for a wrong second application
	if rows, distinct := appliedCounts(t, pool); rows != 10 || distinct != 10 {
		t.Fatalf("%d rows, %d distinct applied; want 10 of each", rows, distinct)
	}
	if n := deadLetterCount(t, pool); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
}
