-- services/campaign: the facts its conditions need, campaigns and their
-- versions, holdout assignments, enrollments with their timers, coupons,
-- the messages requested and their delivery outcomes.

-- Customer facts, from customer.updated and churn.risk_changed. Each group
-- of fields keeps the newest event's values (profile_at, band_at), so
-- applying the same events in any order gives the same row.
CREATE TABLE campaign_customers (
    tenant       text        NOT NULL,
    customer_id  text        NOT NULL,
    locale       text        NOT NULL DEFAULT '',
    time_zone    text        NOT NULL DEFAULT '',
    renewal_date date,
    profile_at   timestamptz,
    churn_band   smallint    NOT NULL DEFAULT 0,
    band_at      timestamptz,
    PRIMARY KEY (tenant, customer_id)
);

-- order.placed facts, keyed by the order id.
CREATE TABLE campaign_orders (
    tenant      text        NOT NULL,
    order_id    text        NOT NULL,
    customer_id text        NOT NULL,
    placed_at   timestamptz NOT NULL,
    total_minor bigint      NOT NULL,
    currency    text        NOT NULL,
    coupon_code text        NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, order_id)
);
CREATE INDEX campaign_orders_customer ON campaign_orders (tenant, customer_id, placed_at);

-- A campaign's current state; its definitions are the versions.
CREATE TABLE campaigns (
    tenant           text        NOT NULL,
    id               text        NOT NULL,
    version          integer     NOT NULL,
    state            smallint    NOT NULL,
    playbook         text        NOT NULL DEFAULT '',
    -- Scheduled triggers: how often, and when the audience is due next.
    schedule_every   interval,
    next_audience_at timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX campaigns_audience_due ON campaigns (next_audience_at) WHERE schedule_every IS NOT NULL AND state = 1;

-- Every version ever saved, as retain.campaign.v1.Campaign protobuf:
-- enrollments run the version they started with.
CREATE TABLE campaign_versions (
    tenant      text        NOT NULL,
    campaign_id text        NOT NULL,
    version     integer     NOT NULL,
    spec        bytea       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, campaign_id, version)
);

-- One row per customer who ever entered a campaign: the persisted holdout
-- group, and the last entry that the entry policy's gap is measured from.
CREATE TABLE campaign_members (
    tenant          text        NOT NULL,
    campaign_id     text        NOT NULL,
    customer_id     text        NOT NULL,
    holdout         boolean     NOT NULL,
    last_entered_at timestamptz NOT NULL,
    entries         integer     NOT NULL,
    PRIMARY KEY (tenant, campaign_id, customer_id)
);

-- An enrollment per (campaign, customer, entry key): the unique key is what
-- makes a duplicate or redelivered trigger unable to enroll twice. The
-- cursor (step, due_at, armed) is the enrollment's durable timer.
CREATE TABLE enrollments (
    id                bigserial   PRIMARY KEY,
    tenant            text        NOT NULL,
    campaign_id       text        NOT NULL,
    version           integer     NOT NULL,
    customer_id       text        NOT NULL,
    entry_key         text        NOT NULL,
    holdout           boolean     NOT NULL,
    anchor_at         timestamptz NOT NULL,
    entered_at        timestamptz NOT NULL,
    attribution_until timestamptz NOT NULL,
    goal_event        text        NOT NULL,
    stop_on_goal      boolean     NOT NULL,
    status            text        NOT NULL,
    step              integer     NOT NULL,
    due_at            timestamptz,
    armed             boolean     NOT NULL DEFAULT false,
    steps_done        text[]      NOT NULL DEFAULT '{}',
    converted_at      timestamptz,
    vars              jsonb       NOT NULL DEFAULT '{}',
    coupon_code       text        NOT NULL DEFAULT '',
    UNIQUE (tenant, campaign_id, customer_id, entry_key)
);
CREATE INDEX enrollments_due ON enrollments (due_at) WHERE status = 'ACTIVE';
CREATE INDEX enrollments_customer ON enrollments (tenant, customer_id);

-- Each notification.requested enqueued, by its deterministic request id.
CREATE TABLE campaign_sends (
    tenant        text        NOT NULL,
    request_id    text        NOT NULL,
    campaign_id   text        NOT NULL,
    enrollment_id bigint      NOT NULL,
    step_id       text        NOT NULL,
    requested_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX campaign_sends_campaign ON campaign_sends (tenant, campaign_id);

-- Coupons: one per customer per campaign; codes unique per tenant.
CREATE TABLE coupons (
    tenant            text        NOT NULL,
    code              text        NOT NULL,
    campaign_id       text        NOT NULL,
    customer_id       text        NOT NULL,
    enrollment_id     bigint      NOT NULL,
    percent_off       integer     NOT NULL DEFAULT 0,
    amount_minor      bigint      NOT NULL DEFAULT 0,
    currency          text        NOT NULL DEFAULT '',
    issued_at         timestamptz NOT NULL,
    expires_at        timestamptz NOT NULL,
    redeemed_at       timestamptz,
    redeemed_order_id text,
    PRIMARY KEY (tenant, code),
    UNIQUE (tenant, campaign_id, customer_id)
);

-- The latest delivery outcome of each request (highest sequence wins).
CREATE TABLE campaign_deliveries (
    tenant      text     NOT NULL,
    request_id  text     NOT NULL,
    campaign_id text     NOT NULL,
    outcome     smallint NOT NULL,
    sequence    integer  NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX campaign_deliveries_campaign ON campaign_deliveries (tenant, campaign_id);
