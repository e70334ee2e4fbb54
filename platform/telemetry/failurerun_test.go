package telemetry

import (
	"testing"
	"time"
)

// TestFailureRun: a run is told at its first failure, then at most once an
// interval with the failures since, and at its end with all of them;
// failures right after an end wait for the interval of the last line.
func TestFailureRun(t *testing.T) {
	r := &FailureRun{Every: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	if l := r.Ended(t0); l.Log {
		t.Fatalf("an end without a run is logged: %+v", l)
	}
	if l := r.Failed(t0); !l.Log || !l.First || l.Failures != 1 {
		t.Fatalf("first failure: %+v", l)
	}
	for s := 1; s < 60; s++ {
		if l := r.Failed(at(time.Duration(s) * time.Second)); l.Log {
			t.Fatalf("failure at %ds logged: %+v", s, l)
		}
	}
	if l := r.Failed(at(time.Minute)); !l.Log || l.First || l.Failures != 60 || l.FailingFor != time.Minute {
		t.Fatalf("a minute on: %+v, want the 60 failures since the first line", l)
	}
	r.Failed(at(time.Minute + time.Second))
	if l := r.Ended(at(90 * time.Second)); !l.Log || l.Failures != 62 || l.Unlogged != 1 || l.FailingFor != 90*time.Second {
		t.Fatalf("end: %+v, want all 62 failures, 1 of them in no line", l)
	}
	// Within the interval of the last failure line: counted, not logged.
	if l := r.Failed(at(100 * time.Second)); l.Log {
		t.Fatalf("a failure right after the end is logged: %+v", l)
	}
	if l := r.Failed(at(2 * time.Minute)); !l.Log || !l.First || l.Failures != 2 {
		t.Fatalf("the next run's first line: %+v, want the 2 failures since the end", l)
	}
}
