-- Keys that sign identity assertions (ES256). The private key is sealed with the token key.
-- The newest key without retired_at signs; retired keys stay published until their last
-- assertion has expired.
CREATE TABLE signing_keys (
    kid             TEXT PRIMARY KEY,
    private_key_enc TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    retired_at      INTEGER
);
