-- Password lifecycle: a "must change at next sign-in" flag, and one-time reset links. A link is
-- kept only as the SHA-256 hash of its token (a copy of the database hands out no working
-- link); it is used at most once (`used_at`, set by the same statement that checks it) and
-- never after `expires_at`. Deleting the user deletes their links.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;

CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    used_at     INTEGER
);
CREATE INDEX password_resets_user ON password_resets (user_id);
