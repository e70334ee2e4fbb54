package bus

import (
	"log/slog"
	"sync"
	"time"
)

// repeatEvery is how often an error that keeps coming is logged again.
const repeatEvery = time.Minute

// repeatedErrors logs nats' asynchronous errors: each new one at once,
// the same one again at most once a repeatEvery with how many were not
// logged. A server that refuses the login on every reconnect attempt (its
// users being changed) reports one a second, for as long as it lasts.
type repeatedErrors struct {
	log *slog.Logger

	mu         sync.Mutex
	last       string    // the error last logged
	lastLogged time.Time // when
	skipped    int       // repeats of last since then
}

func (r *repeatedErrors) report(subject string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now, msg := time.Now(), err.Error()
	if msg == r.last && now.Sub(r.lastLogged) < repeatEvery {
		r.skipped++
		return
	}
	if msg == r.last {
		r.log.Warn("nats async error, still", "subject", subject, "error", err, "repeats_not_logged", r.skipped)
	} else {
		r.log.Warn("nats async error", "subject", subject, "error", err)
	}
	r.last, r.lastLogged, r.skipped = msg, now, 0
}

// reset forgets the last error (a reconnect ends a run of them) and
// returns how many repeats of it were not logged.
func (r *repeatedErrors) reset() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.skipped
	r.last, r.skipped = "", 0
	return n
}
