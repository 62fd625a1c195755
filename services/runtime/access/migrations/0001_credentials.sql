-- API credentials: only the public half of each Ed25519 key is stored, so a copy of
-- this table lets nobody sign a request.
CREATE TABLE IF NOT EXISTS {schema}.credentials (
    key_id     text PRIMARY KEY,
    name       text NOT NULL,
    scopes     text[] NOT NULL,
    public_key bytea NOT NULL CHECK (octet_length(public_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

-- Nonces seen per key, kept until the request's time window has passed: a second
-- request with the same key and nonce is a replay, whichever process it reaches.
CREATE TABLE IF NOT EXISTS {schema}.nonces (
    key_id     text NOT NULL REFERENCES {schema}.credentials (key_id) ON DELETE CASCADE,
    nonce      text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (key_id, nonce)
);
CREATE INDEX IF NOT EXISTS nonces_expires_at ON {schema}.nonces (expires_at);
