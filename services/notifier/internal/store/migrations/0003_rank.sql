-- Cap slots by rank across batches (decision 0023). rank is the
-- requester's NotificationRequested.rank: higher takes a free slot of the
-- frequency cap first. Rows written before it were unranked, which is
-- what the default says (an ADD COLUMN with a constant default rewrites
-- no rows).
ALTER TABLE deliveries ADD COLUMN rank integer NOT NULL DEFAULT 0;

-- Whenever a customer's requests are decided, all of the customer's
-- deferred ones that are due are taken with them (under the customer's
-- lock), so that they compete for the free slots in one ordering. This
-- finds them per customer among the few rows that are deferred, not among
-- the customer's whole history.
CREATE INDEX deliveries_deferred ON deliveries (tenant, customer_id, due_at) WHERE status = 'deferred';
