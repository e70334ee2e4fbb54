package main

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestProgressIntoAFile: progress written to a file or pipe is whole
// lines, not carriage-return redraws that pile onto one line.
func TestProgressIntoAFile(t *testing.T) {
	var out bytes.Buffer
	var read, accepted, dups atomic.Int64
	read.Store(120)
	accepted.Store(100)
	dups.Store(20)
	stop := (&sender{progress: &out}).startProgress(time.Now(), &read, &accepted, &dups)
	stop()
	if got := out.String(); strings.Contains(got, "\r") || !strings.HasPrefix(got, "  read 120  sent 120  (") || strings.Count(got, "\n") != 1 {
		t.Errorf("progress into a buffer = %q, want one line without \\r", got)
	}
}
