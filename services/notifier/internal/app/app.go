// Package app is the notifier's use cases: project contacts, decide on
// requests (policy pipeline, decision trail, outcomes through the outbox),
// fire deferred timers, send with retries and reconcile interrupted sends.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/telemetry"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/channel"
	"github.com/retainhq/retain/services/notifier/internal/contacts"
	"github.com/retainhq/retain/services/notifier/internal/defaults"
	"github.com/retainhq/retain/services/notifier/internal/policy"
	"github.com/retainhq/retain/services/notifier/internal/render"
	"github.com/retainhq/retain/services/notifier/internal/store"
	"github.com/retainhq/retain/services/notifier/internal/unsub"
)

// Config tunes the engine.
type Config struct {
	Policy policy.Config
	// DefaultTTL is how long a request without expires_at may wait.
	DefaultTTL time.Duration
	// Lease is how long a send attempt may take before it is considered
	// interrupted and reconciled; keep it above the providers' timeouts.
	Lease time.Duration
	// SendTimeout bounds one provider call.
	SendTimeout time.Duration
	// HoldOnStop is how long, once shutdown begins, a provider's answer
	// held through a database outage is still retried (see finish); zero
	// gives up at once.
	HoldOnStop time.Duration
	// MaxAttempts of a transient failure before the delivery fails.
	MaxAttempts int
	// RetryInitial doubles per attempt up to RetryMax, with jitter.
	RetryInitial, RetryMax time.Duration
	// SendBatch deliveries are claimed at a time; SendWorkers send at once.
	SendBatch, SendWorkers int
	PollInterval           time.Duration
	// PublicURL is where the notifier's HTTP API is reachable from
	// customers' mail clients (unsubscribe links).
	PublicURL      string
	UnsubscribeKey []byte
	Now            func() time.Time
	// Meter makes the delivery and provider metrics; nil records nothing.
	Meter metric.Meter
	// ContactsBacklog is how many of a tenant's customer.updated events
	// the contacts consumer has yet to apply (bus.Consumer.TenantBacklog).
	// A request that would fail for want of the customer's profile is
	// held while it is not 0 or cannot be read (holdForContacts); nil
	// fails such requests at once.
	ContactsBacklog func(ctx context.Context, tenant string) (int64, error)
}

// Engine runs the use cases.
type Engine struct {
	pool    *pgxpool.Pool
	cfg     Config
	senders map[notifierv1.Channel]channel.Sender
	log     *slog.Logger
	wake    chan struct{}
	seeded  sync.Map // tenant -> true
	metrics instruments
	// providers logs provider failures, aggregated per channel.
	providers *providerLog
	// sendOutage logs the sender's database outages, those its passes
	// meet and those a held provider's answer meets (finish), once, and
	// keeps takeOverGrace.
	sendOutage *pg.OutageLog
	// started is when the engine was made, on its clock (mayTakeOver).
	started time.Time
	// contactsUnread paces the log of contacts backlogs that cannot be
	// read (pendingContacts).
	contactsUnread telemetry.FailureRun
}

// New returns an engine sending through senders (a channel without one
// fails its deliveries with channel_not_configured).
func New(pool *pgxpool.Pool, cfg Config, senders map[notifierv1.Channel]channel.Sender, log *slog.Logger) (*Engine, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Meter == nil {
		cfg.Meter = noop.NewMeterProvider().Meter("")
	}
	m, err := newInstruments(cfg.Meter)
	if err != nil {
		return nil, err
	}
	// The sender's outages also keep takeOverGrace (mayTakeOver), on the
	// engine's clock.
	sendOutage := pg.NewOutageLog(log, "notifier sender pass", pool.Ping)
	sendOutage.Now = cfg.Now
	return &Engine{pool: pool, cfg: cfg, senders: senders, log: log, wake: make(chan struct{}, 1), metrics: m,
		providers:      newProviderLog(log, providerLogEvery),
		contactsUnread: telemetry.FailureRun{Every: contactsWarnEvery},
		sendOutage:     sendOutage, started: cfg.Now()}, nil
}

func (e *Engine) now() time.Time { return e.cfg.Now().UTC().Truncate(time.Microsecond) }

func (e *Engine) poke() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// HandleContacts is the customer.updated consumer's handler.
func (e *Engine) HandleContacts(ctx context.Context, tx pgx.Tx, msgs []*bus.Delivery) error {
	var cs []contacts.Contact
	for _, m := range msgs {
		// The shop is the subject's (DecodeEvent refuses a body naming
		// another): the body alone could rewrite any shop's contacts.
		t, _, ev, err := bus.DecodeEvent(m.Subject, m.Data)
		if err != nil {
			m.Reject(err.Error())
			continue
		}
		ev.TenantId = t
		c, ok := contacts.FromEvent(ev)
		if !ok {
			m.Reject("not a customer.updated event with a customer_id")
			continue
		}
		cs = append(cs, c)
	}
	return store.ApplyContacts(ctx, tx, cs)
}

