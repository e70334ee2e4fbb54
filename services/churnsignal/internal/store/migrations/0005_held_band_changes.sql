-- A band change found while the facts consumer is behind the stream (a
-- shop's history import arriving) is stored but not announced: held_from
-- is the band last published for the customer while the stored band
-- differs from it, NULL when the stored band is the one published. A pass
-- run once the consumer has caught up publishes the changes still there.
-- Nullable without a default, so adding it rewrites no row.
ALTER TABLE churn_scores ADD COLUMN held_from smallint;
