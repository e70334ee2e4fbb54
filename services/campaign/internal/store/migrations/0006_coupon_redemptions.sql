-- A coupon is one customer's, issued at issued_at: only an order of that
-- customer placed between its issue and its expiry redeems it (MarkGoals).
-- Until now any order with the code placed before the expiry did, another
-- customer's or one placed before the issue (an import of older orders).
-- The redemptions recorded so far are derived again from the stored orders
-- (a coupon no recorded order redeemed had no order that counts either):
-- the earliest order that counts, by placed time then order id, or none.
UPDATE coupons c SET redeemed_at = r.placed_at, redeemed_order_id = r.order_id
FROM coupons k
LEFT JOIN LATERAL (
    SELECT o.placed_at, o.order_id FROM campaign_orders o
    WHERE o.tenant = k.tenant AND o.customer_id = k.customer_id AND o.coupon_code = k.code
        AND o.placed_at >= k.issued_at AND o.placed_at <= k.expires_at
    ORDER BY o.placed_at, o.order_id COLLATE "C"
    LIMIT 1) r ON true
WHERE k.redeemed_at IS NOT NULL AND c.tenant = k.tenant AND c.code = k.code
    AND (c.redeemed_at, c.redeemed_order_id) IS DISTINCT FROM (r.placed_at, r.order_id);
