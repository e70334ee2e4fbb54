package pg

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// OutageLog reports the failures of a task that runs again and again on the
// database (a poll loop, a timer pass, a look-up per batch): an outage is
// logged once when it starts, with the error, and once when it ends, with
// how long it lasted and how many passes failed, instead of once a pass (a
// loop polling every second writes a line a second for as long as the
// database is away). A failure while the database answers, a statement
// that fails, is no outage: it is logged every time, as before.
//
// The zero value is not usable: make one with NewOutageLog, or set Log,
// Down and Up. It is safe for concurrent use.
type OutageLog struct {
	Log *slog.Logger
	// Down is logged at warn when an outage starts, with its error
	// ("error") and the attributes of the failing pass.
	Down string
	// Up is logged at info when it ends, with its duration ("outage") and
	// the count of failed passes (Count).
	Up string
	// Count names the attribute counting the failed passes;
	// "failed_passes" when empty.
	Count string
	// Ping, when set, decides about an error Unreachable does not
	// recognise (a connection lost mid-statement): the database is away
	// when it does not answer a ping within a few seconds (decision 0018).
	Ping func(context.Context) error
	// Now, when set, is the clock of the outage's start and end (Away,
	// LastEnded); time.Now otherwise.
	Now func() time.Time

	mu     sync.Mutex
	failed int64
	since  time.Time
	ended  time.Time
}

func (o *OutageLog) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Away reports whether the task's last pass met an outage not yet ended.
func (o *OutageLog) Away() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.failed > 0
}

// LastEnded is when the last outage ended (zero: none has yet), on Now.
// It is recorded before the end is logged.
func (o *OutageLog) LastEnded() time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.ended
}

// NewOutageLog returns the outage log of the task named what (e.g. "timer
// pass"), pinging with ping (may be nil).
func NewOutageLog(log *slog.Logger, what string, ping func(context.Context) error) *OutageLog {
	return &OutageLog{
		Log:  log,
		Down: what + ": database unreachable; logged again when it answers",
		Up:   what + ": database answers again",
		Ping: ping,
	}
}

// Pass records the outcome of one pass of the task: nil and a failure
// while the database answers end an outage; a failure because it does not
// answer (Unreachable, or a failed Ping) starts one or counts towards it.
// A failure that is no outage is logged at warn with msg, err and attrs.
// It reports whether err was an outage.
func (o *OutageLog) Pass(ctx context.Context, err error, msg string, attrs ...any) bool {
	if err == nil {
		o.Answered()
		return false
	}
	if o.isOutage(ctx, err) {
		o.Failed(err, attrs...)
		return true
	}
	o.Answered()
	o.Log.Warn(msg, append(attrs, "error", err)...)
	return false
}

func (o *OutageLog) isOutage(ctx context.Context, err error) bool {
	if Unreachable(err) {
		return true
	}
	if o.Ping == nil || ctx.Err() != nil {
		return false
	}
	return NotAnswering(context.WithoutCancel(ctx), o.Ping)
}

// Failed records a pass that failed because the database is away (the
// caller decided): the first of an outage is logged, with err and attrs.
func (o *OutageLog) Failed(err error, attrs ...any) {
	o.mu.Lock()
	o.failed++
	first := o.failed == 1
	if first {
		o.since = o.now()
	}
	o.mu.Unlock()
	if first {
		o.Log.Warn(o.Down, append(attrs, "error", err)...)
	}
}

// Answered records a pass that reached the database: it ends an outage,
// logging how long it lasted and how many passes failed.
func (o *OutageLog) Answered() {
	o.mu.Lock()
	n, since := o.failed, o.since
	o.failed = 0
	now := o.now()
	if n > 0 {
		o.ended = now
	}
	o.mu.Unlock()
	if n == 0 {
		return
	}
	count := o.Count
	if count == "" {
		count = "failed_passes"
	}
	o.Log.Info(o.Up, "outage", now.Sub(since).Round(time.Millisecond), count, n)
}
