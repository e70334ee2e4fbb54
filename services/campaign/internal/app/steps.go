package app

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/pg"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// running is an enrollment whose due steps are about to run.
type running struct {
	enr  *store.Enrollment
	plan *domain.Plan
	// tz is the customer's time zone name ("": UTC), loc the zone itself
	// (set by runSteps).
	tz  string
	loc *time.Location
	// effects are the send and coupon steps Advance ran, in order.
	effects []*domain.PlanStep
	// issue is the coupon step among effects that issues the enrollment's
	// coupon (the first; a later one finds it held), and coupon the coupon
	// it holds once issued.
	issue  *domain.PlanStep
	coupon *store.Coupon
	// prior is the code the enrollment held before these steps.
	prior string
}

// recorder collects the effects of one Advance; they are carried out once
// the enrollment is known to exist (a duplicate entry has none).
type recorder struct{ steps []*domain.PlanStep }

func (r *recorder) Send(s *domain.PlanStep) error        { r.steps = append(r.steps, s); return nil }
func (r *recorder) IssueCoupon(s *domain.PlanStep) error { r.steps = append(r.steps, s); return nil }

// maxCodeDraws bounds retries of a coupon code collision (probability
// about 2^-46 per draw).
const maxCodeDraws = 5

// runSteps runs the due steps of enrollments, of any tenants, in tx. Fresh
// enrollments are inserted with the state their first steps leave them in
// (one write each, coupon included; one whose entry key exists is dropped
// with its effects), others are updated. The notification requests go to
// the outbox with deterministic ids in the same transaction, so each
// step's message is requested exactly once whatever crashes. Every table
// is written with one statement for all the enrollments.
func (e *Engine) runSteps(ctx context.Context, tx pgx.Tx, rs []running, fresh bool) error {
	if len(rs) == 0 {
		return nil
	}
	now := e.Now()
	held := map[store.CouponKey]bool{} // codes held before these steps, for their sends
	for i := range rs {
		r := &rs[i]
		en := r.enr
		if en.Converted && en.StopOnGoal {
			// The goal ended it while it waited; the conversion does not
			// touch the timer (store.MarkGoals), so the timer settles it
			// now, running nothing.
			en.Status, en.Due, en.Armed, en.StepsDone = domain.StatusConverted, nil, false, nil
			continue
		}
		tz := time.UTC
		if r.tz != "" {
			if loc, err := time.LoadLocation(r.tz); err == nil {
				tz = loc
			}
		}
		r.loc = tz
		cur := domain.Cursor{Step: en.Step, Armed: en.Armed}
		if en.Due != nil {
			cur.Due = *en.Due
		}
		rec := &recorder{}
		pr, err := r.plan.Advance(cur, now, tz, en.Holdout, en.Converted, rec)
		if err != nil {
			return fmt.Errorf("enrollment %d of %s: %w", en.ID, en.CampaignID, err)
		}
		r.effects = rec.steps
		for _, s := range r.effects {
			if s.Kind == domain.KindCoupon && r.issue == nil {
				r.issue = s
			}
		}
		r.prior = en.CouponCode
		if r.prior != "" && len(r.effects) > 0 {
			held[store.CouponKey{Tenant: en.Tenant, Code: r.prior}] = true
		}
		if r.issue != nil {
			// The code is drawn now so that a fresh enrollment is inserted
			// holding it; IssueCoupons settles whether it is really theirs.
			if en.CouponCode, err = domain.NewCouponCode(couponPrefix(r.issue)); err != nil {
				return err
			}
		}
		en.Step, en.Armed, en.Status, en.StepsDone = pr.Cursor.Step, pr.Cursor.Armed, pr.Status, pr.Done
		en.Due = nil
		if pr.Status == domain.StatusActive {
			due := pr.Cursor.Due
			en.Due = &due
		}
	}
	if fresh {
		var err error
		if rs, err = insertFresh(ctx, tx, rs); err != nil {
			return err
		}
	}
	changed, err := issueCoupons(ctx, tx, rs, now)
	if err != nil {
		return err
	}
	if fresh {
		err = store.SetCoupons(ctx, tx, changed)
	} else {
		rows := make([]store.Enrollment, len(rs))
		for i, r := range rs {
			rows[i] = *r.enr
		}
		err = store.SaveProgress(ctx, tx, rows)
	}
	if err != nil {
		return err
	}
	prior, err := store.LoadCoupons(ctx, tx, slices.Collect(maps.Keys(held)))
	if err != nil {
		return err
	}
	var msgs []bus.Message
	for _, r := range rs {
		var coupon *store.Coupon
		if c, ok := prior[store.CouponKey{Tenant: r.enr.Tenant, Code: r.prior}]; ok {
			coupon = &c
		}
		for _, s := range r.effects {
			if s == r.issue {
				coupon = r.coupon
			}
			if s.Kind != domain.KindSend {
				continue
			}
			m, err := e.request(r, s, coupon, now)
			if err != nil {
				return fmt.Errorf("enrollment %d of %s: step %s: %w", r.enr.ID, r.enr.CampaignID, s.ID, err)
			}
			msgs = append(msgs, m)
		}
	}
	return bus.Enqueue(ctx, tx, msgs...)
}

