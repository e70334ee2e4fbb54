-- Fewer writes per event, again (the facts consumer's cost is write volume).

-- A goal of order.placed (the default, and every playbook's) is no longer
-- written into the enrollment: its conversion is the customer's first
-- order after the anchor within the attribution window, read from
-- campaign_orders when a timer fires, a report counts or a customer's
-- enrollments are listed (store.conversion). Orders that arrive in any
-- order, or before the enrollment, count alike. converted_at is kept for
-- the goals that are not stored facts (survey.answered, ticket.resolved,
-- customer.updated), written when they arrive.
-- Enrollments now take only their inserts and the timer's updates, so the
-- room left for HOT goal updates (0002) goes.
ALTER TABLE enrollments SET (fillfactor = 100);

-- An order that reaches the goal of an enrollment going on after its
-- goal and waiting on a branch wakes it (due now): those are the only
-- enrollments the consumer touches for an order goal, found here.
CREATE INDEX enrollments_goal_wait ON enrollments (tenant, customer_id)
    WHERE status = 'ACTIVE' AND armed AND NOT stop_on_goal;

-- The messages a campaign requested are counted from its treated
-- enrollments' completed send steps (steps_done), written in the same
-- transaction as each request, rather than from a row per request.
DROP TABLE campaign_sends;

-- An enrollment is found by its entry key, which now leads with the
-- campaign: the report, an archive and the holdout group of a customer's
-- next entry read a campaign's enrollments by prefix, so a customer no
-- longer needs a member row to be found from the campaign. Member rows
-- stay only for entry policies with a gap (once per N days), whose
-- conditional upsert admits a customer atomically. The id stays (request
-- ids and coupons name it), numbered by its sequence, but nothing looks an
-- enrollment up by it: no index.
ALTER TABLE enrollments DROP CONSTRAINT enrollments_pkey;
ALTER TABLE enrollments DROP CONSTRAINT enrollments_entry;
ALTER TABLE enrollments ADD PRIMARY KEY (tenant, campaign_id, customer_id, entry_key);

-- A customer's enrollments whose goal is not an order, for the goal events
-- that are recorded on arrival (MarkGoals).
CREATE INDEX enrollments_recorded_goal ON enrollments (tenant, customer_id) WHERE goal_event <> 'order.placed';
