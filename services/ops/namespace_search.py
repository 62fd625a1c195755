"""Where else data is, for a listing that found nothing in the namespace it searched.

``lag show``, ``offers list``, ``collector runs`` and ``deadletters list`` answer an
empty result with one line: what was searched, where, and which other namespaces on
the same cluster or server hold such data, with what to type to look there (e.g.
"no consumer groups under 'social-loyalty' on 127.0.0.1:19092; groups exist under
'demo.' (./run cli use demo)").
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence

from services.ops import cli_context

SHOWN = 3
"""Other namespaces named in one line; the rest are counted."""

SERVICE_WORDS = frozenset(
    {"rules", "detector", "readmodel", "actions", "collector", "watcher", "lagmonitor", "replay"}
)
"""The first word after the stem in the services' consumer groups (``demo.actions.bonus``)."""

DATABASES_SEARCHED = 50
"""At most this many other databases on a server are looked into."""


def group_namespace(group_id: str) -> str:
    """The namespace a consumer group belongs to: ``demo.actions.bonus`` -> ``demo.``,
    ``t.cli.ab12.rules`` -> ``t.cli.ab12.``; a group of no service of ours, by its first
    word (``connect-sink`` -> ``connect-sink``)."""
    parts = group_id.split(".")
    for i, part in enumerate(parts[1:], start=1):
        if part.split("-")[0] in SERVICE_WORDS:
            return ".".join(parts[:i]) + "."
    return parts[0] + "." if len(parts) > 1 else parts[0]


def other_group_namespaces(group_ids: Iterable[str], searched: Sequence[str]) -> list[str]:
    """Namespaces of the groups not under ``searched``, most groups first."""
    counts = Counter(
        group_namespace(g) for g in group_ids if not any(g.startswith(p) for p in searched)
    )
    return [name for name, _n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def elsewhere(
    places: Sequence[str], noun: str, preposition: str, reach: dict[str, str], nowhere: str
) -> str:
    """``groups exist under 'demo.' (./run cli use demo), 'x.' (--prefix x.) and 4 more``:
    ``places`` in order, each with what to type to reach it."""
    if not places:
        return nowhere
    # Every namespace a context names (few: the built-in and the operator's own), then
    # a few others: on a shared cluster the tests' leftovers are many.
    named = [p for p in places if reach[p].startswith(cli_context.USE)]
    others = [p for p in places if p not in named]
    chosen = named + others[:SHOWN]
    shown = [f"{place!r} ({reach[place]})" for place in chosen]
    more = len(places) - len(chosen)
    return f"{noun} exist {preposition} {', '.join(shown)}" + (
        f" and {more} more" if more > 0 else ""
    )


def _saved() -> cli_context.Saved:
    try:
        return cli_context.load(cli_context.contexts_path(os.environ))
    except cli_context.ContextError:
        return cli_context.Saved()


# -- Kafka ------------------------------------------------------------------------


def empty_groups_line(
    searched: Sequence[str] | None, all_groups: bool, monitor_url: str | None = None
) -> str:
    """``lag show`` found no group: which prefixes on which cluster, and which exist."""
    from services.lagmonitor.settings import LagMonitorSettings
    from services.runtime import kafka

    if monitor_url:
        only = f" under {', '.join(repr(p) for p in searched)}" if searched else ""
        return f"no consumer groups{only} in the lag monitor at {monitor_url}"
    settings = LagMonitorSettings()
    prefixes = list(searched or settings.group_prefixes)
    where = settings.kafka.bootstrap_servers
    if all_groups:
        return f"no consumer groups on {where}"
    admin = kafka.admin(settings.kafka, "lag-cli-search")
    listed = admin.list_consumer_groups(request_timeout=settings.request_timeout_s).result()
    others = other_group_namespaces((g.group_id for g in listed.valid), prefixes)
    saved = _saved()
    # The namespaces a context names come first: they are the ones an operator made.
    others.sort(key=lambda p: saved.for_prefix(p) is None)
    reach = {p: cli_context.how_to_reach(saved, prefix=p) for p in others}
    under = ", ".join(repr(p) for p in prefixes)
    rest = elsewhere(others, "groups", "under", reach, "no other consumer groups there")
    return f"no consumer groups under {under} on {where}; {rest}"


def empty_topic_line(base: str, what: str) -> str:
    """``deadletters list`` found nothing on ``<prefix><base>``: which topics named
    ``*<base>`` with records exist under other prefixes."""
    from confluent_kafka import TopicPartition

    from services.contracts.topics import TopicSettings
    from services.runtime import kafka
    from services.runtime.settings import KafkaSettings

    settings = KafkaSettings()
    topic = TopicSettings().name(base)
    consumer = kafka.consumer(settings, "social-loyalty.namespace-search")
    try:
        metadata = consumer.list_topics(timeout=settings.connect_timeout_s)
        holding = []
        for name, info in sorted(metadata.topics.items()):
            if name == topic or not name.endswith(base) or info.error is not None:
                continue
            for partition in info.partitions:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(name, partition), timeout=settings.connect_timeout_s
                )
                if high > low:
                    holding.append(name.removesuffix(base))
                    break
    finally:
        consumer.close()
    saved = _saved()
    holding.sort(key=lambda p: saved.for_prefix(p) is None)
    reach = {p: cli_context.how_to_reach(saved, prefix=p) for p in holding}
    rest = elsewhere(holding, what, "under", reach, f"no other prefix has any {what} either")
    return f"no {what} on {topic!r} at {settings.bootstrap_servers}; {rest}"


