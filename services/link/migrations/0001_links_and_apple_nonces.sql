-- The link service's tables: profile links and the Sign in with Apple nonces already
-- used. IF NOT EXISTS adopts the same tables where an earlier version kept them in the
-- collector's schema (LINK_DB_SCHEMA=collector). Braces are doubled: the file is a
-- psycopg sql.SQL template with {schema}.
CREATE TABLE IF NOT EXISTS {schema}.links (
    id               bigserial PRIMARY KEY,
    member_id        text NOT NULL,
    network          text NOT NULL,
    social_user_id   text NOT NULL,
    registration     boolean NOT NULL,
    linked_at        timestamptz NOT NULL,
    link_event_id    text NOT NULL,
    link_published   boolean NOT NULL DEFAULT false,
    unlinked_at      timestamptz,
    unlink_event_id  text,
    unlink_published boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX IF NOT EXISTS links_one_member_per_profile
    ON {schema}.links (network, social_user_id) WHERE unlinked_at IS NULL;
CREATE INDEX IF NOT EXISTS links_by_member ON {schema}.links (member_id);
CREATE TABLE IF NOT EXISTS {schema}.apple_nonces (
    nonce      text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS apple_nonces_by_expiry ON {schema}.apple_nonces (expires_at);
