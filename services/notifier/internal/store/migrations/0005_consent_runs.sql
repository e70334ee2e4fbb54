-- Where the run of the shop's reports of a channel's marketing consent
-- began (decision 0046): `since` is the report the run counts from,
-- `other` the latest report of another value. A shop re-sends the whole
-- profile on every sync, so a grant counts from since, and a repeated
-- grant does not undo a later unsubscribe; the columns email_consent and
-- sms_consent stay the shop's latest report.
-- Rows written before this have no since: such a run counts from its
-- latest report, which is all that is known of it and what decided until
-- now, so the upgrade changes no decision and needs no rewrite of the
-- table (whose lock every decision would wait behind). A replica not yet
-- upgraded, during a rolling upgrade, leaves since and other stale: 0006
-- tells such runs. Constant defaults rewrite no rows; the lock is brief
-- but queues behind long transactions: give up after a few seconds (the
-- start fails and is retried).
SET LOCAL lock_timeout = '5s';
ALTER TABLE contacts
    ADD COLUMN email_consent_since text NOT NULL DEFAULT '', ADD COLUMN email_consent_since_at timestamptz, ADD COLUMN email_consent_since_ev text NOT NULL DEFAULT '',
    ADD COLUMN email_consent_other text NOT NULL DEFAULT '', ADD COLUMN email_consent_other_at timestamptz, ADD COLUMN email_consent_other_ev text NOT NULL DEFAULT '',
    ADD COLUMN sms_consent_since   text NOT NULL DEFAULT '', ADD COLUMN sms_consent_since_at   timestamptz, ADD COLUMN sms_consent_since_ev   text NOT NULL DEFAULT '',
    ADD COLUMN sms_consent_other   text NOT NULL DEFAULT '', ADD COLUMN sms_consent_other_at   timestamptz, ADD COLUMN sms_consent_other_ev   text NOT NULL DEFAULT '';
