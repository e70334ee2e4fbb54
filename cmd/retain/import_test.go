package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/retainhq/retain/cmd/retain/internal/importer"
	"github.com/retainhq/retain/platform/auth"
)

// stoppableDevStack runs `retain dev` in dir until stop is called (or the
// test ends) and waits until it serves.
func stoppableDevStack(t *testing.T, dir string) (devState, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	env, out, errOut := testEnv(nil)
	done := make(chan error, 1)
	go func() { done <- run(ctx, env, append([]string{"dev", "--dir", dir}, devFlags...)) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev stopped with %v\n%s", err, errOut)
		}
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		s, err := readDevState(dir)
		if err == nil && strings.Contains(out.String(), "Serving") {
			return s, stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("dev stack did not start:\n%s\n%s", out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// onRead is a reader that calls fn when it is first read, and is empty.
type onRead func()

func (f onRead) Read([]byte) (int, error) {
	if f != nil {
		f()
	}
	return 0, io.EOF
}

// TestImportInterrupted: the stack stops part way through an import. The
// import fails (exit status 1) and accounts for every event it read: those
// answered (accepted, duplicate, rejected), those sent in requests that got
// no answer, whose fate it cannot know, and those not sent; and it says
// that running the same command again is safe. Run again against the stack
// restarted, the import answers as duplicates the events accepted before and
// perhaps some of those unanswered, never more.
func TestImportInterrupted(t *testing.T) {
	dir := devDir(t)
	state, stop := stoppableDevStack(t, dir)
	csv := mustRead(t, "../../testdata/online_retail_orders.csv")
	const total = 18532
	// The stack stops once 15000 rows are read: at most 16 requests of 500
	// events are then sent or queued and not yet answered, so thousands
	// were answered.
	cut := 0
	for range 15001 {
		cut += strings.IndexByte(csv[cut:], '\n') + 1
	}
	args := func(s devState) []string {
		return []string{"import", "orders", "-", "--map", "order_id=InvoiceNo,customer_id=customer,placed_at=at,total=total",
			"--currency", "GBP", "--time-format", "2006-01-02 15:04:05", "--addr", s.GRPCAddr, "--token", s.Token, "--quiet"}
	}

	env, out, errOut := testEnv(nil)
	env.stdin = io.MultiReader(strings.NewReader(csv[:cut]), onRead(stop), strings.NewReader(csv[cut:]))
	err := run(context.Background(), env, args(state))
	if err == nil || exitCode(err) != 1 {
		t.Fatalf("import into a stack that stopped: %v (exit %d), want a failure\n%s\n%s", err, exitCode(err), out, errOut)
	}
	if !strings.Contains(err.Error(), "\n"+rerunHint) {
		t.Errorf("the error does not say what to do next: %v", err)
	}
	m := regexp.MustCompile(`stopped after \S+, of (\d+) events read: (\d+) accepted, (\d+) duplicates, (\d+) rejected; (\d+) sent in requests that got no answer \(stored or not: unknown\); (\d+) not sent\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no account of the stopped import in:\n%s", out)
	}
	n := make([]int, len(m)-1)
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	read, accepted, dups, rejected, unanswered, unsent := n[0], n[1], n[2], n[3], n[4], n[5]
	// Rows are read on while the requests wait for the stack to come back.
	if read != accepted+dups+rejected+unanswered+unsent || read < 15000 || read > total {
		t.Errorf("%d read, want each accepted, duplicate, rejected, unanswered or unsent:\n%s", read, out)
	}
	if accepted < 15000-8500 || dups != 0 || rejected != 0 || unanswered == 0 {
		t.Errorf("want all but the last requests accepted, some without an answer:\n%s", out)
	}
	if strings.Contains(out.String(), "read "+strconv.Itoa(read)+" events") {
		t.Errorf("the summary of a complete import for one that stopped:\n%s", out)
	}

	state, _ = stoppableDevStack(t, dir)
	env, out, errOut = testEnv(nil)
	env.stdin = strings.NewReader(csv)
	if err := run(context.Background(), env, args(state)); err != nil {
		t.Fatalf("the same import again: %v\n%s\n%s", err, out, errOut)
	}
	m = regexp.MustCompile(`: (\d+) accepted, (\d+) duplicates, 0 rejected\n`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the same import again:\n%s", out)
	}
	again, _ := strconv.Atoi(m[1])
	stored, _ := strconv.Atoi(m[2])
	if again+stored != total || stored < accepted || stored > accepted+unanswered {
		t.Errorf("the same import again: %d accepted, %d duplicates; want %d in all, %d to %d duplicates (accepted before, and perhaps those unanswered)",
			again, stored, total, accepted, accepted+unanswered)
	}
}

// largeCustomerEvents is n customer.updated events as NDJSON, each with 60
// traits of 150 characters (about 9.8 KB as protobuf): valid for ingest,
// but 500 of them are more than the 4 MiB the server takes in one request.
func largeCustomerEvents(n int) string {
	var b strings.Builder
	value := strings.Repeat("v", 150)
	for i := range n {
		fmt.Fprintf(&b, `{"id":"cu-large-%d","occurred_at":"2026-01-02T10:00:00Z","customer_updated":{"customer_id":"c-%d","traits":{`, i, i)
		for j := range 60 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"trait_%02d":"%s"`, j, value)
		}
		b.WriteString("}}}\n")
	}
	return b.String()
}

// TestImportLargeEvents: events that are each within ingest's limits but
// large are sent in requests the server takes, however many fit; an event
// too large for any request is rejected by itself, naming it; and a request
// the server refuses for its size stops the import at once, not retried as
// overload would be, with its events accounted as not stored.
func TestImportLargeEvents(t *testing.T) {
	ctx, _, state, _ := startDevStack(t)
	env, out, errOut := testEnv(nil)
	env.stdin = strings.NewReader(largeCustomerEvents(1000))
	start := time.Now()
	if err := run(ctx, env, []string{"publish", "-", "--addr", state.GRPCAddr, "--token", state.Token, "--quiet"}); err != nil {
		t.Fatalf("publish of 1000 large events after %s: %v\n%s\n%s", time.Since(start), err, out, errOut)
	}
	if !strings.Contains(out.String(), ": 1000 accepted, 0 duplicates, 0 rejected\n") {
		t.Errorf("publish of 1000 large events:\n%s", out)
	}

	// dial is the command's connection, or one that lets through requests
	// of up to sendLimit bytes: what a sender bug would send, to reach the
	// server's own limit.
	dial := func(t *testing.T, sendLimit int) *grpc.ClientConn {
		t.Helper()
		conn, err := grpc.NewClient(state.GRPCAddr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.BearerCredentials{Token: state.Token}),
			grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(sendLimit)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	source := func(ndjson string) func() (sourceEvent, error) {
		return rowSource(importer.NewNDJSONReader(strings.NewReader(ndjson), time.Now()))
	}

	t.Run("an event larger than a request may carry is rejected alone", func(t *testing.T) {
		// With requests of at most 40 000 bytes, 64 traits of 1024
		// bytes (ingest's limits) do not fit; events of 9.8 KB go four
		// to a request.
		huge := `{"id":"cu-huge","occurred_at":"2026-01-02T10:00:00Z","customer_updated":{"customer_id":"c-huge","traits":{`
		for j := range 64 {
			if j > 0 {
				huge += ","
			}
			huge += fmt.Sprintf(`"trait_%02d":"%s"`, j, strings.Repeat("h", 1024))
		}
		huge += "}}}\n"
		small := strings.SplitAfter(largeCustomerEvents(9), "\n")
		ndjson := strings.Join(small[:2], "") + huge + strings.Join(small[2:], "")
		s := newSender(dial(t, serverMaxMessageBytes), nil)
		s.maxBytes = 40_000
		sum, err := s.send(ctx, source(ndjson))
		if err != nil || sum.read != 10 || sum.accepted+sum.duplicates != 9 || len(sum.rejected) != 1 || sum.stopped() {
			t.Fatalf("send: %v, %+v", err, sum)
		}
		var b strings.Builder
		printSummary(&b, sum, 5)
		if !regexp.MustCompile(`\n  line 3: event "cu-huge": too large, \d+ bytes encoded where a request may carry at most 40000; not sent\n`).MatchString(b.String()) {
			t.Errorf("the rejected event in:\n%s", b.String())
		}
	})

	t.Run("a request the server refuses as too large is not retried", func(t *testing.T) {
		s := newSender(dial(t, 16<<20), nil)
		s.maxBytes = 8 << 20
		start := time.Now()
		sum, err := s.send(ctx, source(largeCustomerEvents(1000)))
		// Retried as overload, it took 20 s.
		if el := time.Since(start); !errors.Is(err, errRefusedTooLarge) || el > 5*time.Second {
			t.Fatalf("send: %v after %s, want %v at once", err, el, errRefusedTooLarge)
		}
		if !strings.Contains(err.Error(), "received message larger than max") || !strings.Contains(err.Error(), "none of it stored") {
			t.Errorf("the error does not say what happened: %v", err)
		}
		// Reading stops with the refusal: of the events read, those of
		// the refused request (or both, sent at once), those not sent, and
		// those of a request sent at once and cut off by the refusal, whose
		// answer never came.
		if sum.accepted != 0 || sum.refused < 500 || sum.refused+sum.unanswered+sum.unsent != sum.read {
			t.Errorf("%+v: want every event read refused, cut off or not sent", sum)
		}
		var b strings.Builder
		printSummary(&b, sum, 5)
		if want := fmt.Sprintf("; %d sent in requests that got no answer (stored or not: unknown); %d sent in requests refused as too large (not stored); %d not sent\n", sum.unanswered, sum.refused, sum.unsent); !strings.Contains(b.String(), want) {
			t.Errorf("want %q in:\n%s", want, b.String())
		}
	})
}

// TestTooLargeIsNotOverload: both come as RESOURCE_EXHAUSTED; only gRPC's
// size refusals are too large, ingest's overload is retried.
func TestTooLargeIsNotOverload(t *testing.T) {
	for msg, want := range map[string]bool{
		"grpc: received message larger than max (4863670 vs. 4194304)":                               true,
		"grpc: trying to send message larger than max (4863670 vs. 4194304)":                         true,
		"ingest is overloaded: too many requests waiting for the bus; retry with the same event ids": false,
	} {
		if got := tooLarge(status.Error(codes.ResourceExhausted, msg)); got != want {
			t.Errorf("tooLarge(%q) = %v, want %v", msg, got, want)
		}
	}
	if tooLarge(status.Error(codes.InvalidArgument, "larger than max")) {
		t.Error("only RESOURCE_EXHAUSTED is gRPC's size refusal")
	}
}
