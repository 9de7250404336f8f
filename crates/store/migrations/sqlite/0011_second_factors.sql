-- Second factors: authenticator apps (TOTP) and passkeys. A factor's secret (a passkey's
-- public key) is sealed with the token key (a copy of the database hands out no working
-- authenticator); a passkey is found by its `credential_id` at a passwordless sign-in.
-- `last_step` is the last TOTP time step accepted, or a passkey's signature counter, advanced
-- by the same statement that checks it, so a code works once however many replicas see it.
-- Recovery codes are kept only as SHA-256 hashes and used at most once (`used_at`, set by the
-- statement that checks it). A session records how it was proved (`amr`, RFC 8176 values,
-- space-separated), which `require_mfa` apps read. Deleting the user deletes all of it.
CREATE TABLE factors (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    label         TEXT NOT NULL,
    secret_enc    TEXT NOT NULL,
    credential_id TEXT,
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX factors_user ON factors (user_id);
CREATE UNIQUE INDEX factors_credential ON factors (credential_id);

CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

ALTER TABLE sessions ADD COLUMN amr TEXT;
