-- Keys compare bytewise (decision 0019). A text column takes the
-- database's default collation, and on a server initialised with a libc
-- locale (C.UTF-8, en_US.UTF-8: what Debian's initdb picks) every btree
-- comparison of it goes through strcoll: the inbox insert of every batch
-- and the outbox's unique msg_id pay for it on every message. Under "C"
-- they compare as memcmp, and sort as Go's strings do, whatever the
-- server's locale. Only the columns the indexes read change: nothing here
-- is shown to a person in a language's order. Changing a collation
-- rewrites no rows; it rebuilds the indexes on the columns.
ALTER TABLE bus_inbox
    ALTER COLUMN consumer TYPE text COLLATE "C",
    ALTER COLUMN msg_id   TYPE text COLLATE "C";
ALTER TABLE bus_dead_letters
    ALTER COLUMN consumer TYPE text COLLATE "C",
    ALTER COLUMN msg_id   TYPE text COLLATE "C";
ALTER TABLE bus_outbox
    ALTER COLUMN msg_id TYPE text COLLATE "C";
ALTER TABLE bus_leases
    ALTER COLUMN name TYPE text COLLATE "C";
