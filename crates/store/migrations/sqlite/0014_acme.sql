-- What ordering certificates over ACME keeps (`[tls.acme]`): the account, the certificates and,
-- while an order runs, the challenge answers, by name ("account", "certificate",
-- "challenge/tls-alpn-01/chat.example.com"). Account and certificate keys are sealed with the
-- token key. Replicas on one database share it all: any replica can answer the CA's check, and a
-- certificate ordered by one is served by all.
CREATE TABLE acme_state (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Who orders: a lease taken before ordering and released after, so that of several replicas
-- starting together one talks to the CA (its rate limits are per account and per domain set);
-- a replica that dies mid-order leaves it to expire.
CREATE TABLE acme_leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
);