// insertFresh inserts fresh enrollments and returns the runs whose
// enrollment was created, with their ids.
func insertFresh(ctx context.Context, tx pgx.Tx, rs []running) ([]running, error) {
	rows := make([]store.Enrollment, len(rs))
	for i, r := range rs {
		rows[i] = *r.enr
	}
	created, err := store.InsertEnrollments(ctx, tx, rows)
	if err != nil {
		return nil, err
	}
	byKey := make(map[store.EntryKey]int64, len(created))
	for _, c := range created {
		byKey[c.EntryKey()] = c.ID
	}
	kept := rs[:0]
	for _, r := range rs {
		if id, ok := byKey[r.enr.EntryKey()]; ok {
			r.enr.ID = id
			kept = append(kept, r)
		}
	}
	return kept, nil
}

// issueCoupons issues the coupons of the runs that reached a coupon step,
// drawing again on a (rare) code collision, and sets each run's coupon to
// the one its customer holds. It returns the enrollments whose held code
// is not the one drawn (the customer held one already).
func issueCoupons(ctx context.Context, tx pgx.Tx, rs []running, now time.Time) (map[store.EntryKey]string, error) {
	var pending []*running
	for i := range rs {
		if rs[i].issue != nil {
			pending = append(pending, &rs[i])
		}
	}
	changed := map[store.EntryKey]string{}
	for range maxCodeDraws {
		if len(pending) == 0 {
			return changed, nil
		}
		issues := make([]store.CouponIssue, len(pending))
		for i, r := range pending {
			spec := r.issue.Coupon
			c := store.Coupon{Code: r.enr.CouponCode, PercentOff: spec.GetPercentOff(), ExpiresAt: now.Add(r.issue.Valid)}
			if m := spec.GetAmountOff(); m != nil {
				c.AmountMinor, c.Currency = m.GetAmountMinor(), m.GetCurrency()
			}
			issues[i] = store.CouponIssue{Tenant: r.enr.Tenant, CampaignID: r.enr.CampaignID, CustomerID: r.enr.CustomerID, EnrollmentID: r.enr.ID, Coupon: c}
		}
		got, err := store.IssueCoupons(ctx, tx, issues, now)
		if err != nil {
			return nil, err
		}
		var taken []*running
		for i, r := range pending {
			c, ok := got[i]
			if !ok {
				if r.enr.CouponCode, err = domain.NewCouponCode(couponPrefix(r.issue)); err != nil {
					return nil, err
				}
				changed[r.enr.EntryKey()] = r.enr.CouponCode
				taken = append(taken, r)
				continue
			}
			r.coupon = &c
			if c.Code != r.enr.CouponCode {
				r.enr.CouponCode = c.Code
				changed[r.enr.EntryKey()] = c.Code
			} else {
				delete(changed, r.enr.EntryKey())
			}
		}
		pending = taken
	}
	if len(pending) > 0 {
		return nil, fmt.Errorf("issue coupon: %d codes in a row were taken", maxCodeDraws)
	}
	return changed, nil
}

func couponPrefix(s *domain.PlanStep) string {
	if p := s.Coupon.GetPrefix(); p != "" {
		return p
	}
	return "RT"
}

