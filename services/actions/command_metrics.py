"""Prometheus metrics of the actions service's command handlers (on the read API's
``/metrics``); the loop's own (batches, apply time, dead letters, offset conflicts) are
the PostgreSQL-sink runtime's, ``social_loyalty_pgsink_*{group}``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.runtime.metric_set import MetricSet


class CommandMetrics(MetricSet):
    """The command handlers' metrics, labelled by consumer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.commands_applied = self.counter(
            "social_loyalty_actions_commands_applied_total",
            "Commands that took effect, by consumer and command type.",
            "consumer",
            "type",
        )
        self.duplicates = self.counter(
            "social_loyalty_actions_commands_duplicate_total",
            "Commands whose id had already been applied (replays, redeliveries): no effect.",
            "consumer",
        )
        self.skipped = self.counter(
            "social_loyalty_actions_commands_skipped_total",
            "Commands deliberately not applied (e.g. replayed MailingSet), by consumer and reason.",
            "consumer",
            "reason",
        )
        self.dead_letters = self.counter(
            "social_loyalty_actions_dead_letters_total",
            "Notifications that failed for good, sent to the dead-letter topic.",
            "consumer",
        )
        self.ledger_points = self.counter(
            "social_loyalty_actions_ledger_points_total",
            "Points moved by the ledger (credited, deducted, shortfall).",
            "direction",
        )
        self.messages = self.counter(
            "social_loyalty_actions_messages_total",
            "Notifications by channel and final status (sent, failed, suppressed, scheduled).",
            "channel",
            "status",
        )
