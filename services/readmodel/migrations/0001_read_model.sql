-- The read model (services/detector/readmodel.py): who is in which group, activity
-- counts per profile, when a profile was last seen, and the events already applied.
CREATE TABLE IF NOT EXISTS {schema}.memberships (
    network text NOT NULL,
    group_id bigint NOT NULL,
    social_user_id text NOT NULL,
    member boolean NOT NULL,
    as_of timestamptz NOT NULL,
    PRIMARY KEY (network, group_id, social_user_id)
);
CREATE TABLE IF NOT EXISTS {schema}.activity (
    network text NOT NULL,
    social_user_id text NOT NULL,
    event_type text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (network, social_user_id, event_type)
);
CREATE TABLE IF NOT EXISTS {schema}.profiles (
    network text NOT NULL,
    social_user_id text NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (network, social_user_id)
);
CREATE TABLE IF NOT EXISTS {schema}.seen_events (event_id text PRIMARY KEY);