// request is the notification.requested of send step s of run r, with the
// coupon the enrollment holds at that step (nil: none).
func (e *Engine) request(r running, s *domain.PlanStep, coupon *store.Coupon, now time.Time) (bus.Message, error) {
	en, plan, send := r.enr, r.plan, s.Send
	tenant := en.Tenant
	ref := en.Ref()
	reqID := domain.RequestID(en.CampaignID, ref, s.ID)
	vars := map[string]*notifierv1.TemplateValue{
		"campaign": {Value: &notifierv1.TemplateValue_Text{Text: plan.Campaign.GetName()}},
	}
	for k, v := range send.GetVariables() {
		vars[k] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: v}}
	}
	v := en.Vars
	if v.OrderID != "" {
		vars["order_id"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: v.OrderID}}
		vars["order_total"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Money{Money: &eventsv1.Money{AmountMinor: v.OrderTotal, Currency: v.Currency}}}
	}
	if v.NPS != nil {
		// "score", as the notifier's default templates read it: they are
		// stored per shop on first use and never replaced. "nps_score" as
		// well, the name campaign.proto listed before: a shop's own
		// template declaring it keeps working.
		score := &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Integer{Integer: int64(*v.NPS)}}
		vars["score"], vars["nps_score"] = score, score
	}
	if v.Comment != "" {
		// The answer's own words, what the support team's alert
		// (detractor_support_alert) gives as the reason.
		vars["reason"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: v.Comment}}
	}
	if d, err := time.ParseInLocation(time.DateOnly, v.RenewalDate, r.loc); err == nil {
		// A time, as templates declare it, at noon of the day in the
		// customer's zone: {{date}} writes it in the zone the notifier
		// knows for the customer, which shows the same day for any zone
		// within 11 hours of this one (midnight UTC would be the day
		// before everywhere west of Greenwich).
		vars["renewal_date"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Time{Time: timestamppb.New(d.Add(12 * time.Hour))}}
	}
	if coupon != nil {
		cp := &notifierv1.Coupon{Code: coupon.Code, ExpiresAt: timestamppb.New(coupon.ExpiresAt)}
		if coupon.AmountMinor > 0 {
			cp.Discount = &notifierv1.Coupon_AmountOff{AmountOff: &eventsv1.Money{AmountMinor: coupon.AmountMinor, Currency: coupon.Currency}}
		} else {
			cp.Discount = &notifierv1.Coupon_PercentOff{PercentOff: coupon.PercentOff}
		}
		vars["coupon"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Coupon{Coupon: cp}}
	}
	category := send.GetCategory()
	if category == notifierv1.Category_CATEGORY_UNSPECIFIED {
		category = notifierv1.Category_CATEGORY_MARKETING
	}
	priority := notifierv1.Priority_PRIORITY_LOW
	if plan.Campaign.GetPriority() >= 50 {
		priority = notifierv1.Priority_PRIORITY_NORMAL
	}
	req := &notifierv1.NotificationRequested{
		RequestId: reqID, TenantId: tenant, CustomerId: en.CustomerID,
		Channel: send.GetChannel(), Category: category, Priority: priority,
		// Priority says what happens over the cap, the rank which of the
		// customer's campaigns takes a free slot first.
		Rank:        plan.Campaign.GetPriority(),
		TemplateKey: send.GetTemplateKey(), Variables: vars,
		Origin: &notifierv1.Origin{
			CampaignId: en.CampaignID, CampaignVersion: en.Version,
			EnrollmentId: ref, StepId: s.ID,
		},
		RequestedAt: timestamppb.New(now),
		ExpiresAt:   timestamppb.New(now.Add(s.Expiry)),
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return bus.Message{}, fmt.Errorf("encode notification.requested: %w", err)
	}
	return bus.Message{
		Subject: bus.NotificationSubject(tenant, bus.TypeNotificationRequested),
		ID:      tenant + "/" + reqID,
		Type:    bus.TypeNotificationRequested,
		Data:    data,
	}, nil
}

// FireDue runs the steps of enrollments whose timers are due, TimerBatch
// per transaction, until none is due, and returns how many enrollments it
// advanced. Replicas running it at once skip each other's rows.
func (e *Engine) FireDue(ctx context.Context) (int, error) {
	total := 0
	for {
		n := 0
		err := e.InTx(ctx, func(tx pgx.Tx) error {
			due, err := store.LockDue(ctx, tx, e.Now(), e.cfg.TimerBatch)
			if err != nil {
				return err
			}
			n = len(due)
			refs := make([]store.Ref, len(due))
			keys := make([]store.CustomerKey, len(due))
			for i, en := range due {
				refs[i] = store.Ref{Tenant: en.Tenant, ID: en.CampaignID, Version: en.Version}
				keys[i] = store.CustomerKey{Tenant: en.Tenant, ID: en.CustomerID}
			}
			plans, err := e.plansFor(ctx, tx, refs)
			if err != nil {
				return err
			}
			tzs, err := store.TimeZones(ctx, tx, keys)
			if err != nil {
				return err
			}
			rs := make([]running, len(due))
			for i := range due {
				en := &due[i]
				en.StepsDone = nil
				rs[i] = running{enr: en, plan: plans[refs[i]], tz: tzs[keys[i]]}
			}
			if err := e.runSteps(ctx, tx, rs, false); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("fire due timers: %w", err)
		}
		total += n
		if n < e.cfg.TimerBatch {
			return total, nil
		}
	}
}

// Run fires due timers every TimerInterval and evaluates due scheduled
// audiences every AudienceInterval until ctx is done; failures are retried
// at the next tick. A database outage is logged when it starts and when it
// ends (pg.OutageLog), not once a tick; any other failure every time.
func (e *Engine) Run(ctx context.Context) error {
	if e.cfg.TimerInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(e.cfg.TimerInterval)
	defer t.Stop()
	timers := pg.NewOutageLog(e.log, "timer pass", e.pool.Ping)
	audiences := pg.NewOutageLog(e.log, "audience pass", e.pool.Ping)
	var lastAudience time.Time
	for {
		if _, err := e.FireDue(ctx); ctx.Err() == nil {
			timers.Pass(ctx, err, "timer pass failed")
		}
		if e.cfg.AudienceInterval > 0 && time.Since(lastAudience) >= e.cfg.AudienceInterval {
			lastAudience = time.Now()
			if _, err := e.RunAudiences(ctx); ctx.Err() == nil {
				audiences.Pass(ctx, err, "audience pass failed")
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
