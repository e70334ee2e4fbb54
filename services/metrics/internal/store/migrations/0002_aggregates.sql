-- metrics: the maintained aggregates the queries read (DESIGN.md).
--
-- Every aggregate is a function of the set of facts, maintained per batch in
-- the consumer's transaction from the facts the batch changed, and rebuilt
-- from the fact tables by store.BuildAggregates.

-- Customers get a dense per-tenant sequence number (cseq), the position of
-- their bit in the day bitmaps. A customer keeps their row, and so their
-- cseq, when they lose their last order to another customer (first_order_at
-- is then NULL): bits set in the past stay meaningful. second_order_at is
-- the instant of the second order (NULL with fewer than two), for lifetime
-- repeat purchase.
ALTER TABLE customers ADD COLUMN cseq int4;
ALTER TABLE customers ADD COLUMN second_order_at timestamptz;
ALTER TABLE customers ALTER COLUMN first_order_at DROP NOT NULL;
UPDATE customers c SET cseq = s.cseq
FROM (SELECT tenant, customer_id,
             (row_number() OVER (PARTITION BY tenant ORDER BY first_order_at, customer_id) - 1)::int4 AS cseq
      FROM customers) s
WHERE s.tenant = c.tenant AND s.customer_id = c.customer_id;
ALTER TABLE customers ALTER COLUMN cseq SET NOT NULL;
DROP INDEX customers_first_order;
-- New and lifetime buyers of a partial edge day, by instant.
CREATE INDEX customers_first_order ON customers (tenant, first_order_at) INCLUDE (cseq);
CREATE INDEX customers_second_order ON customers (tenant, second_order_at) INCLUDE (cseq);

-- Orders carry their customer's cseq so that the customers of a partial edge
-- day come from one index-only range scan.
ALTER TABLE orders ADD COLUMN cseq int4;
UPDATE orders o SET cseq = c.cseq FROM customers c
WHERE c.tenant = o.tenant AND c.customer_id = o.customer_id;
ALTER TABLE orders ALTER COLUMN cseq SET NOT NULL;
DROP INDEX orders_placed;
CREATE INDEX orders_placed ON orders (tenant, placed_at) INCLUDE (customer_id, cseq);
-- A customer's orders in time order (first orders, a customer's revenue
-- moving cohort) by number: an int4 key costs a batch of inserts much less
-- than the customer id's text.
DROP INDEX orders_customer;
CREATE INDEX orders_customer ON orders (tenant, cseq, placed_at);

-- Per tenant: the next cseq to hand out, and a version bumped by every
-- batch, under the tenant's lock, so it increases in commit order. A query
-- whose cached day bitmaps were read at the current version needs nothing
-- else from day_buyers. Never deleted by a rebuild, so versions never repeat.
CREATE TABLE tenant_state (
    tenant    text COLLATE "C" PRIMARY KEY,
    next_cseq int4   NOT NULL DEFAULT 0,
    version   bigint NOT NULL DEFAULT 0
);
INSERT INTO tenant_state (tenant, next_cseq)
SELECT tenant, max(cseq) + 1 FROM customers GROUP BY tenant;

-- One row per tenant and UTC day with at least one order (or a first or
-- second order): portable roaring bitmaps over cseq. ge1 = customers with an
-- order that day, ge2 = with two or more, firsts = whose first order is that
-- day, seconds = whose second order is that day. version is the tenant
-- version of the batch that last wrote the row (cache revalidation).
CREATE TABLE day_buyers (
    tenant  text COLLATE "C" NOT NULL,
    day     date   NOT NULL,
    version bigint NOT NULL,
    ge1     bytea  NOT NULL,
    ge2     bytea  NOT NULL,
    firsts  bytea  NOT NULL,
    seconds bytea  NOT NULL,
    PRIMARY KEY (tenant, day)
);

-- Orders placed per UTC day and currency, refunds counted against the
-- order's day (retention.SumSales); refunded is capped at each order's total.
CREATE TABLE sales_daily (
    tenant         text COLLATE "C" NOT NULL,
    day            date   NOT NULL,
    currency       text COLLATE "C" NOT NULL,
    orders         bigint NOT NULL,
    gross_minor    bigint NOT NULL,
    refunded_minor bigint NOT NULL,
    net_minor      bigint NOT NULL,
    PRIMARY KEY (tenant, day, currency)
);

-- Net revenue of each cohort (UTC month of the members' first order, as
-- retention.Month) per calendar month of the orders and currency. The active
-- members of a cell come from the day bitmaps (firsts of the cohort's days
-- AND ge1 of the month's days).
CREATE TABLE cohort_revenue (
    tenant    text COLLATE "C" NOT NULL,
    cohort    int4   NOT NULL,
    month     int4   NOT NULL,
    currency  text COLLATE "C" NOT NULL,
    net_minor bigint NOT NULL,
    PRIMARY KEY (tenant, cohort, month, currency)
);

-- Survey answers per UTC day, kind and score.
CREATE TABLE survey_daily (
    tenant  text COLLATE "C" NOT NULL,
    day     date     NOT NULL,
    kind    smallint NOT NULL,
    score   smallint NOT NULL,
    answers bigint   NOT NULL,
    PRIMARY KEY (tenant, day, kind, score)
);

-- Tenants whose facts predate the aggregates: the service builds their
-- aggregates from the fact tables at start-up (store.BuildPending).
CREATE TABLE aggregates_pending (
    tenant text COLLATE "C" PRIMARY KEY
);
INSERT INTO aggregates_pending
SELECT tenant FROM customers UNION SELECT tenant FROM survey_answers;
