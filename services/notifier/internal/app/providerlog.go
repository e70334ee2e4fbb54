package app

import (
	"log/slog"
	"sync"
	"time"
)

// providerLogEvery is the longest a failing provider goes without a log
// line while messages keep failing.
const providerLogEvery = time.Minute

// Messages of providerLog, constant so that a log query can find them.
const (
	msgProviderFailing   = "notification provider failing; further failures are counted and logged once a minute until it accepts a message again"
	msgProviderStill     = "notification provider still failing"
	msgProviderRecovered = "notification provider accepts messages again"
)

// providerLog logs provider failures per channel without a line per
// message: a provider down for minutes fails every message sent to it
// (and every retry), thousands of lines that say one thing. The first
// failure is logged with the provider's answer, then at most one line per
// providerLogEvery with the count since the last line and the latest
// answer, then one line when the provider accepts a message again, with
// the count and how long it failed. Failures in the same interval as a
// recovery line (a provider rejecting some messages and taking others) are
// counted into the next failure line, so a channel writes at most two
// lines per interval whatever the traffic.
//
// pg.OutageLog does not fit: it tells an outage by pinging the database,
// logs every other failure, and writes nothing while an outage lasts.
type providerLog struct {
	log   *slog.Logger
	every time.Duration

	mu    sync.Mutex
	state map[string]*providerState // by channel name
}

type providerState struct {
	since    time.Time // first logged failure; zero when none is open
	lastLine time.Time // last failure line
	pending  int       // failures not yet in a line
	logged   int       // failures since since, in lines written
}

// providerFailure is one failed provider call as the log shows it.
type providerFailure struct {
	channel, tenant, requestID string
	attempt                    int32
	code                       string
	willRetry                  bool
	err                        error // the provider's answer
}

func newProviderLog(log *slog.Logger, every time.Duration) *providerLog {
	return &providerLog{log: log, every: every, state: map[string]*providerState{}}
}

func (p *providerLog) stateOf(ch string) *providerState {
	s := p.state[ch]
	if s == nil {
		s = &providerState{}
		p.state[ch] = s
	}
	return s
}

// failed records a failed provider call at now.
func (p *providerLog) failed(now time.Time, f providerFailure) {
	p.mu.Lock()
	s := p.stateOf(f.channel)
	s.pending++
	if !s.lastLine.IsZero() && now.Sub(s.lastLine) < p.every {
		p.mu.Unlock()
		return
	}
	first := s.since.IsZero()
	if first {
		s.since = now
	}
	n, since := s.pending, s.since
	s.logged += n
	s.pending, s.lastLine = 0, now
	p.mu.Unlock()
	msg, attrs := msgProviderFailing, []any{"channel", f.channel, "failures", n}
	if !first {
		msg, attrs = msgProviderStill, append(attrs, "failing_for", now.Sub(since).Round(time.Second))
	}
	// The failure that wrote the line stands for the others.
	p.log.Warn(msg, append(attrs, "tenant", f.tenant, "request_id", f.requestID, "attempt", f.attempt,
		"reason", f.code, "will_retry", f.willRetry, "error", f.err)...)
}

// accepted records a provider call at now that the provider accepted.
func (p *providerLog) accepted(now time.Time, ch string) {
	p.mu.Lock()
	s := p.stateOf(ch)
	if s.since.IsZero() {
		p.mu.Unlock()
		return
	}
	n, since := s.logged+s.pending, s.since
	s.since, s.logged, s.pending = time.Time{}, 0, 0
	p.mu.Unlock()
	p.log.Info(msgProviderRecovered, "channel", ch, "failures", n, "failing_for", now.Sub(since).Round(time.Second))
}
