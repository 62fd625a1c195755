-- The collector's baseline: run history and profile links, as they were before
-- versioned migrations (IF NOT EXISTS adopts a database made then). Braces are doubled:
-- the file is a psycopg sql.SQL template with {schema}.
CREATE TABLE IF NOT EXISTS {schema}.runs (
    run_id             text PRIMARY KEY,
    network            text NOT NULL,
    group_id           bigint NOT NULL,
    started_at         timestamptz NOT NULL,
    snapshot_at        timestamptz NOT NULL,
    baseline_at        timestamptz NOT NULL,
    ended_at           timestamptz,
    status             text NOT NULL
                       CHECK (status IN ('running', 'succeeded', 'failed', 'aborted')),
    bucket_count       integer NOT NULL,
    members            bigint,
    api_requests       integer NOT NULL DEFAULT 0,
    api_calls          integer NOT NULL DEFAULT 0,
    objects_read       bigint NOT NULL DEFAULT 0,
    errors_by_code     jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    skipped            jsonb NOT NULL DEFAULT '[]'::jsonb,
    messages_published integer NOT NULL DEFAULT 0,
    reason             text
);
ALTER TABLE {schema}.runs ADD COLUMN IF NOT EXISTS baseline_post_id bigint;
CREATE INDEX IF NOT EXISTS runs_by_group ON {schema}.runs (network, group_id, started_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_start ON {schema}.runs (started_at DESC);
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
