-- Rows held before 0007 were held by code that knows held_from: they keep
-- their hold (held_changes, 0007). Not in 0007: its ALTER TABLE holds the
-- table's ACCESS EXCLUSIVE lock until its transaction ends, and this
-- statement would run under it.
-- Only the held rows are read, by the partial index of 0006: a few among
-- millions. Right after 0005 the planner has no statistics of held_from
-- (none until the next ANALYZE) and guesses 99.5% of the rows non-NULL, so
-- it reads the whole table (a minute cold on a big shop's scores) unless
-- sequential scans are off; SET LOCAL lasts until this file's transaction
-- ends. held_changes IS NULL leaves alone the rows written since 0007,
-- and a database whose 0007 ran this update already (a development build).
SET LOCAL enable_seqscan = off;
UPDATE churn_scores SET held_changes = band_changes WHERE held_from IS NOT NULL AND held_changes IS NULL;
