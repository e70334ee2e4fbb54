-- A consumer that must apply its stream in order across processes
-- (ConsumerConfig.Exclusive) runs in one process at a time: the holder of
-- its lease. Expiry is in the database's clock, so the processes' clocks
-- need not agree.
CREATE TABLE bus_leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
