-- The change feed is written by triggers, in the same transaction as every change that running
-- processes must apply to their caches (a user's profile, role, status or groups; a session
-- ended; an API key; the signing keys), whatever wrote it: the API, the admin UI, the CLI, SCIM,
-- provider sign-in and refresh, LDAP, external identities. No code path can forget to announce
-- a change to the other replicas. Columns that change on every use (last_seen_at,
-- last_used_at, updated_at) write nothing.
CREATE TRIGGER changes_user_created AFTER INSERT ON users BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('user', NEW.id, unixepoch());
END;

CREATE TRIGGER changes_user_updated AFTER UPDATE ON users
WHEN OLD.email IS NOT NEW.email OR OLD.display_name IS NOT NEW.display_name
  OR OLD.username IS NOT NEW.username OR OLD.role IS NOT NEW.role OR OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('user', NEW.id, unixepoch());
END;

CREATE TRIGGER changes_user_deleted AFTER DELETE ON users BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('user', OLD.id, unixepoch());
END;

CREATE TRIGGER changes_member_added AFTER INSERT ON group_members BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('user', NEW.user_id, unixepoch());
END;

CREATE TRIGGER changes_member_removed AFTER DELETE ON group_members BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('user', OLD.user_id, unixepoch());
END;

CREATE TRIGGER changes_session_ended AFTER DELETE ON sessions BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('session', OLD.id_hash, unixepoch());
END;

CREATE TRIGGER changes_key_created AFTER INSERT ON api_keys BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('key', NEW.id, unixepoch());
END;

CREATE TRIGGER changes_key_updated AFTER UPDATE ON api_keys
WHEN OLD.revoked_at IS NOT NEW.revoked_at OR OLD.expires_at IS NOT NEW.expires_at
  OR OLD.allowed_apps IS NOT NEW.allowed_apps OR OLD.name IS NOT NEW.name
  OR OLD.owner_id IS NOT NEW.owner_id
BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('key', NEW.id, unixepoch());
END;

CREATE TRIGGER changes_key_deleted AFTER DELETE ON api_keys BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('key', OLD.id, unixepoch());
END;

CREATE TRIGGER changes_signing_key_added AFTER INSERT ON signing_keys BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('signing_key', NEW.kid, unixepoch());
END;

CREATE TRIGGER changes_signing_key_retired AFTER UPDATE ON signing_keys
WHEN OLD.retired_at IS NOT NEW.retired_at
BEGIN
    INSERT INTO changes (kind, subject, at) VALUES ('signing_key', NEW.kid, unixepoch());
END;
