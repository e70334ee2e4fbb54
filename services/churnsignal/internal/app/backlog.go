package app

import (
	"context"
	"time"
)

// Which tenants are behind (decision 0037).
//
// The consumer is shared by every tenant, and one shop's history import
// puts it far behind the stream: the live orders of the other shops wait
// behind the import, and their batches are behind by its length too. What
// makes band changes of half-loaded data is a tenant's own facts arriving
// in bulk, so a tenant is behind only while the consumer is (behind: the
// cheap check, in this process, of its batches' lag) and it has more than
// HoldMinBacklog of the tenant's facts yet to apply (the server's count,
// Config.TenantBacklog).

// backlogFresh is how long a tenant's answer of backlogBehind is reused:
// each answer costs the server a consumer's creation, and a batch asks
// for each of its tenants. Short, as an answer that a tenant is not behind
// may turn as its own import starts.
const backlogFresh = 2 * time.Second

// backlogAnswer is backlogBehind's answer for a tenant, given at at.
type backlogAnswer struct {
	at     time.Time
	behind bool
}

// tenantBehind reports whether tenant's facts are behind the stream: the
// consumer is (behind), and with more than HoldMinBacklog of the
// tenant's facts yet to apply (backlogBehind).
func (e *Engine) tenantBehind(ctx context.Context, tenant string) bool {
	if _, far := e.behind(); !far {
		return false
	}
	return e.backlogBehind(ctx, tenant)
}

// backlogBehind reports whether the consumer has more than HoldMinBacklog
// of tenant's facts yet to apply, asked of the server at most every
// backlogFresh per tenant. A backlog that cannot be read counts as
// behind, as before 0037 every tenant was with the consumer; so does every
// tenant without Config.TenantBacklog. A tenant found caught up after
// being behind wakes the refit loop, which publishes what it held.
func (e *Engine) backlogBehind(ctx context.Context, tenant string) bool {
	if e.cfg.TenantBacklog == nil {
		return true
	}
	e.bmu.Lock()
	last, known := e.backlogs[tenant]
	e.bmu.Unlock()
	if known && time.Since(last.at) < backlogFresh {
		return last.behind
	}
	n, err := e.cfg.TenantBacklog(ctx, tenant)
	behind := err != nil || n > e.cfg.HoldMinBacklog
	e.bmu.Lock()
	e.backlogs[tenant] = backlogAnswer{at: time.Now(), behind: behind}
	e.bmu.Unlock()
	switch {
	case err != nil && ctx.Err() == nil:
		if l := e.backlogErrs.Failed(time.Now()); l.Log {
			e.log.Warn("reading a tenant's facts backlog failed: its band changes are held while the consumer is behind", "tenant", tenant, "error", err, "failures", l.Failures)
		}
	case err == nil:
		if l := e.backlogErrs.Ended(time.Now()); l.Log {
			e.log.Info("tenants' facts backlogs read again", "failures", l.Failures, "took", l.FailingFor.Round(time.Second))
		}
	}
	if known && last.behind && !behind {
		e.wakeLoop()
	}
	return behind
}
