-- Failed sign-in attempts per throttle key ("password/account:alice", "factor/address:10.0.0.7"),
-- so that every replica applies the same back-off: an attacker cannot multiply the free attempts
-- by the number of replicas, nor escape a lock by landing on another one. The lock itself is
-- derived from the count and the last failure (the back-off settings are the configuration's,
-- not the row's). Stale rows are swept.
CREATE TABLE sign_in_failures (
    throttle_key  TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    last_failure  INTEGER NOT NULL
);
