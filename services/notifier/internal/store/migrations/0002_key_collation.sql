-- Keys compare bytewise (decision 0019). A text column takes the
-- database's default collation, and on a server initialised with a libc
-- locale (C.UTF-8, en_US.UTF-8: what Debian's initdb picks) every btree
-- comparison of it goes through strcoll. Under "C" the keys compare as
-- memcmp, and sort as Go's strings do, whatever the server's locale.
--
-- The columns an index reads change: ids, codes and addresses, including
-- the status of the partial timer and lease indexes. None is shown to a
-- person in a language's order (suppressions and templates are listed by
-- address and key, now bytewise). The contact fields and the event ids
-- stamped on them change too, though no index reads them: the upsert
-- keeps a field whose (time, event id, value) is greatest, and the batch's
-- own updates are merged in Go by the same rule, bytewise
-- (contacts.Merge); under another collation the two could pick different
-- values and the contact would depend on how events fell into batches.
-- Changing a collation rewrites no rows; it rebuilds the indexes on the
-- columns, once per table.
ALTER TABLE contacts
    ALTER COLUMN tenant           TYPE text COLLATE "C",
    ALTER COLUMN customer_id      TYPE text COLLATE "C",
    ALTER COLUMN email            TYPE text COLLATE "C",
    ALTER COLUMN email_ev         TYPE text COLLATE "C",
    ALTER COLUMN phone            TYPE text COLLATE "C",
    ALTER COLUMN phone_ev         TYPE text COLLATE "C",
    ALTER COLUMN first_name       TYPE text COLLATE "C",
    ALTER COLUMN first_name_ev    TYPE text COLLATE "C",
    ALTER COLUMN last_name        TYPE text COLLATE "C",
    ALTER COLUMN last_name_ev     TYPE text COLLATE "C",
    ALTER COLUMN locale           TYPE text COLLATE "C",
    ALTER COLUMN locale_ev        TYPE text COLLATE "C",
    ALTER COLUMN time_zone        TYPE text COLLATE "C",
    ALTER COLUMN time_zone_ev     TYPE text COLLATE "C",
    ALTER COLUMN email_consent    TYPE text COLLATE "C",
    ALTER COLUMN email_consent_ev TYPE text COLLATE "C",
    ALTER COLUMN sms_consent      TYPE text COLLATE "C",
    ALTER COLUMN sms_consent_ev   TYPE text COLLATE "C";
ALTER TABLE preferences
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE suppressions
    ALTER COLUMN tenant  TYPE text COLLATE "C",
    ALTER COLUMN address TYPE text COLLATE "C";
ALTER TABLE template_versions
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN key    TYPE text COLLATE "C";
ALTER TABLE template_seeds
    ALTER COLUMN tenant TYPE text COLLATE "C";
ALTER TABLE deliveries
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN request_id  TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN status      TYPE text COLLATE "C";
ALTER TABLE delivery_decisions
    ALTER COLUMN tenant     TYPE text COLLATE "C",
    ALTER COLUMN request_id TYPE text COLLATE "C";
