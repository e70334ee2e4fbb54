//go:build linux

package pg_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/pg"
)

const ownerHelperEnv = "RETAIN_PG_TEST_OWNER_DIR"

// TestHelperClusterOwner is not a test: TestClusterStopsWhenItsOwnerDies runs
// it in a child process that starts a cluster and then gets killed.
func TestHelperClusterOwner(t *testing.T) {
	dir := os.Getenv(ownerHelperEnv)
	if dir == "" {
		return
	}
	opts := pg.ClusterOptions{Dir: dir}
	if cache, err := os.UserCacheDir(); err == nil {
		opts.InitCacheDir = filepath.Join(cache, "retain", "pg-initdb")
	}
	if _, err := pg.StartCluster(context.Background(), opts); err != nil {
		fmt.Println("FAILED", err)
		os.Exit(1)
	}
	fmt.Println("READY")
	select {} // until killed
}

func TestClusterStopsWhenItsOwnerDies(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the parent-death signal is Linux only")
	}
	dir := clusterDir(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperClusterOwner$")
	cmd.Env = append(os.Environ(), ownerHelperEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "READY") {
		if strings.HasPrefix(lines.Text(), "FAILED") {
			t.Fatalf("helper: %s", lines.Text())
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		t.Fatalf("helper's cluster is not running: %v", err)
	}
	first, _, _ := strings.Cut(string(raw), "\n")
	pid, err := strconv.Atoi(first)
	if err != nil {
		t.Fatalf("postmaster.pid: %v", err)
	}

	// SIGKILL: the owner gets no chance to call Stop.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// A liveness bound, not a performance assertion: fast shutdown takes
	// well under a second.
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGQUIT)
			t.Fatalf("postgres (pid %d) outlived its owner", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid left behind: the server did not shut down cleanly (err %v)", err)
	}
}

// alive reports whether pid runs; a zombie (exited, not yet reaped by a PID 1
// that may never reap it in a container) does not count.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}