// validateRequest names what makes a request unusable (dead-lettered).
func validateRequest(r *notifierv1.NotificationRequested) error {
	var errs []error
	if r.GetRequestId() == "" || len(r.GetRequestId()) > 512 {
		errs = append(errs, errors.New("request_id: is required (at most 512 bytes)"))
	}
	if r.GetTenantId() == "" {
		errs = append(errs, errors.New("tenant_id: is required"))
	}
	if r.GetCustomerId() == "" {
		errs = append(errs, errors.New("customer_id: is required"))
	}
	if r.GetChannel() == notifierv1.Channel_CHANNEL_UNSPECIFIED || notifierv1.Channel_name[int32(r.GetChannel())] == "" {
		errs = append(errs, fmt.Errorf("channel: %d is not email, sms or webhook", r.GetChannel()))
	}
	if r.GetCategory() == notifierv1.Category_CATEGORY_UNSPECIFIED || notifierv1.Category_name[int32(r.GetCategory())] == "" {
		errs = append(errs, errors.New("category: must be transactional or marketing"))
	}
	if r.GetTemplateKey() == "" {
		errs = append(errs, errors.New("template_key: is required"))
	}
	return errors.Join(errs...)
}

// HandleRequests is the notification.requested consumer's handler: it
// records each new request id and runs the policy on it, in the batch's
// transaction. A request id seen before (a redelivery, or a requester that
// published twice beyond the stream's dedupe window) changes nothing.
func (e *Engine) HandleRequests(ctx context.Context, tx pgx.Tx, msgs []*bus.Delivery) error {
	now := e.now()
	var ds []store.Delivery
	seen := map[store.Key]bool{}
	for _, m := range msgs {
		var r notifierv1.NotificationRequested
		if err := proto.Unmarshal(m.Data, &r); err != nil {
			m.Reject(fmt.Sprintf("decode retain.notifier.v1.NotificationRequested: %v", err))
			continue
		}
		if err := validateRequest(&r); err != nil {
			m.Reject(err.Error())
			continue
		}
		// A request is the shop's whose subject it came on, as a fact is
		// (bus.DecodeEvent): a body naming another shop is refused.
		if t, _, err := bus.SplitSubject(bus.NotificationsSubjectPrefix, m.Subject); err != nil || t != r.GetTenantId() {
			m.Reject(fmt.Sprintf("tenant_id %q is not the shop of subject %q (retain.notifications.<tenant>.<type>)", r.GetTenantId(), m.Subject))
			continue
		}
		k := store.Key{Tenant: r.GetTenantId(), Customer: r.GetRequestId()}
		if seen[k] {
			continue
		}
		seen[k] = true
		ds = append(ds, e.newDelivery(&r, now))
	}
	var t tally
	if _, err := e.admit(ctx, tx, ds, now, &t); err != nil {
		return err
	}
	// Counted when the batch (or a dead-letter replay) commits: a batch
	// that rolls back is redelivered and decided again, and a redelivery of
	// a committed one is a duplicate the inbox drops before this handler.
	// So each outcome is counted at most once: a COMMIT that succeeds on
	// the server but whose answer is lost is never counted.
	bus.AfterCommit(ctx, func() { e.metrics.count(ctx, t) })
	return nil
}

func (e *Engine) newDelivery(r *notifierv1.NotificationRequested, now time.Time) store.Delivery {
	requested := now
	if r.GetRequestedAt() != nil {
		requested = r.GetRequestedAt().AsTime()
	}
	expires := requested.Add(e.cfg.DefaultTTL)
	if r.GetExpiresAt() != nil {
		expires = r.GetExpiresAt().AsTime()
	}
	return store.Delivery{
		Tenant: r.GetTenantId(), RequestID: r.GetRequestId(), CustomerID: r.GetCustomerId(),
		Channel: r.GetChannel(), Category: r.GetCategory(), Priority: r.GetPriority(), Rank: r.GetRank(), TemplateKey: r.GetTemplateKey(),
		CampaignID: r.GetOrigin().GetCampaignId(), Request: r, ExpiresAt: expires, RequestedAt: requested,
	}
}

// admit inserts new requests and decides on those that were new, adding
// the outcomes to t.
func (e *Engine) admit(ctx context.Context, tx pgx.Tx, ds []store.Delivery, now time.Time, t *tally) (int, error) {
	if len(ds) == 0 {
		return 0, nil
	}
	fresh, err := store.InsertDeliveries(ctx, tx, ds, now)
	if err != nil {
		return 0, err
	}
	var todo []store.Delivery
	var keys []store.Key
	for _, d := range ds {
		if fresh[store.Key{Tenant: d.Tenant, Customer: d.RequestID}] {
			todo = append(todo, d)
			keys = append(keys, store.Key{Tenant: d.Tenant, Customer: d.CustomerID})
		}
	}
	if len(keys) == 0 {
		return 0, nil
	}
	slices.SortFunc(keys, store.CompareKeys)
	keys = slices.Compact(keys)
	if err := store.LockCustomers(ctx, tx, keys); err != nil {
		return len(todo), err
	}
	_, err = e.decide(ctx, tx, keys, todo, now, t)
	return len(todo), err
}

