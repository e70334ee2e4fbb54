-- The band changes held back (held_from, 0005) are released by reading
-- those rows alone, not by a full pass over the tenant: a shop's import
-- holds back every tenant's changes while the consumer is behind, and each
-- has a few. The index holds only those rows, so it stays small, and an
-- update that leaves held_from NULL (reasons only) is still HOT.
CREATE INDEX churn_scores_held ON churn_scores (tenant_id, customer_id) WHERE held_from IS NOT NULL;
