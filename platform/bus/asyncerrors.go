package bus

import (
	"log/slog"
	"sync"
	"time"

	"github.com/retainhq/retain/platform/telemetry"
)

// repeatEvery is how often an error that keeps coming is logged again.
const repeatEvery = time.Minute

// repeatedErrors logs nats' asynchronous errors: each new one at once,
// the same one again at most once a repeatEvery with how many came since
// (a telemetry.FailureRun per error text). A server that refuses the
// login on every reconnect attempt (its users being changed) reports one a
// second, for as long as it lasts.
type repeatedErrors struct {
	log *slog.Logger

	mu   sync.Mutex
	last string // the error of run
	run  *telemetry.FailureRun
}

func (r *repeatedErrors) report(subject string, err error) {
	r.mu.Lock()
	if msg := err.Error(); msg != r.last || r.run == nil {
		r.last, r.run = msg, &telemetry.FailureRun{Every: repeatEvery}
	}
	l := r.run.Failed(time.Now())
	r.mu.Unlock()
	switch {
	case !l.Log:
	case l.First:
		r.log.Warn("nats async error", "subject", subject, "error", err)
	default:
		r.log.Warn("nats async error, still", "subject", subject, "error", err, "repeats", l.Failures)
	}
}

// reset ends the current run of an error (a reconnect ends it) and returns
// how many of its repeats no line told.
func (r *repeatedErrors) reset() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.run == nil {
		return 0
	}
	n := r.run.Ended(time.Now()).Unlogged
	r.last, r.run = "", nil
	return n
}
