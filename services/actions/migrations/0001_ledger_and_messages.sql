-- The actions service's tables: the ledger, offer budgets, deliveries, subscriptions,
-- counters and the command ids applied or skipped (services/actions/schema.py).
CREATE TABLE IF NOT EXISTS {schema}.accounts (
    member_id text PRIMARY KEY,
    balance bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.entries (
    command_id text PRIMARY KEY,
    seq bigserial NOT NULL,
    member_id text NOT NULL,
    points bigint NOT NULL,
    requested bigint NOT NULL,
    shortfall bigint NOT NULL DEFAULT 0,
    balance_after bigint NOT NULL,
    offer_id text NOT NULL,
    source_event_id text NOT NULL,
    reverses text,
    reason text NOT NULL,
    replay boolean NOT NULL DEFAULT false,
    issued_at timestamptz NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entries_member ON {schema}.entries (member_id, seq DESC);
ALTER TABLE {schema}.entries ADD COLUMN IF NOT EXISTS budget bigint;
ALTER TABLE {schema}.entries ADD COLUMN IF NOT EXISTS budget_refund bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS entries_reverses ON {schema}.entries (reverses) WHERE reverses IS NOT NULL;
CREATE TABLE IF NOT EXISTS {schema}.offer_budgets (
    offer_id text PRIMARY KEY,
    spent bigint NOT NULL DEFAULT 0,
    budget bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.deliveries (
    command_id text PRIMARY KEY,
    member_id text NOT NULL,
    channel text NOT NULL,
    template_id text NOT NULL,
    params jsonb NOT NULL,
    marketing boolean NOT NULL,
    status text NOT NULL
        CHECK (status IN ('sending', 'sent', 'failed', 'suppressed', 'scheduled')),
    send_after timestamptz,
    attempts integer NOT NULL DEFAULT 0,
    reason text,
    provider_message_id text,
    source_topic text,
    source_partition integer,
    source_offset bigint,
    raw_key bytea,
    raw_value bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS deliveries_scheduled ON {schema}.deliveries (send_after)
    WHERE status = 'scheduled';
CREATE TABLE IF NOT EXISTS {schema}.subscriptions (
    member_id text NOT NULL,
    channel text NOT NULL,
    enabled boolean NOT NULL,
    command_id text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, channel)
);
CREATE TABLE IF NOT EXISTS {schema}.counters (
    member_id text NOT NULL,
    name text NOT NULL,
    value bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, name)
);
CREATE TABLE IF NOT EXISTS {schema}.skipped_commands (
    command_id text PRIMARY KEY,
    kind text NOT NULL,
    reason text NOT NULL,
    source_topic text NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS {schema}.applied_commands (
    command_id text PRIMARY KEY,
    kind text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
