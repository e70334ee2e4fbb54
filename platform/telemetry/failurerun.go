package telemetry

import (
	"sync"
	"sync/atomic"
	"time"
)

// FailureRun paces the log of something that fails again and again (a
// provider down for minutes, a connection refused at every retry), so that
// a run of failures is told in a few lines instead of one per failure: the
// first failure at once, then at most one line per Every with the count
// since the last, then one line when the run ends, with the total. The
// caller writes the lines, in its own words; FailureRun says when and what
// they stand for. Failures in the same interval as the end of a run (a
// provider refusing some calls and taking others) go into the next line,
// so a run writes at most two lines per interval whatever the traffic.
//
// The zero value needs Every set. It is safe for concurrent use.
type FailureRun struct {
	Every time.Duration

	// open is !since.IsZero(), read without the lock: Ended is called on
	// every success (an accepted request, an OK call), nearly always with
	// no run to end.
	open     atomic.Bool
	mu       sync.Mutex
	since    time.Time // the run's first logged failure; zero: no run
	lastLine time.Time // the last failure line
	pending  int       // failures not yet in a line
	logged   int       // failures of the run in lines written
}

// FailureLine is what a failure or the end of a run asks the caller to log.
type FailureLine struct {
	// Log: write a line now.
	Log bool
	// First: the run's first line (otherwise it goes on, or it ended).
	First bool
	// Failures the line stands for: since the last line, or for the end
	// of a run all of it. Unlogged is how many of them no line told.
	Failures, Unlogged int
	// FailingFor is how long the run has lasted.
	FailingFor time.Duration
}

// Failed records a failure at now.
func (r *FailureRun) Failed(now time.Time) FailureLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending++
	if !r.lastLine.IsZero() && now.Sub(r.lastLine) < r.Every {
		return FailureLine{}
	}
	first := r.since.IsZero()
	if first {
		r.since = now
		r.open.Store(true)
	}
	n := r.pending
	r.logged += n
	r.pending, r.lastLine = 0, now
	return FailureLine{Log: true, First: first, Failures: n, FailingFor: now.Sub(r.since)}
}

// Ended records a success at now: a run that was going on ends, and its
// line counts all of it.
func (r *FailureRun) Ended(now time.Time) FailureLine {
	if !r.open.Load() {
		return FailureLine{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.since.IsZero() {
		return FailureLine{}
	}
	l := FailureLine{Log: true, Failures: r.logged + r.pending, Unlogged: r.pending, FailingFor: now.Sub(r.since)}
	r.since, r.logged, r.pending = time.Time{}, 0, 0
	r.open.Store(false)
	return l
}

// FailureRuns keeps a FailureRun per key (a channel, a method), made on
// first use; reading one takes no lock.
type FailureRuns struct {
	Every time.Duration
	runs  sync.Map // key -> *FailureRun
}

// Of is key's run, made if it has none.
func (rs *FailureRuns) Of(key string) *FailureRun {
	if r, ok := rs.runs.Load(key); ok {
		return r.(*FailureRun)
	}
	r, _ := rs.runs.LoadOrStore(key, &FailureRun{Every: rs.Every})
	return r.(*FailureRun)
}

// Ended records a success of key at now (FailureRun.Ended); a key that
// never failed has nothing to end.
func (rs *FailureRuns) Ended(key string, now time.Time) FailureLine {
	r, ok := rs.runs.Load(key)
	if !ok {
		return FailureLine{}
	}
	return r.(*FailureRun).Ended(now)
}
