-- A rebuild deletes a tenant's projections and replays the stream into
-- them: until the replay is done the rows are partial. started_at is set in
-- the transaction of the reset and cleared once the replay is done, so a
-- tenant whose row has started_at set has partial figures: queries refuse
-- to answer rather than return them, and a rebuild left half-way by a
-- stopped process is found and run again (decision 0035). starts counts
-- the resets, so a query that read while a whole rebuild ran sees it moved.
CREATE TABLE tenant_rebuilds (
    tenant     text COLLATE "C" PRIMARY KEY,
    started_at timestamptz,
    starts     bigint NOT NULL DEFAULT 0
);
