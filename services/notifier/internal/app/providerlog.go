package app

import (
	"log/slog"
	"time"

	"github.com/retainhq/retain/platform/telemetry"
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
// (and every retry), thousands of lines that say one thing. Each channel's
// failures are a telemetry.FailureRun: the first is logged with the
// provider's answer, then at most one line per providerLogEvery with the
// count since the last line and the latest answer, then one line when the
// provider accepts a message again, with the count and how long it failed.
//
// pg.OutageLog does not fit: it tells an outage by pinging the database,
// logs every other failure, and writes nothing while an outage lasts.
type providerLog struct {
	log  *slog.Logger
	runs telemetry.FailureRuns // by channel name
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
	return &providerLog{log: log, runs: telemetry.FailureRuns{Every: every}}
}

// failed records a failed provider call at now.
func (p *providerLog) failed(now time.Time, f providerFailure) {
	l := p.runs.Of(f.channel).Failed(now)
	if !l.Log {
		return
	}
	msg, attrs := msgProviderFailing, []any{"channel", f.channel, "failures", l.Failures}
	if !l.First {
		msg, attrs = msgProviderStill, append(attrs, "failing_for", l.FailingFor.Round(time.Second))
	}
	// The failure that wrote the line stands for the others.
	p.log.Warn(msg, append(attrs, "tenant", f.tenant, "request_id", f.requestID, "attempt", f.attempt,
		"reason", f.code, "will_retry", f.willRetry, "error", f.err)...)
}

// accepted records a provider call at now that the provider accepted.
func (p *providerLog) accepted(now time.Time, ch string) {
	if l := p.runs.Ended(ch, now); l.Log {
		p.log.Info(msgProviderRecovered, "channel", ch, "failures", l.Failures, "failing_for", l.FailingFor.Round(time.Second))
	}
}
