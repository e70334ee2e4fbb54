//go:build !unix

package simulate

import "time"

// processCPU is not measured outside unix; the benchmark then reports only
// wall-clock rates.
func processCPU() time.Duration { return 0 }
