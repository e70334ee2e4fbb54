-- churn-signal: the per-customer features projection, scores, fitted models
-- and per-tenant weights. Facts are keyed by their natural ids, so applying
-- the same set of events in any order, any number of times, gives the same
-- rows; every read takes an instant and uses only facts from before it.

CREATE TABLE churn_tenants (
    tenant_id     text        PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

-- One row per order. When two events name the same order, the one with the
-- smallest (placed_at, event_id) wins, whatever the arrival order.
CREATE TABLE churn_orders (
    tenant_id    text        NOT NULL,
    order_id     text        NOT NULL,
    customer_id  text        NOT NULL,
    placed_at    timestamptz NOT NULL,
    amount_minor bigint      NOT NULL,
    currency     text        NOT NULL,
    event_id     text        NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
CREATE INDEX churn_orders_customer ON churn_orders (tenant_id, customer_id, placed_at);

-- One row per ticket, from ticket.opened and ticket.resolved in either
-- order: opened_at is NULL until the opening is known, resolved_at keeps the
-- first resolution.
CREATE TABLE churn_tickets (
    tenant_id       text        NOT NULL,
    ticket_id       text        NOT NULL,
    customer_id     text        NOT NULL,
    opened_at       timestamptz,
    category        smallint    NOT NULL DEFAULT 0,
    opened_event_id text,
    resolved_at     timestamptz,
    PRIMARY KEY (tenant_id, ticket_id)
);
CREATE INDEX churn_tickets_customer ON churn_tickets (tenant_id, customer_id);

-- One row per survey answer (keyed by its event id).
CREATE TABLE churn_answers (
    tenant_id   text        NOT NULL,
    answer_id   text        NOT NULL,
    customer_id text        NOT NULL,
    survey_id   text        NOT NULL,
    kind        smallint    NOT NULL,
    score       smallint    NOT NULL,
    answered_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, answer_id)
);
CREATE INDEX churn_answers_customer ON churn_answers (tenant_id, customer_id);

-- Every statement of the renewal_date trait (NULL: cleared), so the date
-- known at any instant can be read back.
CREATE TABLE churn_renewals (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    customer_id  text        NOT NULL,
    renewal_date date,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, event_id)
);
CREATE INDEX churn_renewals_customer ON churn_renewals (tenant_id, customer_id, updated_at);

-- The current score of every customer seen. band_changes counts band
-- changes and numbers the churn.risk_changed events (their message ids).
-- Rows are locked in customer order by every writer.
CREATE TABLE churn_scores (
    tenant_id    text             NOT NULL,
    customer_id  text             NOT NULL,
    score        smallint         NOT NULL DEFAULT 0,
    score_exact  double precision NOT NULL DEFAULT 0,
    band         smallint         NOT NULL DEFAULT 0,
    reasons      jsonb            NOT NULL DEFAULT '[]',
    -- A hash of reasons, so a rescoring can tell a change without reading
    -- them back.
    reasons_hash bigint           NOT NULL DEFAULT 0,
    band_changes integer          NOT NULL DEFAULT 0,
    computed_at  timestamptz,
    PRIMARY KEY (tenant_id, customer_id)
);
-- ListAtRisk pages by (score_exact, customer_id) descending.
CREATE INDEX churn_scores_rank ON churn_scores (tenant_id, score_exact DESC, customer_id DESC);
CREATE INDEX churn_scores_band_rank ON churn_scores (tenant_id, band, score_exact DESC, customer_id DESC);

-- The tenant's current BG/NBD fit.
CREATE TABLE churn_models (
    tenant_id        text             PRIMARY KEY,
    r                double precision NOT NULL,
    alpha            double precision NOT NULL,
    a                double precision NOT NULL,
    b                double precision NOT NULL,
    log_likelihood   double precision NOT NULL,
    customers        integer          NOT NULL,
    converged        boolean          NOT NULL,
    typical_gap_days double precision NOT NULL,
    as_of            timestamptz      NOT NULL,
    pinned           boolean          NOT NULL,
    fitted_at        timestamptz      NOT NULL
);

-- Per-tenant weights; tenants without a row use the defaults in code
-- (internal/score.DefaultWeights).
CREATE TABLE churn_weights (
    tenant_id        text             PRIMARY KEY,
    purchase_outlook double precision NOT NULL,
    overdue          double precision NOT NULL,
    support_tickets  double precision NOT NULL,
    price_complaints double precision NOT NULL,
    sentiment        double precision NOT NULL,
    medium_at        integer          NOT NULL,
    high_at          integer          NOT NULL,
    hysteresis       integer          NOT NULL,
    updated_at       timestamptz      NOT NULL DEFAULT now()
);
