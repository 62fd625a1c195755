"""Prometheus metrics of the actions service (on the read API's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

COMMANDS_APPLIED = Counter(
    "social_loyalty_actions_commands_applied_total",
    "Commands that took effect, by consumer and command type.",
    ["consumer", "type"],
)
DUPLICATES = Counter(
    "social_loyalty_actions_commands_duplicate_total",
    "Commands whose id had already been applied (replays, redeliveries): no effect.",
    ["consumer"],
)
SKIPPED = Counter(
    "social_loyalty_actions_commands_skipped_total",
    "Commands deliberately not applied (e.g. replayed MailingSet), by consumer and reason.",
    ["consumer", "reason"],
)
BATCH_SIZE = Histogram(
    "social_loyalty_actions_batch_size",
    "Messages per applied batch.",
    ["consumer"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000, 5000),
)
APPLY_SECONDS = Histogram(
    "social_loyalty_actions_apply_seconds",
    "Wall time from a batch's arrival to its PostgreSQL commit.",
    ["consumer"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DEAD_LETTERS = Counter(
    "social_loyalty_actions_dead_letters_total",
    "Messages sent to the dead-letter topic.",
    ["consumer"],
)
LEDGER_POINTS = Counter(
    "social_loyalty_actions_ledger_points_total",
    "Points moved by the ledger (credited, deducted, shortfall).",
    ["direction"],
)
MESSAGES = Counter(
    "social_loyalty_actions_messages_total",
    "Notifications by channel and final status (sent, failed, suppressed, scheduled).",
    ["channel", "status"],
)
OFFSET_CONFLICTS = Counter(
    "social_loyalty_actions_offset_conflicts_total",
    "Batches rolled back because another consumer had moved the stored offsets (a zombie).",
    ["consumer"],
)
