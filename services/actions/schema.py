"""The actions service's tables, in its own PostgreSQL schema, made by the versioned
migrations in ``services/actions/migrations/``.

* ``consumer_offsets`` and ``outbox``: the PostgreSQL-sink runtime's tables
  (``services/runtime/pgsink.py``, ``services/runtime/migrations/``): where
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

from services.runtime import migrations
from services.runtime.pgsink import use_schema

__all__ = ["migrate", "use_schema"]


def migrate(conn: psycopg.Connection, schema: str) -> None:
    """Bring the schema up to date (``services/runtime/migrations.py``): the sink
    runtime's tables, then the service's own (``services/actions/migrations/``); safe to
    run at every start, from several processes at once."""
    migrations.migrate(conn, schema, "pgsink", "actions")
