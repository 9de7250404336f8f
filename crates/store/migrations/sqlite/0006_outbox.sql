-- The provisioning outbox. Triggers write an event in the same transaction as every change to a
-- user or their memberships, whatever wrote it (API, UI, CLI, SCIM, just-in-time sign-in), so no
-- path can forget to. The event time is the database's clock.
CREATE TABLE outbox (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    kind    TEXT NOT NULL,
    at      INTEGER NOT NULL
);

CREATE TRIGGER outbox_user_created AFTER INSERT ON users BEGIN
    INSERT INTO outbox (user_id, kind, at) VALUES (NEW.id, 'user_created', unixepoch());
END;

CREATE TRIGGER outbox_user_changed AFTER UPDATE ON users
WHEN OLD.email IS NOT NEW.email OR OLD.display_name IS NOT NEW.display_name
  OR OLD.username IS NOT NEW.username OR OLD.role IS NOT NEW.role OR OLD.status IS NOT NEW.status
BEGIN
    INSERT INTO outbox (user_id, kind, at) VALUES (
        NEW.id,
        CASE
            WHEN OLD.status IS NOT NEW.status AND NEW.status = 'active' THEN 'user_enabled'
            WHEN OLD.status IS NOT NEW.status THEN 'user_disabled'
            WHEN OLD.role IS NOT NEW.role THEN 'role_changed'
            ELSE 'user_updated'
        END,
        unixepoch());
END;

CREATE TRIGGER outbox_user_deleted AFTER DELETE ON users BEGIN
    INSERT INTO outbox (user_id, kind, at) VALUES (OLD.id, 'user_deleted', unixepoch());
END;

CREATE TRIGGER outbox_member_added AFTER INSERT ON group_members BEGIN
    INSERT INTO outbox (user_id, kind, at) VALUES (NEW.user_id, 'groups_changed', unixepoch());
END;

CREATE TRIGGER outbox_member_removed AFTER DELETE ON group_members BEGIN
    INSERT INTO outbox (user_id, kind, at) VALUES (OLD.user_id, 'groups_changed', unixepoch());
END;

-- One row per event and sink. Delivery sends the user's current state, so several pending events
-- of one user and sink are delivered together, oldest first, never out of order.
CREATE TABLE deliveries (
    seq             INTEGER NOT NULL REFERENCES outbox (seq),
    sink            TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead', 'discarded')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    finished_at     INTEGER,
    PRIMARY KEY (seq, sink)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_user ON deliveries (sink, user_id, state, seq);
