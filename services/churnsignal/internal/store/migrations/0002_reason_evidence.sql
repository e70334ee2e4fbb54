-- Reasons are stored as structured evidence (codes, points, numbers at the
-- precision shown, instants rather than ages; internal/score.Evidence) and
-- their sentences are rendered when read. A pass as time goes by then
-- rewrites only the scores that really changed instead of every row whose
-- "95 days since the last order" became "96 days". Rows written before
-- keep their stored sentences ("description") until a rescoring rewrites
-- them, which the first pass does: their reasons_hash no longer matches.

-- The instant the last complete rescoring pass of the tenant started: a
-- stored score unchanged by it was confirmed as of then.
ALTER TABLE churn_tenants ADD COLUMN rescored_at timestamptz;

-- Room in each page for a new version of its rows: a rescoring that changes
-- only a row's reasons leaves its indexed columns alone, and Postgres can
-- then update it in place (HOT) without touching the indexes.
ALTER TABLE churn_scores SET (fillfactor = 85);
