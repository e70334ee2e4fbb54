package campaign_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// couponAtOnce gives every customer's first order a coupon and sends it.
const couponAtOnce = `
id: coupons
name: Coupon at once
trigger: {event: order.placed}
entry: {once_per_customer: {}}
steps:
  - {id: coupon, issue_coupon: {prefix: TEST, percent_off: 10, valid_for: 30d}}
  - {id: hello, send: {channel: CHANNEL_EMAIL, template_key: loyalty_reward}}
`

// TestCouponRedeemedOnlyByItsCustomerBetweenIssueAndExpiry: a coupon is
// one customer's, so another customer's order with its code, or its own
// customer's placed before it was issued, or after it expired, does not
// redeem it, even when that order is the earliest of a batch; the
// earliest order that counts does, whatever the arrival order.
func TestCouponRedeemedOnlyByItsCustomerBetweenIssueAndExpiry(t *testing.T) {
	s := setup(t)
	const tenant = "shop"
	ctx := context.Background()
	s.create(t, tenant, couponAtOnce)
	now := s.clock.Now()
	s.publish(t, tenant, orderEv("own-1", "owner", now.Add(-2*time.Hour), 1000), orderEv("unused-1", "unused", now.Add(-2*time.Hour), 1000))
	s.caughtUp(t)
	code := func(customer string) string {
		var c string
		if err := s.db.QueryRow(ctx, `SELECT code FROM coupons WHERE customer_id = $1`, customer).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	mine, unused := code("owner"), code("unused")
	redeemedBy := func(c string) string {
		t.Helper()
		var order *string
		if err := s.db.QueryRow(ctx, `SELECT redeemed_order_id FROM coupons WHERE code = $1`, c).Scan(&order); err != nil {
			t.Fatal(err)
		}
		if order == nil {
			return ""
		}
		return *order
	}

	// One batch: the earliest orders with the code are another customer's
	// and the owner's before the issue; then the owner's within the window.
	s.stopAll()
	s.publish(t, tenant,
		couponOrderEv("other", "someone-else", now.Add(time.Minute), 500, mine),
		couponOrderEv("before-issue", "owner", now.Add(-time.Hour), 500, mine),
		couponOrderEv("own-late", "owner", now.Add(2*time.Hour), 500, mine),
		couponOrderEv("expired", "owner", now.Add(31*day), 500, mine),
		couponOrderEv("other-2", "someone-else", now.Add(time.Minute), 500, unused),
		couponOrderEv("unused-before", "unused", now.Add(-time.Hour), 500, unused))
	s.start(t)
	s.caughtUp(t)
	if got := redeemedBy(mine); got != "own-late" {
		t.Errorf("the owner's coupon redeemed by %q, want own-late", got)
	}
	if got := redeemedBy(unused); got != "" {
		t.Errorf("a coupon redeemed by %q: another customer's, or placed before the issue", got)
	}
	// An earlier order that counts, arriving later, is the redemption.
	s.publish(t, tenant, couponOrderEv("own-early", "owner", now.Add(time.Hour), 500, mine))
	s.caughtUp(t)
	if got := redeemedBy(mine); got != "own-early" {
		t.Errorf("the owner's coupon redeemed by %q, want own-early", got)
	}
	if rep := s.report(t, tenant, "coupons"); rep.GetCouponsIssued() != 2 || rep.GetCouponsRedeemed() != 1 {
		t.Errorf("report: %d coupons issued, %d redeemed; want 2, 1", rep.GetCouponsIssued(), rep.GetCouponsRedeemed())
	}

	// Migration 0006 derives the redemptions stored by the old rule again.
	if _, err := s.db.Exec(ctx, `UPDATE coupons SET redeemed_at = $2, redeemed_order_id = 'other-2' WHERE code = $1`, unused, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(ctx, `UPDATE coupons SET redeemed_at = $2, redeemed_order_id = 'other' WHERE code = $1`, mine, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	sql, err := os.ReadFile("internal/store/migrations/0006_coupon_redemptions.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(ctx, string(sql), pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if a, b := redeemedBy(mine), redeemedBy(unused); a != "own-early" || b != "" {
		t.Errorf("after migration 0006: redeemed by %q and %q, want own-early and none", a, b)
	}
}
