-- notifier: contacts projection, preferences, suppressions, templates,
-- deliveries with their decision trail.

-- Contacts projected from customer.updated. Every field carries the event
-- time and id that set it, so applying the same events in any order, any
-- number of times, gives the same row: a field changes only when a newer
-- (occurred_at, event id) brings a non-empty value.
CREATE TABLE contacts (
    tenant           text NOT NULL,
    customer_id      text NOT NULL,
    email            text NOT NULL DEFAULT '', email_at         timestamptz, email_ev         text NOT NULL DEFAULT '',
    phone            text NOT NULL DEFAULT '', phone_at         timestamptz, phone_ev         text NOT NULL DEFAULT '',
    first_name       text NOT NULL DEFAULT '', first_name_at    timestamptz, first_name_ev    text NOT NULL DEFAULT '',
    last_name        text NOT NULL DEFAULT '', last_name_at     timestamptz, last_name_ev     text NOT NULL DEFAULT '',
    locale           text NOT NULL DEFAULT '', locale_at        timestamptz, locale_ev        text NOT NULL DEFAULT '',
    time_zone        text NOT NULL DEFAULT '', time_zone_at     timestamptz, time_zone_ev     text NOT NULL DEFAULT '',
    email_consent    text NOT NULL DEFAULT '', email_consent_at timestamptz, email_consent_ev text NOT NULL DEFAULT '',
    sms_consent      text NOT NULL DEFAULT '', sms_consent_at   timestamptz, sms_consent_ev   text NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, customer_id)
);

-- A customer's own choices (unsubscribe links, the API). For marketing the
-- latest of this and the shop's consent wins.
CREATE TABLE preferences (
    tenant      text        NOT NULL,
    customer_id text        NOT NULL,
    channel     smallint    NOT NULL,
    category    smallint    NOT NULL,
    subscribed  boolean     NOT NULL,
    source      text        NOT NULL,
    request_id  text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, customer_id, channel, category)
);

-- Addresses that must not be messaged (hard bounces, complaints, manual).
CREATE TABLE suppressions (
    tenant     text        NOT NULL,
    channel    smallint    NOT NULL,
    address    text        NOT NULL,
    reason     text        NOT NULL,
    note       text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    PRIMARY KEY (tenant, channel, address)
);

-- Templates are immutable versions; the latest version is the one used.
CREATE TABLE template_versions (
    tenant      text        NOT NULL,
    key         text        NOT NULL,
    channel     smallint    NOT NULL,
    version     integer     NOT NULL,
    description text        NOT NULL DEFAULT '',
    variables   jsonb       NOT NULL,
    variants    jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, key, channel, version)
);

-- Tenants whose default templates were installed (once, on first use).
CREATE TABLE template_seeds (
    tenant    text        PRIMARY KEY,
    seeded_at timestamptz NOT NULL
);

-- One row per request id: the idempotency record, the durable timer (due_at
-- of deferred and queued rows) and the send attempt record (status sending
-- with a lease, written and committed before the provider is called).
CREATE TABLE deliveries (
    tenant              text        NOT NULL,
    request_id          text        NOT NULL,
    customer_id         text        NOT NULL,
    channel             smallint    NOT NULL,
    category            smallint    NOT NULL,
    priority            smallint    NOT NULL,
    template_key        text        NOT NULL,
    template_version    integer     NOT NULL DEFAULT 0,
    campaign_id         text        NOT NULL DEFAULT '',
    request             bytea       NOT NULL,
    status              text        NOT NULL,
    due_at              timestamptz,
    expires_at          timestamptz NOT NULL,
    lease_until         timestamptz,
    attempts            integer     NOT NULL DEFAULT 0,
    seq                 integer     NOT NULL DEFAULT 0,
    outcome             smallint    NOT NULL DEFAULT 0,
    reason_code         text        NOT NULL DEFAULT '',
    reason              text        NOT NULL DEFAULT '',
    provider_message_id text        NOT NULL DEFAULT '',
    locale              text        NOT NULL DEFAULT '',
    requested_at        timestamptz NOT NULL,
    -- When a marketing message took a slot of the frequency cap (queued);
    -- cleared if it ends failed, so a failure does not use up the cap.
    cap_at              timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    PRIMARY KEY (tenant, request_id)
);
CREATE INDEX deliveries_due ON deliveries (due_at) WHERE status IN ('queued', 'deferred');
CREATE INDEX deliveries_lease ON deliveries (lease_until) WHERE status = 'sending';
CREATE INDEX deliveries_cap ON deliveries (tenant, customer_id, cap_at) WHERE cap_at IS NOT NULL;
CREATE INDEX deliveries_customer ON deliveries (tenant, customer_id, created_at DESC);
CREATE INDEX deliveries_campaign ON deliveries (tenant, campaign_id, created_at DESC) WHERE campaign_id <> '';

-- Why: every policy step and send attempt of a delivery, in order.
CREATE TABLE delivery_decisions (
    tenant      text        NOT NULL,
    request_id  text        NOT NULL,
    step        integer     NOT NULL,
    stage       text        NOT NULL,
    verdict     text        NOT NULL,
    reason_code text        NOT NULL DEFAULT '',
    reason      text        NOT NULL DEFAULT '',
    decided_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant, request_id, step)
);
