package app

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/retainhq/retain/platform/bus"
	eventsv1 "github.com/retainhq/retain/proto/gen/go/retain/events/v1"
	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/campaign/internal/domain"
	"github.com/retainhq/retain/services/campaign/internal/store"
)

// running is an enrollment whose due steps are about to run.
type running struct {
	enr  *store.Enrollment
	plan *domain.Plan
	// effects are the send and coupon steps Advance ran, in order.
	effects []*domain.PlanStep
}

// recorder collects the effects of one Advance; they are carried out once
// the enrollment is known to exist (a duplicate entry has none).
type recorder struct{ steps []*domain.PlanStep }

func (r *recorder) Send(s *domain.PlanStep) error        { r.steps = append(r.steps, s); return nil }
func (r *recorder) IssueCoupon(s *domain.PlanStep) error { r.steps = append(r.steps, s); return nil }

// runSteps runs the due steps of enrollments of one tenant in tx. Fresh
// enrollments are inserted with the state their first steps leave them in
// (one write each; one whose entry key exists is dropped with its
// effects), others are updated. The notification requests go to the outbox
// with deterministic ids in the same transaction, so each step's message is
// requested exactly once whatever crashes.
func (e *Engine) runSteps(ctx context.Context, tx pgx.Tx, tenant string, rs []running, fresh bool) error {
	if len(rs) == 0 {
		return nil
	}
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.enr.CustomerID
	}
	tzs, err := store.TimeZones(ctx, tx, tenant, ids)
	if err != nil {
		return err
	}
	now := e.Now()
	rows := make([]store.Enrollment, len(rs))
	for i := range rs {
		r := &rs[i]
		en := r.enr
		tz := time.UTC
		if name := tzs[en.CustomerID]; name != "" {
			if loc, err := time.LoadLocation(name); err == nil {
				tz = loc
			}
		}
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
		en.Step, en.Armed, en.Status, en.StepsDone = pr.Cursor.Step, pr.Cursor.Armed, pr.Status, pr.Done
		en.Due = nil
		if pr.Status == domain.StatusActive {
			due := pr.Cursor.Due
			en.Due = &due
		}
		rows[i] = *en
	}
	if fresh {
		created, err := store.InsertEnrollments(ctx, tx, rows)
		if err != nil {
			return err
		}
		// Keep the runs whose enrollment was created, with their ids.
		byKey := make(map[[2]string]int64, len(created))
		for _, c := range created {
			byKey[[2]string{c.CustomerID, c.Key}] = c.ID
		}
		kept := rs[:0]
		for _, r := range rs {
			if id, ok := byKey[[2]string{r.enr.CustomerID, r.enr.Key}]; ok {
				r.enr.ID = id
				kept = append(kept, r)
			}
		}
		rs = kept
	} else if err := store.SaveProgress(ctx, tx, rows); err != nil {
		return err
	}
	acts := &stepActions{e: e, ctx: ctx, tx: tx, tenant: tenant, now: now}
	for _, r := range rs {
		if len(r.effects) == 0 {
			continue
		}
		acts.enr, acts.plan, acts.coupon = r.enr, r.plan, nil
		before := r.enr.CouponCode
		for _, s := range r.effects {
			var err error
			if s.Kind == domain.KindCoupon {
				err = acts.IssueCoupon(s)
			} else {
				err = acts.Send(s)
			}
			if err != nil {
				return fmt.Errorf("enrollment %d of %s: step %s: %w", r.enr.ID, r.enr.CampaignID, s.ID, err)
			}
		}
		if r.enr.CouponCode != before {
			if err := store.SetCoupon(ctx, tx, r.enr.ID, r.enr.CouponCode); err != nil {
				return err
			}
		}
	}
	if err := bus.Enqueue(ctx, tx, acts.msgs...); err != nil {
		return err
	}
	return store.InsertSends(ctx, tx, acts.sends)
}

// stepActions performs the side effects of steps inside the transaction.
type stepActions struct {
	e      *Engine
	ctx    context.Context
	tx     pgx.Tx
	tenant string
	now    time.Time

	enr    *store.Enrollment
	plan   *domain.Plan
	coupon *store.Coupon

	msgs  []bus.Message
	sends []store.Send
}

// maxCodeDraws bounds retries of a coupon code collision (probability
// about 2^-46 per draw).
const maxCodeDraws = 5

func (a *stepActions) IssueCoupon(s *domain.PlanStep) error {
	spec := s.Coupon
	prefix := spec.GetPrefix()
	if prefix == "" {
		prefix = "RT"
	}
	c := store.Coupon{PercentOff: spec.GetPercentOff(), ExpiresAt: a.now.Add(s.Valid)}
	if m := spec.GetAmountOff(); m != nil {
		c.AmountMinor, c.Currency = m.GetAmountMinor(), m.GetCurrency()
	}
	for range maxCodeDraws {
		code, err := domain.NewCouponCode(prefix)
		if err != nil {
			return err
		}
		c.Code = code
		held, taken, err := store.IssueCoupon(a.ctx, a.tx, a.tenant, a.enr.CampaignID, a.enr.CustomerID, a.enr.ID, c, a.now)
		if err != nil {
			return err
		}
		if !taken {
			a.coupon = &held
			a.enr.CouponCode = held.Code
			return nil
		}
	}
	return fmt.Errorf("issue coupon: %d codes in a row were taken", maxCodeDraws)
}