// decide runs the policy in tx for the customers keys (each once): on
// fresh, their new requests, and on every deferred request of theirs that
// is due; it records each result (trail, state, outcome), adds the
// outcomes to t and returns how many requests it decided.
//
// All of a customer's due requests are decided together, in
// decisionOrder, under the customer's lock, so the cap's free slots go to
// the customer's most important requests whatever batch each came in: a
// new request does not take the slot of a higher-ranked one whose
// deferral has just ended, and two timer passes do not split a customer's
// due requests between them (ClaimDueCustomers). tx must already hold the
// locks of keys, taken before the deferred rows: admit takes them with
// LockCustomers, a timer pass has them from ClaimDueCustomers, which
// returns only the customers it locked (taking them again in the same
// transaction would be granted at once and change nothing).
func (e *Engine) decide(ctx context.Context, tx pgx.Tx, keys []store.Key, fresh []store.Delivery, now time.Time, t *tally) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	due, err := store.LockDueDeferred(ctx, tx, keys, now)
	if err != nil {
		return 0, err
	}
	ds := append(fresh, due...)
	sort.Slice(ds, func(i, j int) bool { return decisionOrder(&ds[i], &ds[j]) })
	cs, err := store.LoadContacts(ctx, tx, keys)
	if err != nil {
		return 0, err
	}
	prefs, err := store.LoadPrefs(ctx, tx, keys)
	if err != nil {
		return 0, err
	}
	var sk []store.SuppKey
	for k, c := range cs {
		sk = append(sk, store.SuppKey{Tenant: k.Tenant, Channel: notifierv1.Channel_CHANNEL_EMAIL, Address: c.Email},
			store.SuppKey{Tenant: k.Tenant, Channel: notifierv1.Channel_CHANNEL_SMS, Address: c.Phone})
	}
	supp, err := store.LoadSuppressions(ctx, tx, sk)
	if err != nil {
		return 0, err
	}
	capTimes, err := store.LoadCapTimes(ctx, tx, keys, now.Add(-e.cfg.Policy.CapWindow))
	if err != nil {
		return 0, err
	}
	var outbox []bus.Message
	saves := make([]store.Delivery, 0, len(ds))
	trails := make([]store.Trail, 0, len(ds))
	pending := e.contactsPending()
	for _, d := range ds {
		k := store.Key{Tenant: d.Tenant, Customer: d.CustomerID}
		c := cs[k]
		f := policy.Facts{Now: now, Channel: d.Channel, Category: d.Category, Priority: d.Priority, Expires: d.ExpiresAt,
			Known: c.Known, TimeZone: c.TZ, CapTimes: capTimes[k]}
		switch d.Channel {
		case notifierv1.Channel_CHANNEL_EMAIL:
			f.Address, f.Consent, f.ConsentAt = c.Email, c.EmailConsent, c.EmailConsentAt
		case notifierv1.Channel_CHANNEL_SMS:
			f.Address, f.Consent, f.ConsentAt = c.Phone, c.SMSConsent, c.SMSConsentAt
		}
		if f.Address != "" {
			f.Suppressed = supp[store.SuppKey{Tenant: d.Tenant, Channel: d.Channel, Address: store.NormalizeAddress(d.Channel, f.Address)}]
		}
		if p, ok := prefs[store.PrefKey{Key: k, Channel: d.Channel, Category: d.Category}]; ok {
			f.Pref = &p
		}
		r := policy.Decide(e.cfg.Policy, f)
		rehold := false
		if r.Verdict == policy.Fail && (r.Code == policy.CodeUnknownCustomer || r.Code == policy.CodeNoAddress) {
			if why, wait := pending.of(ctx, d.Tenant); wait {
				r, rehold = holdForContacts(r, &d, why, now)
			}
		}
		d.Locale = c.Locale
		d.DueAt = nil
		switch r.Verdict {
		case policy.Send:
			d.Status, d.DueAt = store.StatusQueued, &now
			if d.Category == notifierv1.Category_CATEGORY_MARKETING && d.Channel != notifierv1.Channel_CHANNEL_WEBHOOK {
				d.CapAt = &now
				capTimes[k] = append(capTimes[k], now)
			}
		case policy.Defer:
			until := r.Until
			d.Status, d.DueAt = store.StatusDeferred, &until
			if rehold {
				// Still held as it was: the outcome and the trail said so
				// when the hold began, and a hold is looked at again up to
				// every second.
				saves = append(saves, d)
				continue
			}
			outbox = append(outbox, e.outcome(t, &d, notifierv1.Outcome_OUTCOME_DEFERRED, r.Code, r.Reason, now))
		case policy.Suppress:
			d.Status = store.StatusSuppressed
			outbox = append(outbox, e.outcome(t, &d, notifierv1.Outcome_OUTCOME_SUPPRESSED, r.Code, r.Reason, now))
		case policy.Fail:
			d.Status = store.StatusFailed
			outbox = append(outbox, e.outcome(t, &d, notifierv1.Outcome_OUTCOME_FAILED, r.Code, r.Reason, now))
		}
		saves = append(saves, d)
		trails = append(trails, store.Trail{Tenant: d.Tenant, RequestID: d.RequestID, Steps: r.Trail})
	}
	if err := store.SaveAll(ctx, tx, saves, now); err != nil {
		return 0, err
	}
	if err := store.AddTrails(ctx, tx, trails, now); err != nil {
		return 0, err
	}
	if err := bus.Enqueue(ctx, tx, outbox...); err != nil {
		return 0, err
	}
	e.poke()
	return len(ds), nil
}

