"""The actions service's tables, in its own PostgreSQL schema; idempotent migrations.

* ``consumer_offsets`` and ``outbox``: the PostgreSQL-sink runtime's tables
  (``services/runtime/pgsink.py``, :data:`~services.runtime.pgsink.SINK_DDL`): where
  each consumer group is, written with the effects, and the records (outcomes, dead
  letters) published after the commit.
* ``accounts`` / ``entries``: the ledger; ``entries.command_id`` is the primary key.
  ``entries.budget`` is the offer budget a credit counted against, ``budget_refund``
  what a deduction gave back to it.
* ``offer_budgets``: points credited against each budgeted offer (``spent``, net of
  refunds), locked and updated in the ledger's transaction.
* ``deliveries``: one row per notification command, written *before* the send.
* ``subscriptions``, ``counters``, ``applied_commands`` (command ids the mailing and
  counter consumers have applied), ``skipped_commands`` (commands deliberately not
  applied, e.g. replayed ``MailingSet``: kept apart so they never block the id).
"""

from __future__ import annotations

import psycopg

from services.runtime.pgsink import create_sink_tables, use_schema

__all__ = ["migrate", "use_schema"]

_DDL = """
CREATE TABLE IF NOT EXISTS accounts (
    member_id text PRIMARY KEY,
    balance bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS entries (
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
CREATE INDEX IF NOT EXISTS entries_member ON entries (member_id, seq DESC);
ALTER TABLE entries ADD COLUMN IF NOT EXISTS budget bigint;
ALTER TABLE entries ADD COLUMN IF NOT EXISTS budget_refund bigint NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS entries_reverses ON entries (reverses) WHERE reverses IS NOT NULL;
CREATE TABLE IF NOT EXISTS offer_budgets (
    offer_id text PRIMARY KEY,
    spent bigint NOT NULL DEFAULT 0,
    budget bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS deliveries (
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
CREATE INDEX IF NOT EXISTS deliveries_scheduled ON deliveries (send_after)
    WHERE status = 'scheduled';
CREATE TABLE IF NOT EXISTS subscriptions (
    member_id text NOT NULL,
    channel text NOT NULL,
    enabled boolean NOT NULL,
    command_id text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, channel)
);
CREATE TABLE IF NOT EXISTS counters (
    member_id text NOT NULL,
    name text NOT NULL,
    value bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (member_id, name)
);
CREATE TABLE IF NOT EXISTS skipped_commands (
    command_id text PRIMARY KEY,
    kind text NOT NULL,
    reason text NOT NULL,
    source_topic text NOT NULL,
    source_partition integer NOT NULL,
    source_offset bigint NOT NULL,
    skipped_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS applied_commands (
    command_id text PRIMARY KEY,
    kind text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
"""


def migrate(conn: psycopg.Connection, schema: str) -> None:
    """Create the schema and tables if missing; safe to run at every start, from
    several processes at once (an advisory lock serialises them)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"migrate:{schema}",))
        create_sink_tables(conn, schema)
        conn.execute(_DDL)