func (a *stepActions) Send(s *domain.PlanStep) error {
	en, send := a.enr, s.Send
	reqID := domain.RequestID(en.CampaignID, en.ID, s.ID)
	vars := map[string]*notifierv1.TemplateValue{
		"campaign": {Value: &notifierv1.TemplateValue_Text{Text: a.plan.Campaign.GetName()}},
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
		vars["nps_score"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Integer{Integer: int64(*v.NPS)}}
	}
	if v.RenewalDate != "" {
		vars["renewal_date"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Text{Text: v.RenewalDate}}
	}
	if en.CouponCode != "" {
		if a.coupon == nil || a.coupon.Code != en.CouponCode {
			c, err := store.LoadCoupon(a.ctx, a.tx, a.tenant, en.CouponCode)
			if err != nil {
				return err
			}
			a.coupon = &c
		}
		cp := &notifierv1.Coupon{Code: a.coupon.Code, ExpiresAt: timestamppb.New(a.coupon.ExpiresAt)}
		if a.coupon.AmountMinor > 0 {
			cp.Discount = &notifierv1.Coupon_AmountOff{AmountOff: &eventsv1.Money{AmountMinor: a.coupon.AmountMinor, Currency: a.coupon.Currency}}
		} else {
			cp.Discount = &notifierv1.Coupon_PercentOff{PercentOff: a.coupon.PercentOff}
		}
		vars["coupon"] = &notifierv1.TemplateValue{Value: &notifierv1.TemplateValue_Coupon{Coupon: cp}}
	}
	category := send.GetCategory()
	if category == notifierv1.Category_CATEGORY_UNSPECIFIED {
		category = notifierv1.Category_CATEGORY_MARKETING
	}
	priority := notifierv1.Priority_PRIORITY_LOW
	if a.plan.Campaign.GetPriority() >= 50 {
		priority = notifierv1.Priority_PRIORITY_NORMAL
	}
	req := &notifierv1.NotificationRequested{
		RequestId: reqID, TenantId: a.tenant, CustomerId: en.CustomerID,
		Channel: send.GetChannel(), Category: category, Priority: priority,
		TemplateKey: send.GetTemplateKey(), Variables: vars,
		Origin: &notifierv1.Origin{
			CampaignId: en.CampaignID, CampaignVersion: en.Version,
			EnrollmentId: strconv.FormatInt(en.ID, 10), StepId: s.ID,
		},
		RequestedAt: timestamppb.New(a.now),
		ExpiresAt:   timestamppb.New(a.now.Add(s.Expiry)),
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode notification.requested: %w", err)
	}
	a.msgs = append(a.msgs, bus.Message{
		Subject: bus.NotificationSubject(a.tenant, bus.TypeNotificationRequested),
		ID:      a.tenant + "/" + reqID,
		Type:    bus.TypeNotificationRequested,
		Data:    data,
	})
	a.sends = append(a.sends, store.Send{Tenant: a.tenant, RequestID: reqID, CampaignID: en.CampaignID, StepID: s.ID, EnrollmentID: en.ID, At: a.now})
	return nil
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
			byTenant := map[string][]running{}
			refs := make([]store.Ref, 0, len(due))
			for _, en := range due {
				refs = append(refs, store.Ref{Tenant: en.Tenant, ID: en.CampaignID, Version: en.Version})
			}
			plans, err := e.plansFor(ctx, tx, refs)
			if err != nil {
				return err
			}
			for i := range due {
				en := &due[i]
				p := plans[store.Ref{Tenant: en.Tenant, ID: en.CampaignID, Version: en.Version}]
				en.StepsDone = nil
				byTenant[en.Tenant] = append(byTenant[en.Tenant], running{enr: en, plan: p})
			}
			for tenant, rs := range byTenant {
				if err := e.runSteps(ctx, tx, tenant, rs, false); err != nil {
					return err
				}
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
// audiences every AudienceInterval until ctx is done; failures are logged
// and retried at the next tick.
func (e *Engine) Run(ctx context.Context) error {
	if e.cfg.TimerInterval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(e.cfg.TimerInterval)
	defer t.Stop()
	var lastAudience time.Time
	for {
		if _, err := e.FireDue(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("timer pass failed", "error", err)
		}
		if e.cfg.AudienceInterval > 0 && time.Since(lastAudience) >= e.cfg.AudienceInterval {
			lastAudience = time.Now()
			if _, err := e.RunAudiences(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("audience pass failed", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