// decisionOrder is the order decide takes a customer's due requests in:
// by customer, then the higher rank first, then the higher priority
// (PRIORITY_UNSPECIFIED counts as PRIORITY_NORMAL, as the policy treats
// it), then the earlier requested, then by request id. They are new
// requests and deferred ones come due, e.g. a customer's requests of
// several campaigns held by quiet hours until the same morning, or a
// priority-90 campaign's and a priority-60 one's deferred over the cap
// until the same slot frees.
func decisionOrder(a, b *store.Delivery) bool {
	if a.Tenant != b.Tenant {
		return a.Tenant < b.Tenant
	}
	if a.CustomerID != b.CustomerID {
		return a.CustomerID < b.CustomerID
	}
	if a.Rank != b.Rank {
		return a.Rank > b.Rank
	}
	if pa, pb := effectivePriority(a.Priority), effectivePriority(b.Priority); pa != pb {
		return pa > pb
	}
	if !a.RequestedAt.Equal(b.RequestedAt) {
		return a.RequestedAt.Before(b.RequestedAt)
	}
	return a.RequestID < b.RequestID
}

func effectivePriority(p notifierv1.Priority) notifierv1.Priority {
	if p == notifierv1.Priority_PRIORITY_UNSPECIFIED {
		return notifierv1.Priority_PRIORITY_NORMAL
	}
	return p
}

var outcomeTypes = map[notifierv1.Outcome]string{
	notifierv1.Outcome_OUTCOME_SENT:       bus.TypeNotificationSent,
	notifierv1.Outcome_OUTCOME_FAILED:     bus.TypeNotificationFailed,
	notifierv1.Outcome_OUTCOME_SUPPRESSED: bus.TypeNotificationSuppressed,
	notifierv1.Outcome_OUTCOME_DEFERRED:   bus.TypeNotificationDeferred,
}

// outcome advances d's sequence, adds the outcome to t and returns its
// event for the outbox (Nats-Msg-Id "<tenant>/<request_id>/<sequence>").
func (e *Engine) outcome(t *tally, d *store.Delivery, o notifierv1.Outcome, code, reason string, now time.Time) bus.Message {
	*t = append(*t, outcomeKey{outcome: o, channel: d.Channel, code: code})
	d.Seq++
	d.Outcome, d.ReasonCode, d.Reason = o, code, reason
	ev := &notifierv1.DeliveryOutcome{
		RequestId: d.RequestID, TenantId: d.Tenant, CustomerId: d.CustomerID, Channel: d.Channel, Category: d.Category,
		Outcome: o, ReasonCode: code, Reason: reason, Origin: d.Request.GetOrigin(), DecidedAt: timestamppb.New(now),
		Sequence: d.Seq, Attempts: d.Attempts, ProviderMessageId: d.ProviderID,
	}
	if o == notifierv1.Outcome_OUTCOME_DEFERRED && d.DueAt != nil {
		ev.DeferredUntil = timestamppb.New(*d.DueAt)
	}
	data, _ := proto.Marshal(ev) // a message built here always marshals
	typ := outcomeTypes[o]
	return bus.Message{Subject: bus.DeliverySubject(d.Tenant, typ), ID: fmt.Sprintf("%s/%s/%d", d.Tenant, d.RequestID, d.Seq), Type: typ, Data: data}
}

// FireTimers re-decides the due deferred deliveries of the customers of
// the first limit of them, and returns how many it decided. Replicas
// share the work: each takes customers no other transaction is deciding
// (ClaimDueCustomers).
func (e *Engine) FireTimers(ctx context.Context, limit int) (int, error) {
	now := e.now()
	var n int
	var t tally
	err := pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
		keys, err := store.ClaimDueCustomers(ctx, tx, now, limit)
		if err != nil {
			return err
		}
		n, err = e.decide(ctx, tx, keys, nil, now, &t)
		return err
	})
	if err == nil {
		e.metrics.count(ctx, t)
	}
	return n, err
}

// Run fires timers and sends until ctx is done.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { e.checkStoredTemplates(ctx) })
	wg.Go(func() {
		e.loop(ctx, pg.NewOutageLog(e.log, "notifier timers pass", e.pool.Ping), "timers",
			func(ctx context.Context) (int, error) { return e.FireTimers(ctx, 500) })
	})
	wg.Go(func() {
		e.loop(ctx, e.sendOutage, "sender", func(pass context.Context) (int, error) { return e.sendDue(pass, ctx) })
	})
	wg.Wait()
	return nil
}

// checkStoredTemplates compiles the latest version of every stored
// template once at start-up and warns of each that no longer compiles: the
// limits of a newer release (decision 0027: no range, bounded sizes) refuse
// what an older one stored, and until it is updated every send with it
// fails template_invalid. A failed read is logged and not retried:
// the sends still say what fails.
func (e *Engine) checkStoredTemplates(ctx context.Context) {
	checked, broken := 0, 0
	err := store.EachLatestTemplate(ctx, e.pool, func(tenant string, t *notifierv1.Template) error {
		checked++
		if _, vs := render.Compile(t); len(vs) > 0 {
			broken++
			e.log.Warn("stored template does not compile: every send with it fails template_invalid until it is updated (retain templates apply)",
				"tenant", tenant, "template", t.GetKey(), "channel", channelName(t.GetChannel()), "version", t.GetVersion(),
				"field", vs[0].Field, "problem", vs[0].Description, "problems", len(vs))
		}
		return nil
	})
	if err != nil {
		e.log.Warn("stored templates not checked", "error", err)
		return
	}
	e.log.Info("stored templates checked", "templates", checked, "not_compiling", broken)
}

