-- Cap slots by rank across batches (decision 0023). rank is the
-- requester's NotificationRequested.rank: higher takes a free slot of the
-- frequency cap first. Rows written before it were unranked, which is
-- what the default says (an ADD COLUMN with a constant default rewrites
-- no rows).
-- Its ACCESS EXCLUSIVE lock is brief, but it queues behind any long
-- transaction and every reader queues behind it: give up after a few
-- seconds (the start fails and is retried) rather than stall the service.
SET LOCAL lock_timeout = '5s';
ALTER TABLE deliveries ADD COLUMN rank integer NOT NULL DEFAULT 0;
