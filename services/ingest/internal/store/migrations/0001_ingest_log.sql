-- The ingest log: every event id that reached RETAIN_EVENTS, kept for as long
-- as the stream keeps events. JetStream's duplicate window is minutes; this
-- lets ingest still answer "duplicate" to a client retry days later.
CREATE TABLE ingest_log (
    msg_id      text        PRIMARY KEY, -- "<tenant>/<event id>", the Nats-Msg-Id
    logged_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ingest_log_logged_at ON ingest_log (logged_at);