// loop runs pass until ctx is done, retrying a failure with backoff: a
// database outage is logged when it starts and when it ends (outage),
// any other failure every time.
func (e *Engine) loop(ctx context.Context, outage *pg.OutageLog, name string, pass func(context.Context) (int, error)) {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		// A pass in flight finishes even on shutdown, so that no attempt is
		// left between "sending" and its result longer than needed.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Lease)
		n, err := pass(pctx)
		cancel()
		outage.Pass(ctx, err, "notifier "+name+" pass failed, retrying", "retry_in", delay)
		if err != nil {
			if sleep(ctx, delay) != nil {
				return
			}
			delay = min(delay*2, 10*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if n > 0 {
			continue
		}
		t := time.NewTimer(e.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// sendDue claims due deliveries (committing the attempt first) and sends
// them, SendWorkers at a time; it returns how many it claimed. ctx bounds
// the pass; run is the engine's, done at shutdown, which ends the hold of
// a provider's answer through a database outage HoldOnStop later.
func (e *Engine) sendDue(ctx, run context.Context) (int, error) {
	takeOver := e.mayTakeOver()
	ds, err := store.ClaimSend(ctx, e.pool, e.now(), e.cfg.Lease, e.cfg.SendBatch, takeOver)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	hold, endHold := context.WithCancel(context.WithoutCancel(ctx))
	defer endHold()
	defer context.AfterFunc(run, func() { time.AfterFunc(e.cfg.HoldOnStop, endHold) })()
	sem := make(chan struct{}, max(1, e.cfg.SendWorkers))
	var wg sync.WaitGroup
	errs := make([]error, len(ds))
	for i := range ds {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = e.send(ctx, hold, ds[i])
		})
	}
	wg.Wait()
	if ctx.Err() == nil {
		return len(ds), errors.Join(errs...)
	}
	// Out of time, every message left failed alike with the pass's
	// deadline: one error for them rather than a line each. Other failures
	// (the database refusing a result before the deadline) are told as
	// they are.
	var outOfTime, others []error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, ctx.Err()):
			outOfTime = append(outOfTime, err)
		default:
			others = append(others, err)
		}
	}
	if len(outOfTime) > 0 {
		others = append([]error{fmt.Errorf("the pass ran out of its %s before %d of its %d messages were done (they are tried again once their lease runs out): %w",
			e.cfg.Lease, len(outOfTime), len(ds), outOfTime[0])}, others...)
	}
	return len(ds), errors.Join(others...)
}

// attemptResult is what one provider call ended in.
type attemptResult struct {
	providerID string
	locale     string
	version    int32
	err        error
	// failCode/failReason end the delivery without a provider call
	// (render failure, channel not configured).
	failCode, failReason string
	// expired: the request expired before this attempt, which was not
	// made (suppressed as the policy would).
	expired bool
	// called is whether the provider was called (err is then its answer),
	// took how long it answered in.
	called bool
	took   time.Duration
	// failure is err classified and retry whether the delivery is tried
	// again, decided once (classify) so that the metrics, the provider
	// log and the committed outcome cannot tell different stories.
	failure *channel.Error
	retry   bool
}

// classify sets res.failure and res.retry from res.err, for the
// attempt-th call of a delivery.
func (e *Engine) classify(res *attemptResult, attempt int32) {
	if res.err == nil {
		return
	}
	res.failure = channel.Classify(res.err)
	res.retry = !res.failure.Permanent && int(attempt) < e.cfg.MaxAttempts
}

func (e *Engine) send(ctx, hold context.Context, d store.Delivery) error {
	var steps []policy.Step
	if d.PrevStatus == store.StatusSending {
		// This replica cannot tell why: the process may have stopped or
		// stalled, or it held the provider's answer through a database
		// outage longer than the lease (finish; that process adds its own
		// step when the database answers).
		steps = append(steps, policy.Step{Stage: "reconcile", Verdict: "retry", Code: "attempt_interrupted",
			Reason: fmt.Sprintf("attempt %d recorded no result within its lease (its process stopped or stalled, or could not reach the database in time); sending again with the same idempotency key %q (email: the same Message-ID)", d.Attempts-1, d.Tenant+"/"+d.RequestID)})
	}
	// The policy checked the expiry when it decided; a retry or a
	// reconcile can come after it.
	if policy.Expired(d.ExpiresAt, e.now()) {
		return e.finish(ctx, hold, d, attemptResult{expired: true}, steps)
	}
	res := e.attempt(ctx, d)
	e.classify(&res, d.Attempts)
	if res.called {
		e.observe(ctx, d, res)
	}
	return e.finish(ctx, hold, d, res, steps)
}

// observe records a provider call in the metrics and the provider log.
// The call happened whether or not its result is committed afterwards,
// so it is recorded at once.
func (e *Engine) observe(ctx context.Context, d store.Delivery, res attemptResult) {
	now := e.now()
	if res.err == nil {
		e.metrics.attempt(ctx, d.Channel, resultAccepted, nil, res.took)
		e.providers.accepted(now, channelName(d.Channel))
		return
	}
	result := resultFailed
	if res.retry {
		result = resultRetried
	}
	e.metrics.attempt(ctx, d.Channel, result, res.failure, res.took)
	e.providers.failed(now, providerFailure{channel: channelName(d.Channel), tenant: d.Tenant, requestID: d.RequestID,
		attempt: d.Attempts, code: res.failure.Code, willRetry: res.retry, err: res.failure.Err})
}

