-- metrics: the fact projections every figure is computed from.
--
-- Every table is keyed by natural ids (order id, refund id, answer id), so
-- that applying a set of events in any order, twice, or late gives the same
-- rows. Ids and customer ids use the "C" collation: comparisons and ORDER BY
-- are by bytes, as in Go, which the tie-break rules and the rankings rely on.

-- One row per order id. When two versions of an order disagree, the one that
-- sorts first by (placed_at, customer_id, total_minor, currency) wins: the
-- rule of retention.NewLedger, with currency as a last tie-break.
CREATE TABLE orders (
    tenant         text COLLATE "C" NOT NULL,
    order_id       text COLLATE "C" NOT NULL,
    customer_id    text COLLATE "C" NOT NULL,
    placed_at      timestamptz      NOT NULL,
    total_minor    bigint           NOT NULL,
    currency       text COLLATE "C" NOT NULL,
    -- Sum of the refunds naming this order, recomputed from refunds for
    -- every order a batch touches; may exceed total_minor (net is capped at
    -- zero when read).
    refunded_minor bigint           NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, order_id)
);
-- Who was active in a window: index-only range scans by instant.
CREATE INDEX orders_placed ON orders (tenant, placed_at) INCLUDE (customer_id);
-- A customer's orders in time order: first order, EXISTS probes, RFM.
CREATE INDEX orders_customer ON orders (tenant, customer_id, placed_at);

-- One row per refund id; a refund whose order has not arrived yet waits
-- here and applies when the order lands. Versions that disagree: the one
-- that sorts first by (order_id, amount_minor) wins.
CREATE TABLE refunds (
    tenant       text COLLATE "C" NOT NULL,
    refund_id    text COLLATE "C" NOT NULL,
    order_id     text COLLATE "C" NOT NULL,
    amount_minor bigint           NOT NULL,
    PRIMARY KEY (tenant, refund_id)
);
CREATE INDEX refunds_order ON refunds (tenant, order_id) INCLUDE (amount_minor);

-- One row per customer with at least one order: the first order's instant,
-- recomputed from orders for every customer a batch touches.
CREATE TABLE customers (
    tenant         text COLLATE "C" NOT NULL,
    customer_id    text COLLATE "C" NOT NULL,
    first_order_at timestamptz      NOT NULL,
    PRIMARY KEY (tenant, customer_id)
);
CREATE INDEX customers_first_order ON customers (tenant, first_order_at) INCLUDE (customer_id);

-- One row per survey answer (the event id). Versions that disagree: the one
-- that sorts first by (customer_id, answered_at, kind, score) wins.
CREATE TABLE survey_answers (
    tenant      text COLLATE "C" NOT NULL,
    answer_id   text COLLATE "C" NOT NULL,
    customer_id text COLLATE "C" NOT NULL,
    answered_at timestamptz      NOT NULL,
    -- retention.SurveyKind: 1 NPS (0-10), 2 CSAT (1-5).
    kind        smallint         NOT NULL,
    score       smallint         NOT NULL,
    PRIMARY KEY (tenant, answer_id)
);
CREATE INDEX survey_answers_answered ON survey_answers (tenant, answered_at) INCLUDE (kind, score);

-- The currencies a tenant's orders are in, so a money query without a
-- currency can tell "the tenant's only currency" from "name one".
CREATE TABLE tenant_currencies (
    tenant   text COLLATE "C" NOT NULL,
    currency text COLLATE "C" NOT NULL,
    PRIMARY KEY (tenant, currency)
);
