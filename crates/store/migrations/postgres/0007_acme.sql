-- ACME account, certificates, challenge answers and the ordering lease: see the SQLite
-- migration 0014.
CREATE TABLE acme_state (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE acme_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);
