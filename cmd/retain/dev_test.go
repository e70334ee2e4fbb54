package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// runDevExpectingError runs `retain dev` with args in a fresh directory and
// returns its error; the stack must not have started, nor its directory
// been created.
func runDevExpectingError(t *testing.T, args ...string) error {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ".retain")
	env, out, _ := testEnv(nil)
	err := run(context.Background(), env, append([]string{"dev", "--dir", dir}, args...))
	if err == nil {
		t.Fatalf("retain dev %q started", args)
	}
	if strings.Contains(out.String(), "is up") {
		t.Fatalf("retain dev %q printed its banner:\n%s", args, out)
	}
	// Nothing is created before the flags and ports are known good.
	if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
		t.Errorf("retain dev %q created %s before failing (%v)", args, dir, serr)
	}
	return err
}

func TestDevFlagsReportedAtOnce(t *testing.T) {
	free := []string{"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0", "--nats-port", "-1"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "port out of range and no demo customers, both named",
			args: []string{"--nats-port", "99999", "--demo-customers", "0"},
			want: "invalid configuration (2 problems):\n" +
				"  - --demo-customers: customers must be in [1, 50000000], got 0\n" +
				"  - --nats-port: must be 1-65535, or 0 or -1 for any free port, got 99999",
		},
		{
			name: "NATS port below -1",
			args: append(free, "--nats-port", "-2"),
			want: "invalid configuration: --nats-port: must be 1-65535, or 0 or -1 for any free port, got -2",
		},
		{
			name: "listen addresses",
			args: []string{"--grpc-addr", "127.0.0.1:70000", "--http-addr", "8080", "--ops-addr", "", "--nats-port", "-1"},
			want: "invalid configuration (3 problems):\n" +
				"  - --grpc-addr: port must be 1-65535, or 0 for any free port, got \"127.0.0.1:70000\"\n" +
				"  - --http-addr: want host:port such as 127.0.0.1:9090, got \"8080\"\n" +
				"  - --ops-addr: must be set",
		},
		{
			name: "two servers on one address",
			args: []string{"--grpc-addr", "127.0.0.1:19090", "--http-addr", ":19090", "--ops-addr", "localhost:4222", "--nats-port", "4222"},
			want: "invalid configuration (2 problems):\n" +
				"  - --http-addr: :19090 clashes with --grpc-addr 127.0.0.1:19090\n" +
				"  - --ops-addr: localhost:4222 clashes with --nats-port 4222",
		},
		{
			name: "demo settings, log level and arguments",
			args: append(free, "--demo-days", "0", "--demo-customers", "-5", "--exit-after-demo", "--log-level", "loud", "now"),
			want: "invalid configuration (5 problems):\n" +
				"  - unexpected arguments [\"now\"]: dev takes flags only\n" +
				"  - --demo-customers: customers must be in [1, 50000000], got -5\n" +
				"  - --demo-days: days must be in [1, 36600], got 0\n" +
				"  - --exit-after-demo: needs --demo\n" +
				"  - --log-level: must be one of debug, info, warn, error, got \"loud\"",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runDevExpectingError(t, tt.args...)
			if err.Error() != tt.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tt.want)
			}
			if code := exitCode(err); code != 2 {
				t.Errorf("exit status %d, want 2 as a service's for bad settings", code)
			}
		})
	}
}