def prefixes_with_topic(base: str) -> list[str]:
    """The prefixes under which a topic named ``<prefix><base>`` exists."""
    from services.runtime import kafka
    from services.runtime.settings import KafkaSettings

    settings = KafkaSettings()
    admin = kafka.admin(settings, "namespace-search")
    names = admin.list_topics(timeout=settings.connect_timeout_s).topics
    return sorted(name.removesuffix(base) for name in names if name.endswith(base))


def missing_topic_line(topic: str, base: str, what: str = "topic") -> str:
    """A listing's topic does not exist here: say under which prefixes it does."""
    from services.runtime.settings import KafkaSettings

    saved = _saved()
    others = [p for p in prefixes_with_topic(base) if p + base != topic]
    others.sort(key=lambda p: saved.for_prefix(p) is None)
    reach = {p: cli_context.how_to_reach(saved, prefix=p) for p in others}
    rest = elsewhere(
        others,
        "the topics",
        "under",
        reach,
        "create the topics with `social-loyalty topics ensure`",
    )
    return f"{what} {topic!r} does not exist on {KafkaSettings().bootstrap_servers}; {rest}"


# -- PostgreSQL -------------------------------------------------------------------


def databases_holding(database_url: str, schema: str, table: str) -> list[str]:
    """Other databases on ``database_url``'s server with rows in ``schema.table``."""
    import psycopg
    from psycopg import sql

    here = cli_context.database_name(database_url)
    with psycopg.connect(database_url, connect_timeout=5, autocommit=True) as conn:
        names = [
            str(row[0])
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
                "AND datname <> %s ORDER BY datname LIMIT %s",
                (here, DATABASES_SEARCHED),
            )
        ]
    holding = []
    query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, table))
    for name in names:
        try:
            with psycopg.connect(
                cli_context.with_database(database_url, name), connect_timeout=5, autocommit=True
            ) as conn:
                if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone() == (
                    None,
                ):
                    continue
                row = conn.execute(query).fetchone()
        except psycopg.Error:
            continue  # a database this login may not open is not where our data is
        if row and row[0]:
            holding.append(name)
    return holding


def empty_rows_line(database_url: str, schema: str, table: str, what: str) -> str:
    """``offers list`` / ``collector runs`` found nothing: which database and schema on
    which server, and which other databases there hold such rows."""
    saved = _saved()
    holding = databases_holding(database_url, schema, table)
    holding.sort(key=lambda d: saved.for_database(d) is None)
    reach = {d: cli_context.how_to_reach(saved, database=d) for d in holding}
    here = cli_context.database_name(database_url)
    rest = elsewhere(holding, what, "in", reach, f"no other database there has any {what}")
    server = cli_context.server_of(database_url)
    return f"no {what} in database {here!r} (schema {schema}) on {server}; {rest}"
