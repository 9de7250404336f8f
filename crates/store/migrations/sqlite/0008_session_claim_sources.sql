-- Where each identity field of a provider sign-in came from (JSON [[field, claim], …]), shown on
-- /.portcullis/whoami.
ALTER TABLE sessions ADD COLUMN claim_sources TEXT;
