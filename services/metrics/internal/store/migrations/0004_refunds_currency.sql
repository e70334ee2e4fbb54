-- A refund counts against its order only in the order's currency: no
-- currency conversion is done, so a refund of JPY 500 on an order of
-- EUR 10.00 must not take EUR 5.00 off it. Refunds keep their currency,
-- and an order's refunded_minor is the sum of its refunds in its currency.
-- Rows stored before this migration have no currency (''): they keep
-- counting against their order as they did (a rebuild gives them one).
ALTER TABLE refunds ADD COLUMN currency text COLLATE "C" NOT NULL DEFAULT '';
-- The sums per order and currency (an order arriving after its refunds)
-- stay index-only scans.
DROP INDEX refunds_order;
CREATE INDEX refunds_order ON refunds (tenant, order_id) INCLUDE (amount_minor, currency);
