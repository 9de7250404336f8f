-- The change feed is written by triggers, in the same transaction as every change that running
-- processes must apply to their caches, whatever wrote it (see the SQLite migration 0009 for
-- the reasoning). Like the outbox, writers take turns until they commit, so sequence numbers
-- follow commit order and a replica that has read number 11 never misses a 10 committed later.
-- Within a statement, triggers fire in name order: changes_* (lock 7243062) always before
-- outbox_* (lock 7243061), so two writers never wait on each other's locks in opposite order.
CREATE FUNCTION change_event(event_kind TEXT, event_subject TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7243062);
    INSERT INTO changes (kind, subject, at) VALUES (event_kind, event_subject, extract(epoch FROM now())::bigint);
END;
$$;

CREATE FUNCTION changes_user() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM change_event('user', NEW.id);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM change_event('user', OLD.id);
    ELSIF OLD.email IS DISTINCT FROM NEW.email OR OLD.display_name IS DISTINCT FROM NEW.display_name
       OR OLD.username IS DISTINCT FROM NEW.username OR OLD.role IS DISTINCT FROM NEW.role
       OR OLD.status IS DISTINCT FROM NEW.status THEN
        PERFORM change_event('user', NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_user AFTER INSERT OR UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION changes_user();

CREATE FUNCTION changes_membership() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM change_event('user', NEW.user_id);
    ELSE
        PERFORM change_event('user', OLD.user_id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_membership AFTER INSERT OR DELETE ON group_members
    FOR EACH ROW EXECUTE FUNCTION changes_membership();

CREATE FUNCTION changes_session() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM change_event('session', OLD.id_hash);
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_session AFTER DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION changes_session();

CREATE FUNCTION changes_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM change_event('key', NEW.id);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM change_event('key', OLD.id);
    ELSIF OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
       OR OLD.allowed_apps IS DISTINCT FROM NEW.allowed_apps OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.owner_id IS DISTINCT FROM NEW.owner_id THEN
        PERFORM change_event('key', NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_key AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION changes_key();

CREATE FUNCTION changes_signing_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR OLD.retired_at IS DISTINCT FROM NEW.retired_at THEN
        PERFORM change_event('signing_key', NEW.kid);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER changes_signing_key AFTER INSERT OR UPDATE ON signing_keys
    FOR EACH ROW EXECUTE FUNCTION changes_signing_key();
