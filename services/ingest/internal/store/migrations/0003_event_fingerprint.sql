-- What each logged id was used for (decision 0020): the content fingerprint
-- of the event (event.Encode: SHA-256 of the event as the client sent it,
-- without what ingest stamps), its type and when the stream stored it, so
-- that the same id sent with other content is rejected as a conflict instead
-- of answered "duplicate" and dropped. Rows logged before have NULLs: their
-- content is unknown and a re-send of their id stays a duplicate. Adding
-- nullable columns without a default rewrites no rows.
ALTER TABLE ingest_log
    ADD COLUMN fingerprint text,
    ADD COLUMN event_type  text,
    ADD COLUMN accepted_at timestamptz;
