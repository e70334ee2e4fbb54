-- Keys compare bytewise (decision 0019). A text column takes the
-- database's default collation, and on a server initialised with a libc
-- locale (C.UTF-8, en_US.UTF-8: what Debian's initdb picks) every btree
-- comparison of it goes through strcoll; the facts consumer's enrollment
-- key alone is four text columns. Under "C" the keys compare as memcmp,
-- and sort as Go's strings do (CompareCustomers, the order UpsertOrders
-- already asked for with COLLATE "C"), whatever the server's locale.
--
-- Only the columns an index reads change, its keys and its predicates
-- (enrollments' status and goal_event): they are ids and codes, never
-- shown to a person in a language's order. Every column joined to another
-- table's (tenant, campaign and customer ids, order ids) is one of them, so
-- both sides of each join agree. Changing a collation rewrites no rows; it
-- rebuilds the indexes on the columns, once per table.
ALTER TABLE campaign_customers
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE campaign_orders
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN order_id    TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE campaigns
    ALTER COLUMN tenant TYPE text COLLATE "C",
    ALTER COLUMN id     TYPE text COLLATE "C";
ALTER TABLE campaign_versions
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C";
ALTER TABLE campaign_members
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE enrollments
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN entry_key   TYPE text COLLATE "C",
    ALTER COLUMN status      TYPE text COLLATE "C",
    ALTER COLUMN goal_event  TYPE text COLLATE "C";
ALTER TABLE coupons
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN code        TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE campaign_deliveries
    ALTER COLUMN tenant      TYPE text COLLATE "C",
    ALTER COLUMN request_id  TYPE text COLLATE "C",
    ALTER COLUMN campaign_id TYPE text COLLATE "C";
