-- The OAuth authorization server's tables: see the SQLite migration 0012.
CREATE TABLE oauth_clients (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,
    secret_hash    TEXT,
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT
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
    expires_at     BIGINT NOT NULL,
    used_at        BIGINT,
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
    created_at     BIGINT NOT NULL,
    last_used_at   BIGINT,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX oauth_grants_user ON oauth_grants (user_id);

CREATE TABLE oauth_refresh_tokens (
    token_hash     TEXT PRIMARY KEY,
    grant_id       TEXT NOT NULL REFERENCES oauth_grants (id) ON DELETE CASCADE,
    created_at     BIGINT NOT NULL,
    rotated_at     BIGINT
);
CREATE INDEX oauth_refresh_grant ON oauth_refresh_tokens (grant_id);

CREATE FUNCTION changes_grant() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM change_event('grant', NEW.id);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM change_event('grant', OLD.id);
    ELSIF OLD.expires_at IS DISTINCT FROM NEW.expires_at OR OLD.scopes IS DISTINCT FROM NEW.scopes THEN
        PERFORM change_event('grant', NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_grant AFTER INSERT OR UPDATE OR DELETE ON oauth_grants
    FOR EACH ROW EXECUTE FUNCTION changes_grant();
