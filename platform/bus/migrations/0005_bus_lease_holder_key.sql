-- The holder is part of a lease row's key (decision 0036). Postgres takes
-- the strongest row lock (FOR UPDATE) for an update that changes a column
-- of a unique index such as this one, and the lighter FOR NO KEY UPDATE
-- for any other update. An exclusive consumer's batches fence with FOR
-- KEY SHARE, which conflicts with the first and not the second: a change
-- of holder (a takeover), and a delete (a release), wait for the holder's
-- batches in flight, while its renewals (expires_at, holder_pid) do not.
-- As a constraint it adds nothing to the primary key on name. Like every
-- bus key, holder compares bytewise (decision 0019).
ALTER TABLE bus_leases ALTER COLUMN holder TYPE text COLLATE "C";
CREATE UNIQUE INDEX bus_leases_holder_key ON bus_leases (name, holder);
