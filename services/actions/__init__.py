"""Actions: commands become effects (bonus ledger, messages, mailing, counters),
exactly once in effect. See ``docs/actions.md``."""
