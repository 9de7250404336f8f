-- Second factors. A factor's secret is sealed with the token key (a copy of the database hands
-- out no working authenticator); `last_step` is the last TOTP time step accepted, advanced by
-- the same statement that checks it, so a code works once however many replicas see it.
-- Recovery codes are kept only as SHA-256 hashes and used at most once (`used_at`, set by the
-- statement that checks it). A session records how it was proved (`amr`, RFC 8176 values,
-- space-separated), which `require_mfa` apps read. Deleting the user deletes all of it.
CREATE TABLE factors (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    label         TEXT NOT NULL,
    secret_enc    TEXT NOT NULL,
    last_step     INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX factors_user ON factors (user_id);

CREATE TABLE recovery_codes (
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    used_at     INTEGER,
    PRIMARY KEY (user_id, code_hash)
);

ALTER TABLE sessions ADD COLUMN amr TEXT;
