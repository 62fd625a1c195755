"""How every part of the system declares its Prometheus metrics.

A part (the stream runtime, the sink, a service's handlers) subclasses
:class:`MetricSet` and builds its metrics in ``__init__`` on the registry it is given;
``XMetrics.on(registry)`` returns the one set built on that registry, so several
workers or handlers of one process share their counters (told apart by labels) and
registering twice cannot happen. A process passes its registry (the default is
prometheus_client's process registry) and serves the same one on ``/metrics``
(``services.runtime.http.create_app``, ``services.runtime.httpapi.create_api``); a test
that builds several apps in one process gives each a ``CollectorRegistry()`` of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self
from weakref import WeakKeyDictionary

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram


class MetricSet:
    """Base of a part's metrics: build them in ``__init__(registry)``; get them with
    ``on(registry)``."""

    _built: ClassVar[WeakKeyDictionary[CollectorRegistry, MetricSet]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._built = WeakKeyDictionary()

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    @classmethod
    def on(cls, registry: CollectorRegistry = REGISTRY) -> Self:
        """The set built on ``registry`` (built now if it is the first ask)."""
        built = cls._built.get(registry)
        if built is None:
            built = cls._built[registry] = cls(registry)
        assert isinstance(built, cls)
        return built

    def counter(self, name: str, documentation: str, *labels: str) -> Counter:
        """A counter on this set's registry, with ``labels``."""
        return Counter(name, documentation, labels, registry=self.registry)

    def gauge(self, name: str, documentation: str, *labels: str) -> Gauge:
        """A gauge on this set's registry, with ``labels``."""
        return Gauge(name, documentation, labels, registry=self.registry)

    def histogram(
        self, name: str, documentation: str, *labels: str, buckets: Sequence[float]
    ) -> Histogram:
        """A histogram on this set's registry, with ``labels`` and ``buckets``."""
        return Histogram(name, documentation, labels, buckets=buckets, registry=self.registry)
