package app

import (
	"context"
	"sync"
	"time"

	"github.com/retainhq/retain/platform/pg"
)

// takeOverGrace is how long after it starts, and after its database
// answers again following an outage, a replica leaves other attempts'
// lapsed leases alone (it still sends what is queued); a lease that lapsed
// more than a whole lease ago is taken over whatever, so that a database
// whose connections keep dropping (each drop ends an outage) cannot hold a
// crashed send back for good. The lease of an
// attempt whose replica holds a provider's answer (finish) may lapse
// during a long outage; that replica saves the answer within holdRetry of
// the database answering, and a replica that took the delivery over first
// would send the message again. The restarted or reconnected replicas are
// exactly those that may have missed the answer being held.
const takeOverGrace = 5 * holdRetry

// passLog is what loop reports each pass's outcome to.
type passLog interface {
	Pass(ctx context.Context, err error, msg string, attrs ...any) bool
}

// senderOutage is the sender's outage log, which also keeps when the
// sender may take lapsed leases over (takeOverGrace). The grace is kept on
// the engine's clock (Config.Now), as the leases are, so that tests can
// move it instead of waiting for it.
type senderOutage struct {
	*pg.OutageLog
	now func() time.Time

	mu sync.Mutex
	// away: the sender's last pass or held save did not reach the
	// database. The pass that first reaches it again is still within the
	// grace: its claim is the one that would meet the leases that lapsed
	// during the outage, before their holders saved their answers.
	away bool
	// quiet is since when the sender has reached its database: the
	// engine's start, or the end of its last outage.
	quiet time.Time
}

func newSenderOutage(log *pg.OutageLog, now func() time.Time) *senderOutage {
	return &senderOutage{OutageLog: log, now: now, quiet: now()}
}

// mayTakeOver reports whether a claim now may take over lapsed leases
// that lapsed less than a lease ago.
func (o *senderOutage) mayTakeOver() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.away && o.now().Sub(o.quiet) >= takeOverGrace
}

// reached records whether the sender's pass or save reached the database.
func (o *senderOutage) reached(ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok {
		o.away = true
	} else if o.away {
		o.away, o.quiet = false, o.now()
	}
}

// Pass is pg.OutageLog.Pass, for loop. The end of an outage is recorded
// before it is logged, so that whoever reads the log line (a test moving
// the clock past the grace) finds the grace started.
func (o *senderOutage) Pass(ctx context.Context, err error, msg string, attrs ...any) bool {
	if err == nil {
		o.Answered()
		return false
	}
	away := o.OutageLog.Pass(ctx, err, msg, attrs...)
	o.reached(!away)
	return away
}

// Failed is pg.OutageLog.Failed, for a failure the sender met within a
// pass (unprepared, finish).
func (o *senderOutage) Failed(err error, attrs ...any) {
	o.reached(false)
	o.OutageLog.Failed(err, attrs...)
}

// Answered is pg.OutageLog.Answered, for a held result saved (finish).
func (o *senderOutage) Answered() {
	o.reached(true)
	o.OutageLog.Answered()
}
