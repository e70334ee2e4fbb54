-- platform/bus: consumer inbox, dead letters and transactional outbox.

-- Ids of messages a consumer has applied. A redelivered or re-published
-- message whose id is here is acked without running the handler again.
CREATE TABLE bus_inbox (
    consumer    text        NOT NULL,
    msg_id      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, msg_id)
);
-- Retention cleanup deletes by age. Rows arrive in time order, so a BRIN
-- index is enough and costs next to nothing on the hot insert path.
CREATE INDEX bus_inbox_received_at ON bus_inbox USING brin (received_at);

-- Messages a consumer gave up on: rejected by the handler (poison) or failed
-- MaxDeliver times. Kept whole so they can be inspected and replayed.
CREATE TABLE bus_dead_letters (
    id            bigserial   PRIMARY KEY,
    consumer      text        NOT NULL,
    msg_id        text        NOT NULL,
    subject       text        NOT NULL,
    headers       jsonb       NOT NULL DEFAULT '{}',
    data          bytea       NOT NULL,
    reason        text        NOT NULL,
    num_delivered integer     NOT NULL,
    failed_at     timestamptz NOT NULL DEFAULT now(),
    replayed_at   timestamptz,
    UNIQUE (consumer, msg_id)
);
CREATE INDEX bus_dead_letters_pending ON bus_dead_letters (consumer, id) WHERE replayed_at IS NULL;

-- Derived events written in the same transaction as the state change that
-- produced them; the relay publishes them with Nats-Msg-Id = msg_id.
CREATE TABLE bus_outbox (
    id           bigserial   PRIMARY KEY,
    msg_id       text        NOT NULL UNIQUE,
    subject      text        NOT NULL,
    type         text        NOT NULL DEFAULT '',
    headers      jsonb       NOT NULL DEFAULT '{}',
    data         bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
-- The relay's work list: small, because rows leave it once published.
CREATE INDEX bus_outbox_unpublished ON bus_outbox (id) WHERE published_at IS NULL;
CREATE INDEX bus_outbox_published_at ON bus_outbox (published_at) WHERE published_at IS NOT NULL;
