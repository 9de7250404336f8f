-- Failed sign-in attempts per throttle key: see the SQLite migration 0013.
CREATE TABLE sign_in_failures (
    throttle_key  TEXT PRIMARY KEY,
    failures      BIGINT NOT NULL,
    last_failure  BIGINT NOT NULL
);
