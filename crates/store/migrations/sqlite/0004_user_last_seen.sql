-- When the user was last active: set at sign-in and advanced with their sessions' activity
-- (which the session cache writes back about once a minute, never per request).
ALTER TABLE users ADD COLUMN last_seen_at INTEGER;