func (e *Engine) attempt(ctx context.Context, d store.Delivery) attemptResult {
	tpl, err := e.template(ctx, d.Tenant, d.TemplateKey, d.Channel)
	if errors.Is(err, store.ErrNotFound) {
		return attemptResult{failCode: "template_not_found", failReason: fmt.Sprintf("no %s template %q", channelWord(d.Channel), d.TemplateKey)}
	}
	if err != nil {
		return e.unprepared(ctx, d, "template", err)
	}
	compiled, vs := render.Compile(tpl)
	if vs != nil {
		return attemptResult{failCode: "template_invalid", failReason: fmt.Sprintf("template %s v%d does not compile: %s: %s", tpl.GetKey(), tpl.GetVersion(), vs[0].Field, vs[0].Description)}
	}
	cs, err := store.LoadContacts(ctx, e.pool, []store.Key{{Tenant: d.Tenant, Customer: d.CustomerID}})
	if err != nil {
		return e.unprepared(ctx, d, "customer's contact", err)
	}
	c := cs[store.Key{Tenant: d.Tenant, Customer: d.CustomerID}]
	msg, rerr := compiled.Render(render.Input{
		Tenant:    d.Tenant,
		Locale:    render.Locale{Tag: c.Locale, Zone: e.zone(c.TZ)},
		Variables: d.Request.GetVariables(),
		Customer: map[string]string{"first_name": c.FirstName, "last_name": c.LastName, "email": c.Email, "phone": c.Phone,
			"locale": c.Locale},
		UnsubscribeURL: e.unsubscribeURL(d),
	})
	res := attemptResult{version: tpl.GetVersion(), locale: msg.Locale}
	if rerr != nil {
		var me *render.MissingError
		if errors.As(rerr, &me) {
			res.failCode, res.failReason = me.Code, me.Reason
		} else {
			res.failCode, res.failReason = "template_render_failed", fmt.Sprintf("template %s v%d: %v", tpl.GetKey(), tpl.GetVersion(), rerr)
		}
		return res
	}
	sender := e.senders[d.Channel]
	if sender == nil {
		res.failCode, res.failReason = "channel_not_configured", fmt.Sprintf("no %s provider is configured", channelWord(d.Channel))
		return res
	}
	m := &channel.Message{Tenant: d.Tenant, RequestID: d.RequestID, CustomerID: d.CustomerID, Subject: msg.Subject,
		HTML: msg.HTML, Text: msg.Text, Body: msg.Body, Dir: msg.Dir, RequestedAt: d.RequestedAt, Attempt: e.now()}
	switch d.Channel {
	case notifierv1.Channel_CHANNEL_EMAIL:
		m.To = c.Email
		m.UnsubscribeURL = e.unsubscribeURL(d)
		m.UnsubscribePostURL = m.UnsubscribeURL
	case notifierv1.Channel_CHANNEL_SMS:
		m.To = c.Phone
	}
	sctx, cancel := context.WithTimeout(ctx, e.cfg.SendTimeout)
	defer cancel()
	start := time.Now()
	res.providerID, res.err = sender.Send(sctx, m)
	res.called, res.took = true, time.Since(start)
	return res
}

// unprepared is an attempt that never reached the provider because the
// notifier's own database failed while loading what the message needs.
// It is retried like an unavailable provider, and counts as an attempt
// (an attempt number is the claim's, which the lease's fencing rests on),
// under its own code and with a reason that names the notifier: the database's error names hosts, tables and statements,
// which are the operator's, not the shop's, who reads the reason. A
// database that does not answer at all is the sender's outage, logged
// once for every message it stops (sendOutage). A pass that ran out of
// time (a hung database held its first messages until its deadline) fails
// every message it had left alike, at once, with the database answering
// again: the pass's error says so, once (sendDue). Any other failure, also
// one after the deadline, is logged with its message.
func (e *Engine) unprepared(ctx context.Context, d store.Delivery, what string, err error) attemptResult {
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
	case pg.Away(context.WithoutCancel(ctx), err, e.pool.Ping):
		e.sendOutage.Failed(err, "preparing", fmt.Sprintf("the %s of attempt %d of %s/%s", what, d.Attempts, d.Tenant, d.RequestID))
	default:
		e.log.Warn("notifier could not prepare a message, retrying", "tenant", d.Tenant, "request_id", d.RequestID,
			"attempt", d.Attempts, "loading", what, "error", err)
	}
	return attemptResult{err: channel.Transient("notifier_unavailable",
		fmt.Errorf("the notifier could not load the %s (its database failed); the provider was not called", what))}
}

// holdRetry is how often finish tries again to save a result it holds
// through a database outage.
const holdRetry = time.Second

// holdTryTimeout bounds one try of saving a held result.
const holdTryTimeout = 10 * time.Second

