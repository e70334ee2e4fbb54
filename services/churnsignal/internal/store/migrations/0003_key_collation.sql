-- Keys compare bytewise (decision 0019). A text column takes the
-- database's default collation, and on a server initialised with a libc
-- locale (C.UTF-8, en_US.UTF-8: what Debian's initdb picks) every btree
-- comparison of it goes through strcoll. Under "C" the keys compare as
-- memcmp, and sort as Go's strings do, whatever the server's locale.
--
-- The columns an index reads change, and every customer_id together: a
-- rescoring pass cuts the customers into ranges by churn_scores' order
-- (store.Boundaries) and reads each range from every fact table, so all
-- of them must order ids alike. Two columns no index reads change too:
-- churn_orders.event_id and churn_tickets.opened_event_id break ties
-- between two versions of an order or ticket in SQL, and the batch's own
-- versions are settled in Go by the same rule, bytewise; under another
-- collation the two could pick different winners and the projection would
-- depend on how events fell into batches. None of these is shown to a
-- person in a language's order. Changing a collation rewrites no rows; it
-- rebuilds the indexes on the columns, once per table.
ALTER TABLE churn_tenants
    ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE churn_orders
    ALTER COLUMN tenant_id   TYPE text COLLATE "C",
    ALTER COLUMN order_id    TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C",
    ALTER COLUMN event_id    TYPE text COLLATE "C";
ALTER TABLE churn_tickets
    ALTER COLUMN tenant_id       TYPE text COLLATE "C",
    ALTER COLUMN ticket_id       TYPE text COLLATE "C",
    ALTER COLUMN customer_id     TYPE text COLLATE "C",
    ALTER COLUMN opened_event_id TYPE text COLLATE "C";
ALTER TABLE churn_answers
    ALTER COLUMN tenant_id   TYPE text COLLATE "C",
    ALTER COLUMN answer_id   TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE churn_renewals
    ALTER COLUMN tenant_id   TYPE text COLLATE "C",
    ALTER COLUMN event_id    TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE churn_scores
    ALTER COLUMN tenant_id   TYPE text COLLATE "C",
    ALTER COLUMN customer_id TYPE text COLLATE "C";
ALTER TABLE churn_models
    ALTER COLUMN tenant_id TYPE text COLLATE "C";
ALTER TABLE churn_weights
    ALTER COLUMN tenant_id TYPE text COLLATE "C";