// hold listens on a free port of 127.0.0.1 until the test ends, as another
// program (or another retain dev) would.
func hold(t *testing.T) (addr string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

func TestDevPortsInUseReportedAtOnce(t *testing.T) {
	natsAddr, natsPort := hold(t)
	grpcAddr, _ := hold(t)
	httpAddr, _ := hold(t)
	opsAddr, _ := hold(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{
			name: "NATS",
			args: []string{"--nats-port", fmt.Sprint(natsPort), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"},
			want: "embedded NATS: " + natsAddr + " is already in use (another retain dev running? pass --nats-port)",
		},
		{
			name: "gRPC",
			args: []string{"--nats-port", "-1", "--grpc-addr", grpcAddr, "--http-addr", "127.0.0.1:0", "--ops-addr", "127.0.0.1:0"},
			want: "gRPC API: " + grpcAddr + " is already in use (another retain dev running? pass --grpc-addr)",
		},
		{
			name: "every port, as with a second dev stack",
			args: []string{"--nats-port", fmt.Sprint(natsPort), "--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--ops-addr", opsAddr},
			want: "the dev stack cannot listen on 4 addresses:\n" +
				"  - embedded NATS: " + natsAddr + " is already in use (another retain dev running? pass --nats-port)\n" +
				"  - gRPC API: " + grpcAddr + " is already in use (another retain dev running? pass --grpc-addr)\n" +
				"  - HTTP API: " + httpAddr + " is already in use (another retain dev running? pass --http-addr)\n" +
				"  - ops server: " + opsAddr + " is already in use (another retain dev running? pass --ops-addr)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := runDevExpectingError(t, tt.args...)
			if err.Error() != tt.want {
				t.Fatalf("error:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// TestBannerSaysHowToReachTheStack: commands find a stack by its state
// file in ./.retain or a .retain above, so the banner's "find this stack
// by themselves" holds only there; with --dir elsewhere it gives the
// variables that reach the stack instead.
func TestBannerSaysHowToReachTheStack(t *testing.T) {
	root := t.TempDir()
	dir, elsewhere, sub := filepath.Join(root, ".retain"), filepath.Join(root, "data"), filepath.Join(root, "sub")
	s := devState{GRPCAddr: "127.0.0.1:19090", HTTPAddr: "127.0.0.1:18080", Token: "tok"}
	for _, d := range []string{dir, elsewhere, sub} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{dir, elsewhere} {
		if err := writeDevState(d, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		cwd, dir string
		found    bool
	}{
		{root, ".retain", true},
		{root, dir, true},
		{sub, dir, true},
		{root, elsewhere, false},
		{elsewhere, elsewhere, false},
		{t.TempDir(), dir, false},
	} {
		t.Chdir(tt.cwd)
		if got := foundHere(tt.dir); got != tt.found {
			t.Errorf("from %s, --dir %s: found %v, want %v", tt.cwd, tt.dir, got, tt.found)
		}
	}
	var b strings.Builder
	printBanner(&b, s, "nats://127.0.0.1:4222", dir, "outbox", true)
	if !strings.Contains(b.String(), "retain commands run from this directory find this stack by themselves") ||
		!strings.Contains(b.String(), "\n  export RETAIN_TOKEN=tok\n") || strings.Contains(b.String(), "RETAIN_ADDR") {
		t.Errorf("banner of a stack found here:\n%s", b.String())
	}
	b.Reset()
	printBanner(&b, s, "nats://127.0.0.1:4222", elsewhere, "outbox", false)
	if !strings.Contains(b.String(), "retain commands do not find this stack by themselves") ||
		!strings.Contains(b.String(), "\n  export RETAIN_ADDR=127.0.0.1:19090 RETAIN_TOKEN=tok\n") || strings.Contains(b.String(), "find this stack by themselves;") {
		t.Errorf("banner of a stack elsewhere:\n%s", b.String())
	}
}

// TestDevRunning: a start is refused only for a state file whose pid is a
// `retain dev` still running, not for one killed (a zombie until reaped)
// nor for a pid another program has taken since, even one run with "dev"
// (sh stands for the retain executable here).
func TestDevRunning(t *testing.T) {
	start := func(args ...string) *exec.Cmd {
		cmd := exec.Command(args[0], args[1:]...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		// Start returns once the program is executing, but the kernel
		// fills in its command line a moment later.
		for {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)); err != nil || len(b) > 0 {
				return cmd
			}
			time.Sleep(time.Millisecond)
		}
	}
	dev := start("sh", "-c", "sleep 30; :", "dev")
	shell, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", dev.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Base(shell)
	if !devRunning(dev.Process.Pid, exe) {
		t.Fatal("a running process of the dev command is not seen")
	}
	if devRunning(dev.Process.Pid, "retain") {
		t.Fatal("another program run with dev counts as a dev stack")
	}
	if other := start("sh", "-c", "sleep 30; :"); devRunning(other.Process.Pid, exe) {
		t.Fatal("a process without the dev command counts as a dev stack")
	}
	killed := start("sh", "-c", "sleep 30; :", "dev")
	if err := killed.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for devRunning(killed.Process.Pid, exe) {
		if time.Now().After(deadline) {
			t.Fatal("a killed dev stack, not reaped, still counts as running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if devRunning(0, exe) || devRunning(os.Getpid(), exe) {
		t.Fatal("pid 0 or this process counts as a dev stack")
	}
}
