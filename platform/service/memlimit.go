package service

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// The cgroup files that hold a container's memory limit: v2, then v1.
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimitShare is the part of the container's memory limit the Go
// runtime aims to stay under, leaving room for what it does not count
// (goroutine stacks it cannot free at once, cgo, the page cache charged to
// the container).
const memoryLimitShare = 0.9

// applyMemoryLimit sets the Go runtime's soft memory limit to 90% of the
// container's memory limit, unless GOMEMLIMIT is set or there is no limit.
// Caches have byte budgets, but with the default GOGC the heap may grow to
// twice the live data before a collection: near the limit the collector
// must work harder instead of the kernel killing the process.
func applyMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit, ok := containerMemoryLimit(os.ReadFile)
	if !ok {
		return
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("memory limit set from the container's", "container_bytes", limit, "go_soft_limit_bytes", soft)
}

// containerMemoryLimit reads the cgroup memory limit with read; ok is false
// when there is none (not in a container, or unlimited).
func containerMemoryLimit(read func(string) ([]byte, error)) (int64, bool) {
	for _, f := range cgroupMemoryFiles {
		b, err := read(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(s, 10, 64)
		// cgroup v1 writes a page-rounded huge number for "no limit".
		if err != nil || n <= 0 || n >= 1<<50 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}
