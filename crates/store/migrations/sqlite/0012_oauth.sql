-- Portcullis as an OAuth 2.1 authorization server for MCP apps (docs/mcp.md).
--
-- `oauth_clients`: clients registered dynamically (RFC 7591); a confidential one's secret is
-- kept only as its SHA-256. Pre-registered clients live in the configuration, and clients
-- identified by a metadata document URL are fetched, not stored.
-- `oauth_codes`: authorization codes (SHA-256 of the code), used once: the statement that
-- redeems one checks `used_at` and records the grant it became, so a replayed code can take
-- that grant with it (RFC 9700 §4.5.3.1 / OAuth 2.1 §4.1.3).
-- `oauth_grants`: what a user allowed a client to do at one MCP app (the resource); one per
-- user, client and resource. Access tokens name their grant and are checked in memory against
-- the grants every process holds (the change feed reloads them), so deleting a grant ends its
-- access everywhere within a poll.
-- `oauth_refresh_tokens`: SHA-256 of each refresh token; rotated on use (`rotated_at`), the
-- previous one honoured for a short grace; presented again later, the whole grant goes.
CREATE TABLE oauth_clients (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,
    secret_hash    TEXT,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER
);

CREATE TABLE oauth_codes (
    code_hash      TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    client_name    TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    app            TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER,
    grant_id       TEXT
);

CREATE TABLE oauth_grants (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL,
    client_name    TEXT NOT NULL,
    app            TEXT NOT NULL,
    resource       TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER,
    expires_at     INTEGER NOT NULL
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id);

CREATE TABLE oauth_refresh_tokens (
    token_hash     TEXT PRIMARY KEY,
    grant_id       TEXT NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    created_at     INTEGER NOT NULL,
    rotated_at     INTEGER
);
CREATE INDEX oauth_refresh_grant ON oauth_refresh_tokens (grant_id);

CREATE TRIGGER changes_grant_created AFTER INSERT ON oauth_grants BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('grant', NEW.id, unixepoch());
END;

CREATE TRIGGER changes_grant_updated AFTER UPDATE ON oauth_grants
WHEN OLD.expires_at IS NOT NEW.expires_at OR OLD.scopes IS NOT NEW.scopes
BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('grant', NEW.id, unixepoch());
END;

CREATE TRIGGER changes_grant_deleted AFTER DELETE ON oauth_grants BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('grant', OLD.id, unixepoch());
END;
