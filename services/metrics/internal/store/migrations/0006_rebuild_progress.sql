-- Where a rebuild stands, for GetRebuild (ops asking "how far, is it still
-- running, did it fail"). ResetTenant starts an attempt (attempt_started_at,
-- the counts back to 0); every replayed batch records its counts in its own
-- transaction, so they are what is applied whichever replica asks;
-- FinishRebuild records finished_at and keeps the counts as the last
-- rebuild's. A failed attempt records its error (last_error, failed_at)
-- until the rebuild completes. Who runs a rebuild is not stored: it is the
-- holder of the tenant's rebuild lock, which goes with its process.
ALTER TABLE tenant_rebuilds
    ADD COLUMN attempt_started_at timestamptz,
    ADD COLUMN replayed    bigint NOT NULL DEFAULT 0,
    ADD COLUMN applied     bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejected    bigint NOT NULL DEFAULT 0,
    ADD COLUMN pending     bigint,
    ADD COLUMN progress_at timestamptz,
    ADD COLUMN finished_at timestamptz,
    ADD COLUMN last_error  text,
    ADD COLUMN failed_at   timestamptz;
