-- The PostgreSQL schema: the same tables and columns as SQLite after its migrations 0001–0008.
-- Names are compared without regard to case, as SQLite's NOCASE columns do (citext, a trusted
-- extension since PostgreSQL 13: the database owner may create it). Times are Unix seconds.

CREATE EXTENSION IF NOT EXISTS citext;

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      CITEXT NOT NULL UNIQUE,
    email         CITEXT UNIQUE,
    display_name  CITEXT,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user', 'pending')),
    status        TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'pending_approval')),
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    last_seen_at  BIGINT
);

CREATE TABLE groups (
    name        TEXT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    scim_id     TEXT UNIQUE,
    external_id TEXT
);

-- Memberships synced from provider claims carry the provider as their source, so a sync never
-- touches a membership made by hand (source 'local').
CREATE TABLE group_members (
    group_name TEXT NOT NULL REFERENCES groups (name) ON DELETE CASCADE,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    source     TEXT NOT NULL DEFAULT 'local',
    PRIMARY KEY (group_name, user_id, source)
);
CREATE INDEX group_members_by_user ON group_members (user_id);

-- Only the SHA-256 of the cookie value is stored: a copy of this table grants nothing.
CREATE TABLE sessions (
    id_hash           TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at        BIGINT NOT NULL,
    last_seen         BIGINT NOT NULL,
    client_ip         TEXT,
    user_agent        TEXT,
    provider          TEXT,
    id_token_enc      TEXT,
    provider_subject  TEXT,
    provider_sid      TEXT,
    refresh_token_enc TEXT,
    access_expires_at BIGINT,
    claim_sources     TEXT
);
CREATE INDEX sessions_by_user ON sessions (user_id);
CREATE INDEX sessions_by_provider_subject ON sessions (provider, provider_subject);

CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    action    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    actor     TEXT,
    subject   TEXT,
    reason    TEXT,
    client_ip TEXT
);
CREATE INDEX audit_by_time ON audit (at);

-- Provider identities linked to users: one user may sign in through several providers.
CREATE TABLE identities (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    email      TEXT,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX identities_by_user ON identities (user_id);

-- In-progress sign-ins through a provider, keyed by the hash of their `state`; shared by every
-- replica, so a sign-in may start on one and finish on another.
CREATE TABLE auth_flows (
    state_hash   TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    binding_hash TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    verifier     TEXT NOT NULL,
    return_to    TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    completed_at BIGINT
);
CREATE INDEX auth_flows_by_binding ON auth_flows (binding_hash, created_at);

-- API keys. Only the SHA-256 of the key is stored.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    hash         TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    owner_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    allowed_apps TEXT NOT NULL DEFAULT '',
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_by_owner ON api_keys (owner_id);

-- Every change that running processes must apply to their caches, in order; every replica polls it.
CREATE TABLE changes (
    seq     BIGSERIAL PRIMARY KEY,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL
);

CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    private_key_enc TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);

-- The provisioning outbox, written by triggers in the same transaction as every change to a user
-- or their memberships (see the SQLite migration 0006 for the reasoning).
CREATE TABLE outbox (
    seq     BIGSERIAL PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    at      BIGINT NOT NULL
);

-- Outbox writers take turns until they commit: fan-out follows the outbox by sequence number,
-- which must agree with the commit order (a number drawn earlier but committed later would be
-- skipped). outbox_event() takes the lock just before drawing the number.
CREATE FUNCTION outbox_event(event_user TEXT, event_kind TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7243061);
    INSERT INTO outbox (user_id, kind, at) VALUES (event_user, event_kind, extract(epoch FROM now())::bigint);
END;
$$;

CREATE FUNCTION outbox_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM outbox_event(NEW.id, 'user_created');
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM outbox_event(OLD.id, 'user_deleted');
    ELSIF OLD.status IS DISTINCT FROM NEW.status AND NEW.status = 'active' THEN
        PERFORM outbox_event(NEW.id, 'user_enabled');
    ELSIF OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM outbox_event(NEW.id, 'user_disabled');
    ELSIF OLD.role IS DISTINCT FROM NEW.role THEN
        PERFORM outbox_event(NEW.id, 'role_changed');
    ELSIF OLD.email IS DISTINCT FROM NEW.email OR OLD.display_name IS DISTINCT FROM NEW.display_name
       OR OLD.username IS DISTINCT FROM NEW.username THEN
        PERFORM outbox_event(NEW.id, 'user_updated');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_user AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION outbox_user();

CREATE FUNCTION outbox_membership() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM outbox_event(NEW.user_id, 'groups_changed');
    ELSE
        PERFORM outbox_event(OLD.user_id, 'groups_changed');
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_membership AFTER INSERT OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION outbox_membership();

CREATE TABLE deliveries (
    seq             BIGINT NOT NULL REFERENCES outbox (seq),
    sink            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead', 'discarded')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    finished_at     BIGINT,
    PRIMARY KEY (seq, sink)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_user ON deliveries (sink, user_id, state, seq);
