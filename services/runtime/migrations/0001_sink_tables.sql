-- The PostgreSQL-sink runtime (services/runtime/pgsink.py), in each sink service's schema:
-- where each consumer group is, per partition, written with the effects; and the records
-- (outcomes, dead letters) to publish after the commit.
CREATE TABLE IF NOT EXISTS {schema}.consumer_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);
CREATE TABLE IF NOT EXISTS {schema}.outbox (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    topic text NOT NULL,
    key bytea,
    value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS outbox_source ON {schema}.outbox (source, id);