// finish records an attempt's result, unless the attempt lost its lease
// to a reconciling one meanwhile. A result is a provider's answer that
// cannot be asked for again: dropped, the message would be sent again
// once the lease ran out. So a result whose save fails while the database
// does not answer (pg.Unreachable, or a failed ping: decision 0018's
// test) is held, the outage logged once (sendOutage), and saved again
// every holdRetry until the database answers, also past the lease: while
// the database is away for every replica none can take the delivery over,
// and once it answers this try comes within holdRetry, mostly before
// another replica's pass finds the lapsed lease. One that takes the
// delivery over first (or while only this replica was cut off) fences
// this result out (LockSending; save says so in the log and the trail).
// Only hold ends the wait (HoldOnStop after shutdown). The first try runs under the pass's ctx, as
// any save; the held ones under hold.
func (e *Engine) finish(ctx, hold context.Context, d store.Delivery, res attemptResult, steps []policy.Step) error {
	var since time.Time // the first failed try of an outage; zero: none
	err := e.save(ctx, d, res, steps, 0)
	for err != nil {
		if hold.Err() != nil {
			if since.IsZero() {
				return err // not held: its one try was cut short
			}
			return e.dropHeld(d, res, since, err)
		}
		if !pg.Away(hold, err, e.pool.Ping) {
			return err
		}
		if since.IsZero() {
			since = time.Now()
		}
		e.sendOutage.Failed(err, "holding", heldResult(d, res))
		if sleep(hold, holdRetry) != nil {
			return e.dropHeld(d, res, since, err)
		}
		// Each try is bounded: on a connection a failover left dangling a
		// statement could otherwise wait for TCP to give up (minutes),
		// while other replicas take the delivery over.
		tctx, cancel := context.WithTimeout(hold, holdTryTimeout)
		err = e.save(tctx, d, res, steps, time.Since(since))
		cancel()
	}
	if !since.IsZero() {
		e.sendOutage.Answered()
	}
	return nil
}

// accepted reports whether res is a provider's acceptance.
func (res attemptResult) accepted() bool { return res.called && res.err == nil }

// heldResult names a result held through an outage, for the log.
func heldResult(d store.Delivery, res attemptResult) string {
	of := fmt.Sprintf("attempt %d of %s/%s", d.Attempts, d.Tenant, d.RequestID)
	switch {
	case res.accepted():
		return fmt.Sprintf("the %s provider's answer to %s (accepted, id %s)", channelWord(d.Channel), of, res.providerID)
	case res.called:
		return fmt.Sprintf("the %s provider's answer to %s (%s)", channelWord(d.Channel), of, res.failure.Code)
	case res.expired:
		return fmt.Sprintf("the result of %s (expired; the provider was not called)", of)
	case res.failCode != "":
		return fmt.Sprintf("the result of %s (%s; the provider was not called)", of, res.failCode)
	}
	return fmt.Sprintf("the result of %s (%s; the provider was not called)", of, res.failure.Code)
}

// dropHeld gives up a result held since since when shutdown ends the
// hold; err is the last try's. The
// delivery stays sending until its lease runs out and is then sent again:
// for an accepted send that is a second message, which the log says.
func (e *Engine) dropHeld(d store.Delivery, res attemptResult, since time.Time, err error) error {
	if res.accepted() {
		e.log.Warn("notifier stopped before it could save an accepted send's result (database unreachable): the message is sent again once the attempt's lease runs out, with the same idempotency key",
			"tenant", d.Tenant, "request_id", d.RequestID, "attempt", d.Attempts, "provider_id", res.providerID,
			"held_for", time.Since(since).Round(time.Millisecond), "error", err)
	}
	return fmt.Errorf("save the result of attempt %d of %s/%s: %w", d.Attempts, d.Tenant, d.RequestID, err)
}

