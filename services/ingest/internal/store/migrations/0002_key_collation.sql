-- Keys compare bytewise (decision 0019). A text column takes the
-- database's default collation, and on a server initialised with a libc
-- locale (C.UTF-8, en_US.UTF-8: what Debian's initdb picks) every btree
-- comparison of it goes through strcoll: every accepted event's insert
-- into the log and every duplicate probe would pay for it. Under "C" the
-- ids compare as memcmp whatever the server's locale. Changing a collation
-- rewrites no rows; it rebuilds the primary key (seconds per million ids,
-- once, at start-up).
ALTER TABLE ingest_log
    ALTER COLUMN msg_id TYPE text COLLATE "C";
