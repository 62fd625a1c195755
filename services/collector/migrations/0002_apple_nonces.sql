-- Sign in with Apple nonces already used, kept until the token they came with expires.
CREATE TABLE IF NOT EXISTS {schema}.apple_nonces (
    nonce      text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS apple_nonces_by_expiry ON {schema}.apple_nonces (expires_at);
