-- The holder's database session (its backend pid), kept open while it
-- holds the lease: a holder that died (killed, OOM, node gone with a
-- clean TCP close) ends its session at once, so the others need not wait
-- for expires_at. NULL (leases taken before this column): the lease
-- lapses only by time.
ALTER TABLE bus_leases ADD COLUMN holder_pid integer;
