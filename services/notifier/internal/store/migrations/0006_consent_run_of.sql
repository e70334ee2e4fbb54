-- Which latest report of the shop's consent a run (migration 0005) was
-- worked out with (decision 0046). A replica from before 0005, still
-- running during a rolling upgrade, writes only the latest report
-- (email_consent, sms_consent) and leaves since and other as they were: a
-- run whose run_of is not the latest report belongs to an earlier report:
-- a latest report of the run's value goes on with the run (most likely the
-- shop's sync repeating it), one of another value counts from itself, as
-- a row without since does (contacts.consentFields).
-- Rows written before this have no run_of, so their runs count from their
-- latest report, as rows from before 0005 do (0005 and this ship in one
-- release, so no other row has a since). Constant defaults rewrite no
-- rows.
SET LOCAL lock_timeout = '5s';
ALTER TABLE contacts
    ADD COLUMN email_consent_run_of text NOT NULL DEFAULT '', ADD COLUMN email_consent_run_of_at timestamptz, ADD COLUMN email_consent_run_of_ev text NOT NULL DEFAULT '',
    ADD COLUMN sms_consent_run_of   text NOT NULL DEFAULT '', ADD COLUMN sms_consent_run_of_at   timestamptz, ADD COLUMN sms_consent_run_of_ev   text NOT NULL DEFAULT '';
