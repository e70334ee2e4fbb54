//go:build unix

package simulate

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user+system) the process has used: on a shared
// 2-core machine wall-clock rates swing with the neighbours' load, CPU time
// much less.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
