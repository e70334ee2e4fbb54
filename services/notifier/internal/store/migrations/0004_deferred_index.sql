-- Built apart from 0003's ALTER, whose lock would otherwise be held for the
-- whole build: built alone it takes a SHARE lock, so reads (the senders',
-- the API's) go on while it scans the table; writes wait for it. IF NOT
-- EXISTS: databases that ran 0003 before the split have it already.
-- Whenever a customer's requests are decided, all of the customer's
-- deferred ones that are due are taken with them (under the customer's
-- lock), so that they compete for the free slots in one ordering. This
-- finds them per customer among the few rows that are deferred, not among
-- the customer's whole history.
CREATE INDEX IF NOT EXISTS deliveries_deferred ON deliveries (tenant, customer_id, due_at) WHERE status = 'deferred';
