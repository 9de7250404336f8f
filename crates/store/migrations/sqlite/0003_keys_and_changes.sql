-- API keys for scripts, agents and CLIs. Only the SHA-256 of the key is stored.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    owner_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- App names the key may reach, one per line; empty: every app its owner may use.
    allowed_apps TEXT NOT NULL DEFAULT '',
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX api_keys_by_owner ON api_keys (owner_id);

-- Every change that running processes must apply to their caches (a user disabled, a key
-- revoked…), in order. Processes poll it, so a change made by the CLI or another replica is
-- enforced within a second.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL
);
