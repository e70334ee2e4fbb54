-- held_from (0005) is known to no replica of a release before it: during
-- a rolling update such a replica announces a band change of a held row
-- against the stored band (numbered band_changes + 1) and writes the new
-- band, leaving held_from as it was. held_changes is band_changes when
-- held_from was written (every writer that knows one writes both):
-- held_from counts only while they are equal; otherwise another writer
-- announced since, and the stored band is the one published. A voided
-- held_from stays until the row is next written, ignored by every read.
-- Nullable without a default, so adding it rewrites no row.
ALTER TABLE churn_scores ADD COLUMN held_changes integer;
-- Rows held before this migration were held by code that knows held_from:
-- they stay held. The partial index (0006) finds them, a few at most.
UPDATE churn_scores SET held_changes = band_changes WHERE held_from IS NOT NULL;
