package app

import (
	"context"
	"fmt"
	"time"

	"github.com/retainhq/retain/services/notifier/internal/policy"
	"github.com/retainhq/retain/services/notifier/internal/store"
)

// CodeContactsPending is the deferral of a request held for the
// customer's profile (holdForContacts).
const CodeContactsPending = "contacts_pending"

// The first look again at a request held for the customer's profile
// comes contactsHoldMin after the hold, each next one twice as long
// after the last, at most contactsHoldMax: the contacts consumer
// mostly catches up within seconds (a batch behind the requests), and
// after an outage within a minute or two.
const (
	contactsHoldMin = time.Second
	contactsHoldMax = 30 * time.Second
)

// contactsBacklogTimeout bounds the reads of the tenants' contacts
// backlogs in one decide pass, together: the decision's transaction,
// which holds the customers' locks and must not idle past its bound,
// waits for them. A tenant left when it is spent is held unasked.
const contactsBacklogTimeout = 5 * time.Second

// contactsWarnEvery paces the warning that backlogs cannot be read: every
// pass meets it while NATS is away.
const contactsWarnEvery = time.Minute

// pendingContacts answers, for one decide pass, whether the contacts
// consumer has yet to apply customer.updated events of a tenant. It asks
// the server once per tenant, and only for a tenant with a request that
// would fail for want of a profile: a request that is sent costs no
// probe.
type pendingContacts struct {
	e     *Engine
	known map[string]int64
	// deadline ends the pass's reads (contactsBacklogTimeout), set at
	// the first.
	deadline time.Time
	// failed is the first read of the pass that failed: NATS is away or
	// refuses the probe, and every later read of the pass would wait as
	// long, so the pass holds the rest without asking.
	failed error
}

func (e *Engine) contactsPending() *pendingContacts {
	return &pendingContacts{e: e, known: map[string]int64{}}
}

// of reports whether a request of tenant that would fail for want of the
// customer's profile is held, and why: the tenant's backlog is not 0, or
// could not be read. A failure is final and a hold is not, so a backlog
// that cannot be read holds.
//
// A backlog of 0 means every customer.updated of the tenant on the
// stream is applied and committed: the consumer acknowledges a message
// after its batch commits, and a batch with an update of a customer
// being decided waits for the decision's customer lock (ApplyContacts
// takes the same), so it is still unacknowledged, and counted, until the
// decision has committed.
func (p *pendingContacts) of(ctx context.Context, tenant string) (why string, wait bool) {
	const unreadable = "the notifier cannot tell now whether it has applied all of the shop's customer.updated events"
	if p.e.cfg.ContactsBacklog == nil {
		return "", false
	}
	if p.failed != nil {
		return unreadable, true
	}
	n, ok := p.known[tenant]
	if !ok {
		if p.deadline.IsZero() {
			p.deadline = time.Now().Add(contactsBacklogTimeout)
		}
		rctx, cancel := context.WithDeadline(ctx, p.deadline)
		defer cancel()
		var err error
		if n, err = p.e.cfg.ContactsBacklog(rctx, tenant); err != nil {
			p.failed = err
			if p.e.contactsUnread.Failed(time.Now()).Log {
				p.e.log.Warn("notifier cannot tell whether it has applied the shop's customer.updated events: requests for customers without a profile (or the channel's address) are held, not failed, until it can",
					"tenant", tenant, "error", err, "next_log_in", contactsWarnEvery)
			}
			return unreadable, true
		}
		p.known[tenant] = n
	}
	return fmt.Sprintf("the notifier has %d of the shop's customer.updated events still to apply", n), n > 0
}

// holdForContacts turns r, a failure for want of the customer's profile
// (unknown_customer, no_address), into a deferral of d, decided again
// shortly: the customer's customer.updated may be on the stream, not yet
// applied by the contacts consumer, which runs apart from the requests'.
// why is pendingContacts.of's. rehold
// reports whether d was already held so: its outcome and trail step came
// with the hold's start, and are not repeated on each look again.
func holdForContacts(r policy.Result, d *store.Delivery, why string, now time.Time) (_ policy.Result, rehold bool) {
	rehold = d.Status == store.StatusDeferred && d.ReasonCode == CodeContactsPending
	wait := contactsHoldMin
	if rehold && d.DueAt != nil {
		// The last hold's length: it was saved at its start (updated_at).
		wait = min(max(2*d.DueAt.Sub(d.UpdatedAt), contactsHoldMin), contactsHoldMax)
	}
	until := now.Add(wait)
	if !d.ExpiresAt.IsZero() && until.After(d.ExpiresAt) {
		// Decided at its expiry, and suppressed as expired then.
		until = d.ExpiresAt
	}
	what := "no customer.updated of this customer is applied yet"
	if r.Code == policy.CodeNoAddress {
		what = "the customer's profile has no " + policy.AddressWord(d.Channel) + " yet"
	}
	reason := fmt.Sprintf("%s, and %s: waiting for the customer's profile (%s if it never comes), looked at again shortly", what, why, r.Code)
	r.Trail = append(r.Trail[:len(r.Trail)-1], policy.Step{Stage: "consent", Verdict: string(policy.Defer), Code: CodeContactsPending, Reason: reason})
	r.Verdict, r.Code, r.Reason, r.Until = policy.Defer, CodeContactsPending, reason, until
	return r, rehold
}