// save is one try of finish; held is how long the result was held
// through an outage before it.
func (e *Engine) save(ctx context.Context, d store.Delivery, res attemptResult, steps []policy.Step, held time.Duration) error {
	now := e.now()
	var t tally
	var lost func() // logs an accepted result fenced out, after commit
	err := pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
		cur, mine, err := store.LockSending(ctx, tx, d.Tenant, d.RequestID, d.Attempts)
		if err != nil {
			return err
		}
		if !mine {
			// The same attempt past sending: an earlier try committed and
			// only its answer was lost. A later attempt: this one's lease
			// ran out and the delivery was taken over.
			if cur.Attempts == d.Attempts || !res.accepted() {
				return nil
			}
			why := ""
			if held > 0 {
				why = fmt.Sprintf(" (the database was unreachable for %s)", held.Round(time.Second))
			}
			steps = append(steps, policy.Step{Stage: "send", Verdict: "superseded", Code: "result_after_lease",
				Reason: fmt.Sprintf("attempt %d was accepted by the %s provider (id %s), but its result reached the database only after the attempt's lease ran out%s, and attempt %d had taken the delivery over: that attempt sends it again with the same idempotency key",
					d.Attempts, channelWord(d.Channel), res.providerID, why, cur.Attempts)})
			lost = func() {
				e.log.Warn("notifier could not save an accepted send's result before the attempt's lease ran out: another attempt took the delivery over and sends the message again, with the same idempotency key",
					"tenant", d.Tenant, "request_id", d.RequestID, "attempt", d.Attempts, "provider_id", res.providerID,
					"taken_over_by_attempt", cur.Attempts, "held_for", held.Round(time.Millisecond))
			}
			return store.AddDecisions(ctx, tx, d.Tenant, d.RequestID, steps, now)
		}
		cur.TemplateVersion, cur.Locale, cur.ProviderID = res.version, res.locale, res.providerID
		cur.DueAt = nil
		var out *bus.Message
		fail := func(code, reason string) {
			cur.Status, cur.CapAt = store.StatusFailed, nil // a failure does not use up the cap
			m := e.outcome(&t, &cur, notifierv1.Outcome_OUTCOME_FAILED, code, reason, now)
			out = &m
			steps = append(steps, policy.Step{Stage: "send", Verdict: "fail", Code: code, Reason: reason})
		}
		switch {
		case res.expired:
			reason := fmt.Sprintf("expired at %s before attempt %d could be made", cur.ExpiresAt.UTC().Format(time.RFC3339), cur.Attempts)
			cur.Status, cur.CapAt = store.StatusSuppressed, nil
			m := e.outcome(&t, &cur, notifierv1.Outcome_OUTCOME_SUPPRESSED, "expired", reason, now)
			out = &m
			steps = append(steps, policy.Step{Stage: "expiry", Verdict: string(policy.Suppress), Code: "expired", Reason: reason})
		case res.failCode != "":
			fail(res.failCode, res.failReason)
		case res.err == nil:
			cur.Status = store.StatusSent
			m := e.outcome(&t, &cur, notifierv1.Outcome_OUTCOME_SENT, "", "", now)
			out = &m
			steps = append(steps, policy.Step{Stage: "send", Verdict: "sent", Reason: fmt.Sprintf("accepted by the %s provider on attempt %d (id %s)", channelWord(cur.Channel), cur.Attempts, res.providerID)})
		default:
			// LockSending found the row at d.Attempts, the attempt res
			// was classified for.
			ce := res.failure
			switch {
			case ce.Permanent:
				fail(ce.Code, fmt.Sprintf("attempt %d: %v", cur.Attempts, ce.Err))
			case !res.retry:
				fail("retries_exhausted", fmt.Sprintf("%d attempts failed, the last: %v", cur.Attempts, ce.Err))
			default:
				wait := max(ce.RetryAfter, e.backoff(int(cur.Attempts)))
				due := now.Add(wait)
				cur.Status, cur.DueAt = store.StatusQueued, &due
				steps = append(steps, policy.Step{Stage: "send", Verdict: "retry", Code: ce.Code, Reason: fmt.Sprintf("attempt %d: %v; retrying in %s", cur.Attempts, ce.Err, wait.Round(time.Millisecond))})
			}
		}
		if err := store.Save(ctx, tx, cur, now); err != nil {
			return err
		}
		if err := store.AddDecisions(ctx, tx, cur.Tenant, cur.RequestID, steps, now); err != nil {
			return err
		}
		if out != nil {
			return bus.Enqueue(ctx, tx, *out)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.metrics.count(ctx, t)
	if lost != nil {
		lost()
	}
	return nil
}

// backoff is RetryInitial doubled per attempt, capped, with +-20% jitter so
// that a provider outage does not end in a synchronized stampede.
func (e *Engine) backoff(attempt int) time.Duration {
	d := e.cfg.RetryInitial
	for i := 1; i < attempt && d < e.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, e.cfg.RetryMax)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (e *Engine) zone(name string) *time.Location {
	if name != "" {
		if loc, err := time.LoadLocation(name); err == nil {
			return loc
		}
	}
	if e.cfg.Policy.DefaultZone != nil {
		return e.cfg.Policy.DefaultZone
	}
	return time.UTC
}

// SetPublicURL changes the base of unsubscribe links; before Run only.
func (e *Engine) SetPublicURL(u string) { e.cfg.PublicURL = u }

// UnsubscribePath is the HTTP route of unsubscribe links.
const UnsubscribePath = "/v1/unsubscribe"

func (e *Engine) unsubscribeURL(d store.Delivery) string {
	if d.Channel == notifierv1.Channel_CHANNEL_WEBHOOK {
		return ""
	}
	tok := unsub.Sign(e.cfg.UnsubscribeKey, unsub.Claim{Tenant: d.Tenant, Customer: d.CustomerID, Channel: d.Channel, RequestID: d.RequestID})
	return e.cfg.PublicURL + UnsubscribePath + "?t=" + url.QueryEscape(tok)
}

func channelWord(c notifierv1.Channel) string {
	switch c {
	case notifierv1.Channel_CHANNEL_EMAIL:
		return "email"
	case notifierv1.Channel_CHANNEL_SMS:
		return "SMS"
	}
	return "webhook"
}

// template returns the latest version of a template, installing the
// tenant's defaults on first use.
func (e *Engine) template(ctx context.Context, tenant, key string, ch notifierv1.Channel) (*notifierv1.Template, error) {
	if err := e.EnsureDefaults(ctx, tenant); err != nil {
		return nil, err
	}
	return store.GetTemplate(ctx, e.pool, tenant, key, ch, 0)
}

// EnsureDefaults installs the default templates for tenant once; a tenant
// that changed or replaced them keeps its own.
func (e *Engine) EnsureDefaults(ctx context.Context, tenant string) error {
	if _, ok := e.seeded.Load(tenant); ok {
		return nil
	}
	ts, err := defaults.Templates()
	if err != nil {
		return err
	}
	now := e.now()
	err = pg.InTx(ctx, e.pool, func(tx pgx.Tx) error {
		first, err := store.MarkSeeded(ctx, tx, tenant, now)
		if err != nil || !first {
			return err
		}
		for _, t := range ts {
			if _, err := store.InsertTemplate(ctx, tx, tenant, t, true, now); err != nil && !errors.Is(err, store.ErrExists) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("install default templates for %s: %w", tenant, err)
	}
	e.seeded.Store(tenant, true)
	return nil
}
