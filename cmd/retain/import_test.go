package main

import (
	"context"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
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
