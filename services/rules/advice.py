"""Warnings about offers that are live but cannot pay, or that pay twice for one event.

Pure: ``advise`` looks at offers, never at the database. ``offers activate`` and
``offers load-examples`` print what it finds about the offers they just made live.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

from services.rules.offers import AccrueAction, Filters, Offer

__all__ = ["advise", "overlap"]

T = TypeVar("T")


def _pays_points(offer: Offer) -> bool:
    return offer.reward is not None and any(isinstance(a, AccrueAction) for a in offer.actions)


def _meet(a: tuple[T, ...] | None, b: tuple[T, ...] | None) -> bool:
    """Two filters on one field let some event through both (None lets every one)."""
    return a is None or b is None or bool(set(a) & set(b))


def _filters_meet(a: Filters, b: Filters) -> bool:
    return (
        _meet(a.networks, b.networks)
        and _meet(a.group_ids, b.group_ids)
        and _meet(a.post_ids, b.post_ids)
        and (a.registration is None or b.registration is None or a.registration == b.registration)
        and (a.relinked is None or b.relinked is None or a.relinked == b.relinked)
    )


def _windows_meet(a: Offer, b: Offer) -> bool:
    starts = [t for t in (a.starts_at, b.starts_at) if t is not None]
    ends = [t for t in (a.ends_at, b.ends_at) if t is not None]
    return not starts or not ends or max(starts) < min(ends)


def overlap(a: Offer, b: Offer) -> bool:
    """Both credit points for one and the same event: a shared trigger, filters that
    let one event through both, windows that meet. An offer with a ``when`` condition
    (a milestone such as the 10th like) pays on top by design and overlaps nothing."""
    return (
        a.id != b.id
        and _pays_points(a)
        and _pays_points(b)
        and not a.when
        and not b.when
        and bool(set(a.trigger) & set(b.trigger))
        and _filters_meet(a.filters, b.filters)
        and _windows_meet(a, b)
    )


def advise(made_live: Iterable[Offer], active: Sequence[Offer], now: datetime) -> list[str]:
    """One line per problem with the offers just made live, judged against every
    active offer: a window that has ended (it can never pay) or one that has not
    started yet, and another active offer that pays for the same event."""
    lines: list[str] = []
    reported: set[frozenset[str]] = set()
    for offer in made_live:
        if offer.ends_at is not None and offer.ends_at <= now:
            lines.append(
                f"{offer.id}: its window ended at {offer.ends_at.isoformat()}; "
                "it will never pay (update ends_at or deactivate it)"
            )
        elif offer.starts_at is not None and offer.starts_at > now:
            lines.append(f"{offer.id}: pays nothing before {offer.starts_at.isoformat()}")
        for other in active:
            pair = frozenset((offer.id, other.id))
            if pair in reported or not overlap(offer, other):
                continue
            reported.add(pair)
            triggers = ", ".join(sorted(set(offer.trigger) & set(other.trigger)))
            lines.append(
                f"{offer.id}: {other.id} is active and also pays for {triggers} on the same "
                "events: a member earns both (deactivate one, or narrow their filters)"
            )
    return lines
