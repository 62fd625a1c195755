"""``social-loyalty deadletters list|redrive``: read the dead-letter topic and put
messages back on the topic they came from.

A dead letter's id is ``<partition>:<offset>`` on the dead-letter topic. Redrive
re-publishes the *original bytes* with the original key, so a command that failed
for a reason since fixed (a missing template, a provider outage) is processed as if
new; its command id still guards against a double effect.

Only to a topic that the failing consumer alone reads (a command topic, the
snapshots, an internal topic): that is its own retry path. A shared log
(``social.events``, read by several services and kept forever) is never written a
second copy; redrive refuses such a letter and prints how to re-read it for the
failing consumer group only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from confluent_kafka import TopicPartition
from rich.table import Table

from services.contracts.codec import DecodeError, make_codec
from services.contracts.models import DeadLetter
from services.contracts.topics import DEADLETTER, TopicSettings, catalog
from services.runtime import kafka, terminal
from services.runtime.settings import KafkaSettings

deadletters_app = typer.Typer(
    name="deadletters",
    help="List dead letters and re-drive them to their original topics.",
    no_args_is_help=True,
    add_completion=False,
)


@dataclass(frozen=True)
class Stored:
    id: str
    letter: DeadLetter | None
    problem: str | None = None


def read_dead_letters(
    kafka_settings: KafkaSettings, topic: str, *, limit: int | None = None, timeout: float = 30.0
) -> list[Stored]:
    """Every dead letter now on ``topic`` (the last ``limit`` per partition), oldest first."""
    codec = make_codec(kafka_settings)
    consumer = kafka.consumer(
        kafka_settings, f"social-loyalty.deadletters-cli.{uuid.uuid4().hex[:8]}"
    )
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        info = metadata.topics.get(topic)
        if info is None or info.error is not None:
            from services.ops.namespace_search import missing_topic_line

            line = missing_topic_line(topic, DEADLETTER, "dead-letter topic")
            typer.echo(f"error: {line}", err=True)
            raise typer.Exit(2)
        wanted: list[TopicPartition] = []
        ends: dict[int, int] = {}
        for partition in info.partitions:
            low, high = kafka.watermarks(consumer, topic, partition, timeout)
            if high > low:
                start = max(low, high - limit) if limit else low
                wanted.append(TopicPartition(topic, partition, start))
                ends[partition] = high
        if not wanted:
            return []
        consumer.assign(wanted)
        found: list[Stored] = []
        done: set[int] = set()
        while len(done) < len(ends):
            message = consumer.poll(timeout)
            if message is None:
                break
            if message.error() is not None:
                continue
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            if offset + 1 >= ends[partition]:
                done.add(partition)
            try:
                letter = codec.decode(message.value(), topic, (DeadLetter,))
                found.append(Stored(f"{partition}:{offset}", letter))  # type: ignore[arg-type]
            except DecodeError as exc:
                found.append(Stored(f"{partition}:{offset}", None, exc.reason))
        return found
    finally:
        consumer.close()


def redrive(kafka_settings: KafkaSettings, letters: list[DeadLetter]) -> int:
    """Re-publish the original bytes; returns how many were acknowledged."""
    producer = kafka.producer(kafka_settings, "deadletters-redrive")
    acked: list[int] = []
    for letter in letters:
        if letter.value is None:
            continue
        producer.produce(
            letter.original_topic,
            letter.value,
            letter.key,
            # Where it was: the consumer's state for the key lives with that partition
            # (the rules' member store, the detector's manifests), and a member's
            # commands keep their order only there.
            partition=letter.original_partition,
            headers={"redriven-from": f"{letter.original_partition}:{letter.original_offset}"},
            on_delivery=lambda err, _msg: acked.append(1) if err is None else None,
        )
        producer.poll(0)
    producer.flush(30)
    return len(acked)


def shared_logs(topics: TopicSettings) -> dict[str, tuple[str, ...]]:
    """Catalog topics read by more than one consumer, with their readers."""
    return {spec.name: spec.consumers for spec in catalog(topics) if len(spec.consumers) > 1}


def refusal(letter: DeadLetter, readers: tuple[str, ...]) -> str:
    """Why a letter from a shared log is not re-published, and what to do instead."""
    group = letter.consumer_group or "<the consumer group>"
    return (
        f"{letter.original_topic} is a shared log (read by {', '.join(readers)}): "
        "re-publishing would give every reader a second copy. The record is still at "
        f"partition {letter.original_partition} offset {letter.original_offset}; once the "
        f"cause is fixed, re-read it for {group} alone, with its workers stopped. A group "
        "that commits to Kafka (the rules): kafka-consumer-groups.sh --reset-offsets "
        f"--group {group} --topic {letter.original_topic}:{letter.original_partition} "
        f"--to-offset {letter.original_offset} --execute. A group that keeps its offsets "
        "in PostgreSQL (the read model): set next_offset to "
        f"{letter.original_offset} in its schema's consumer_offsets row for that "
        "topic and partition."
    )


def _settings() -> tuple[KafkaSettings, str]:
    return KafkaSettings(), TopicSettings().name(DEADLETTER)


@deadletters_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(help="At most this many per partition (newest).")] = 50,
    output: terminal.OutputOption = terminal.OutputFormat.table,
    as_json: terminal.JsonFlag = False,
) -> None:
    """Show the dead letters on the dead-letter topic (TOPIC_PREFIX applies).

    `--output json` prints one array: per letter its id, the decoding problem if any,
    and every field of the letter but the original key and value bytes."""
    kafka_settings, topic = _settings()
    found = read_dead_letters(kafka_settings, topic, limit=limit)
    if terminal.wants_json(output, as_json):
        rows: list[dict[str, Any]] = []
        for stored in found:
            row: dict[str, Any] = {"id": stored.id, "problem": stored.problem}
            if stored.letter is not None:
                row.update(stored.letter.model_dump(mode="json", exclude={"key", "value"}))
            rows.append(row)
        terminal.emit_json(rows)
        return
    if not found:
        from services.ops.namespace_search import empty_topic_line

        typer.echo(empty_topic_line(DEADLETTER, "dead letters"))
        return
    table = Table(title=f"{topic}: {len(found)} dead letters")
    for column in ("id", "failed at", "from", "group", "error"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for stored in found:
        letter = stored.letter
        if letter is None:
            table.add_row(stored.id, "-", "-", "-", "undecodable", stored.problem or "")
            continue
        table.add_row(
            stored.id,
            letter.failed_at.isoformat(timespec="seconds"),
            f"{letter.original_topic}[{letter.original_partition}]@{letter.original_offset}",
            letter.consumer_group or "-",
            letter.error_class.rsplit(".", 1)[-1],
            letter.reason,
        )
    terminal.console().print(table)


@deadletters_app.command("redrive")
def redrive_command(
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Dead letter id <partition>:<offset>.")
    ] = None,
    redrive_all: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Re-publish dead letters' original bytes to their original topics."""
    if not ids and not redrive_all:
        raise typer.BadParameter("give --id <partition>:<offset> (repeatable) or --all")
    terminal.announce_target(database=False)
    kafka_settings, topic = _settings()
    found = {s.id: s for s in read_dead_letters(kafka_settings, topic)}
    chosen = list(found) if redrive_all else list(ids or [])
    missing = [i for i in chosen if i not in found]
    if missing:
        typer.echo(f"error: no dead letter with id {', '.join(missing)}", err=True)
        raise typer.Exit(1)
    letters = [found[i].letter for i in chosen]
    shared = shared_logs(TopicSettings())
    usable = []
    for letter in letters:
        if letter is None or letter.value is None:
            continue
        if letter.original_topic in shared:
            typer.echo(f"skipped: {refusal(letter, shared[letter.original_topic])}", err=True)
            continue
        usable.append(letter)
    sent = redrive(kafka_settings, usable)
    typer.echo(f"redriven {sent} of {len(chosen)} dead letters")
    if sent != len(chosen):
        raise typer.Exit(1)
