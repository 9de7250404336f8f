-- Provider identities linked to users: one user may sign in through several providers.
CREATE TABLE identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    email      TEXT,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_by_user ON identities (user_id);

-- Memberships synced from provider claims carry the provider as their source, so a sync never
-- touches a membership made by hand (source 'local').
CREATE TABLE group_members_v2 (
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source     TEXT NOT NULL DEFAULT 'local',
    PRIMARY KEY (group_name, user_id, source)
);
INSERT INTO group_members_v2 (group_name, user_id, source) SELECT group_name, user_id, 'local' FROM group_members;
DROP TABLE group_members;
ALTER TABLE group_members_v2 RENAME TO group_members;
CREATE INDEX group_members_by_user ON group_members (user_id);

-- In-progress sign-ins through a provider, keyed by the hash of their `state`. Kept after
-- completion (completed_at) so a replayed callback can land the user where they were going.
CREATE TABLE auth_flows (
    state_hash   TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    binding_hash TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    verifier     TEXT NOT NULL,
    return_to    TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    completed_at INTEGER
);
CREATE INDEX auth_flows_by_binding ON auth_flows (binding_hash, created_at);

ALTER TABLE sessions ADD COLUMN provider TEXT;
-- The provider's ID token, encrypted, for RP-initiated logout (id_token_hint).
ALTER TABLE sessions ADD COLUMN id_token_enc TEXT;
-- The provider's subject and session id (`sid`), so a back-channel logout can find the session.
ALTER TABLE sessions ADD COLUMN provider_subject TEXT;
ALTER TABLE sessions ADD COLUMN provider_sid TEXT;
-- The provider's refresh token (encrypted) and when its access token expires.
ALTER TABLE sessions ADD COLUMN refresh_token_enc TEXT;
ALTER TABLE sessions ADD COLUMN access_expires_at INTEGER;
CREATE INDEX sessions_by_provider_subject ON sessions (provider, provider_subject);
