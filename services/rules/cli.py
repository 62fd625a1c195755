"""``social-loyalty offers ...`` and ``social-loyalty replay ...``.

Settings come from the environment: ``DATABASE_URL``, ``RULES_DB_SCHEMA``,
``RULES_TIMEZONE``, ``KAFKA_BOOTSTRAP_SERVERS``, ``TOPIC_PREFIX``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from services.runtime import terminal

PROGRESS_EVERY_S = 5.0
"""How often replay prints a progress line when stderr is not a terminal."""

offers_app = typer.Typer(
    help="Offers in PostgreSQL: create, update (new version), activate, deactivate, list, show.",
    no_args_is_help=True,
)


def _store() -> Any:
    from services.rules.offer_store import OfferStore
    from services.rules.settings import RulesSettings

    settings = RulesSettings()
    store = OfferStore(settings.database, settings.db_schema)
    store.migrate()
    return store


def _read(path: Path) -> dict[str, Any]:
    import yaml

    from services.rules.offers import OfferError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise OfferError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise OfferError(f"{path}: an offer must be a mapping")
    return data


def _run(action: Any) -> Any:
    """Run a store call, turning the store's errors into a message and exit code 1
    (a database that does not answer is the root command's: one line, exit 2)."""
    from services.rules.offer_store import OfferExistsError, OfferNotFoundError
    from services.rules.offers import OfferError

    try:
        return action()
    except (OfferError, OfferNotFoundError, OfferExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc


def _changing() -> None:
    terminal.announce_target(kafka=False, prefix=False)


FileArg = Annotated[Path, typer.Argument(help="Offer file (.yaml or .json).", exists=True)]
Author = Annotated[str | None, typer.Option(help="Who made this version.")]
Comment = Annotated[str | None, typer.Option(help="Why (kept with the version).")]


@offers_app.command()
def create(file: FileArg, author: Author = None, comment: Comment = None) -> None:
    """Store a new offer as version 1 (inactive until `activate`)."""
    _changing()
    stored = _run(lambda: _store().create(_read(file), author=author, comment=comment))
    typer.echo(f"created {stored.offer.id} v{stored.offer.version} (inactive)")


@offers_app.command()
def update(
    offer_id: Annotated[str, typer.Argument(help="Offer id.")],
    file: FileArg,
    author: Author = None,
    comment: Comment = None,
) -> None:
    """Store a new version of an offer; the live worker picks it up within seconds."""
    _changing()
    stored = _run(lambda: _store().update(offer_id, _read(file), author=author, comment=comment))
    typer.echo(f"updated {stored.offer.id} to v{stored.offer.version}")


def _warn(lines: list[str]) -> None:
    """What ``OfferStore.advice`` found about the offers just made live, on stderr."""
    for line in lines:
        typer.echo(f"warning: {line}", err=True)


@offers_app.command()
def activate(offer_id: Annotated[str, typer.Argument(help="Offer id.")]) -> None:
    """Make an offer live (no restart needed)."""
    _changing()
    _run(lambda: _store().set_active(offer_id, True))
    typer.echo(f"activated {offer_id}")
    _warn(_run(lambda: _store().advice([offer_id])))


@offers_app.command()
def deactivate(offer_id: Annotated[str, typer.Argument(help="Offer id.")]) -> None:
    """Stop an offer (no restart needed); its history stays."""
    _changing()
    _run(lambda: _store().set_active(offer_id, False))
    typer.echo(f"deactivated {offer_id}")


def _say_empty(table: str, what: str) -> None:
    """One line for an empty listing: the database searched and where such rows are."""
    from services.ops.namespace_search import empty_rows_line
    from services.rules.settings import RulesSettings

    settings = RulesSettings()
    url = settings.database.database_url.get_secret_value()
    typer.echo(empty_rows_line(url, settings.db_schema, table, what))


@offers_app.command("list")
def list_offers(
    output: terminal.OutputOption = terminal.OutputFormat.table, as_json: terminal.JsonFlag = False
) -> None:
    """Every offer with its status and current version (`--output json`: one array of
    the same fields, with the full trigger list and timestamps)."""
    offers = _run(lambda: _store().all())
    if terminal.wants_json(output, as_json):
        terminal.emit_json([o.summary() for o in offers])
        return
    if not offers:
        _say_empty("offers", "offers")
        return
    from rich.table import Table

    table = Table("id", "active", "version", "trigger", "name", "updated")
    for column in table.columns:
        column.overflow = "fold"
    for o in offers:
        s = o.summary()
        table.add_row(
            s["id"],
            "yes" if s["active"] else "no",
            str(s["current_version"]),
            ",".join(s["trigger"]),
            s["name"],
            s["updated_at"][:19],
        )
    terminal.console().print(table)


@offers_app.command()
def show(
    offer_id: Annotated[str, typer.Argument(help="Offer id.")],
    version: Annotated[int | None, typer.Option(help="A past version (default current).")] = None,
) -> None:
    """One offer version as stored (YAML)."""
    import yaml

    stored = _run(lambda: _store().show(offer_id, version))
    doc = stored.to_dict()
    typer.echo(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@offers_app.command("load-examples")
def load_examples(
    inactive: Annotated[bool, typer.Option(help="Store them without activating.")] = False,
) -> None:
    """Store the acceptance-set offers of services/rules/examples (skips ids already stored)."""
    _changing()
    created = _run(lambda: _store().load_examples(activate=not inactive))
    typer.echo(f"created {len(created)}: {', '.join(created) or '-'}")
    if not inactive:
        _warn(_run(lambda: _store().advice(created)))


def _parse_time(value: str, tz: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not ISO 8601 (e.g. 2025-03-01 or 2025-03-01T12:00+03:00)"
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def replay(  # noqa: PLR0917  (typer options)
    offer: Annotated[str, typer.Option("--offer", help="Offer id (active or not).")],
    from_: Annotated[
        str, typer.Option("--from", help="Window start, ISO 8601; no zone = program zone.")
    ],
    to: Annotated[str | None, typer.Option("--to", help="Window end (default: now).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Report only; send nothing.")] = False,
    apply: Annotated[bool, typer.Option("--apply", help="Send commands marked replay.")] = False,
    notify: Annotated[
        bool, typer.Option("--notify", help="With --apply: also send the messages.")
    ] = False,
    version: Annotated[int | None, typer.Option(help="Offer version (default current).")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --apply: send even if the window overlaps time the offer was live.",
        ),
    ] = False,
    keep_group: Annotated[
        bool,
        typer.Option("--keep-group", help="Keep the replay's consumer group (default: deleted)."),
    ] = False,
    ledger_timeout: Annotated[
        float,
        typer.Option(
            "--ledger-timeout",
            min=0,
            help="With --apply: seconds to wait for the ledger to apply the commands before "
            "the summary says what was new (0: don't wait).",
        ),
    ] = 60.0,
) -> None:
    """Replay an offer over social.events history: who would get what, or credit it.

    Prints the plan first (window, per-partition offsets, consumer group). Reads
    link events from the log start and other events from the offset at --from,
    with its own consumer group (under the topic prefix, deleted at the end unless
    --keep-group) and state. Running --apply twice credits nothing new
    (deterministic command ids): the summary says how many credits the ledger
    applied as new and how many it already had. --apply refuses (exit 2) a window
    that overlaps time the offer has been active live, because replay and the
    live worker keep separate state; replay up to the activation time instead
    (docs/replay.md, "Replay and the live worker").
    """
    if dry_run == apply:
        raise typer.BadParameter("give exactly one of --dry-run or --apply")
    if notify and not apply:
        raise typer.BadParameter("--notify only goes with --apply")
    from services.rules.replay import ledger_outcome, plan_replay, run_replay
    from services.rules.settings import RulesSettings

    settings = RulesSettings()
    start = _parse_time(from_, settings.tz)
    end = _parse_time(to, settings.tz) if to else None
    if end is not None and end <= start:
        raise typer.BadParameter("--to must be after --from")
    if force and not apply:
        raise typer.BadParameter("--force only goes with --apply")
    if apply:
        terminal.announce_target()
    store = _store()
    stored = _run(lambda: store.show(offer, version))
    if apply and not force:
        _refuse_live_overlap(offer, _run(lambda: store.live_periods(offer)), start, end)
    out = terminal.console()  # the report's table stays whole when piped
    plan = plan_replay(settings, stored.offer, start=start, end=end)
    for line in plan.lines():
        typer.echo(line, err=True)
    with _progress(out, f"replay {offer}", plan.records) as advance:
        report = run_replay(
            settings,
            stored.offer,
            start=start,
            end=end,
            apply=apply,
            notify=notify,
            plan=plan,
            keep_group=keep_group,
            on_progress=advance,
        )
    print_report(out, report, applied=apply)
    kept = "kept" if keep_group else "deleted"
    out.print(f"consumer group {report.group}: {kept}")
    if not apply:
        out.print("dry run: nothing was sent")
    elif ledger_timeout > 0:
        outcome = ledger_outcome(settings, report, timeout_s=ledger_timeout)
        if not outcome.caught_up:
            out.print(
                f"{outcome.problem}: cannot say which credits were new; a rerun later "
                "credits nothing twice and says so"
            )
        else:
            out.print(
                f"ledger: {outcome.new_entries} new entries (credited {outcome.credited}, "
                f"deducted {outcome.deducted}), {outcome.already_applied} already applied "
                "by an earlier replay"
            )


@contextmanager
def _progress(console: Any, title: str, total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; elsewhere (logs, CI) a line every 5 seconds."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    if console.is_terminal:
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task(title, total=total)
            yield lambda n: progress.advance(task, n)
        return
    done = 0
    last = time.monotonic()

    def advance(n: int) -> None:
        nonlocal done, last
        done += n
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            share = f" ({done / total:.0%})" if total else ""
            typer.echo(f"{title}: {done:,} of {total:,} records{share}", err=True)

    yield advance
    typer.echo(f"{title}: {done:,} of {total:,} records read", err=True)


def _refuse_live_overlap(offer: str, periods: Any, start: datetime, end: datetime | None) -> None:
    from services.rules.replay import live_overlap

    overlap = live_overlap(periods, start, end, datetime.now(UTC))
    if overlap is None:
        return
    until = overlap.until.isoformat() if overlap.until else "now"
    typer.echo(
        f"error: offer {offer!r} has been active live from {overlap.since.isoformat()} to "
        f"{until}, which the replay window overlaps. Replay and the live worker keep separate "
        "state, so once per object, undos and limits would not hold across them. Replay up "
        f"to the activation time (--to {overlap.since.isoformat()}), or pass --force.",
        err=True,
    )
    raise typer.Exit(code=2)


def print_report(console: Any, report: Any, *, applied: bool) -> None:
    """The per-member table and the totals."""
    from rich.table import Table

    verb = "sent" if applied else "would send"
    table = Table(
        "member", "events", "accrued", "deducted", "messages", "commands",
        title=f"{report.offer_id} v{report.offer_version}: {verb}",
    )  # fmt: skip
    for member, t in sorted(report.members.items()):
        table.add_row(
            member,
            str(t.events),
            str(t.accrued),
            str(t.deducted),
            str(t.messages),
            str(t.commands),
        )
    console.print(table)
    rate = report.messages_read / report.seconds if report.seconds else 0.0
    console.print(
        f"members {len(report.members)}  events matched {report.events_matched}  "
        f"accrued {report.total_accrued}  deducted {report.total_deducted}  "
        f"commands {report.commands}  messages suppressed {report.suppressed_messages}  "
        f"unlinked {report.unlinked}  undecodable {report.undecodable}  "
        f"read {report.messages_read} in {report.seconds:.1f}s ({rate:,.0f}/s)"
    )
