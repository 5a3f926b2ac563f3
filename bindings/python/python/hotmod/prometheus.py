"""Exposes a runtime's metrics through ``prometheus_client``.

One line puts hotmod's per-method series on a service's existing
``/metrics`` endpoint::

    import hotmod.prometheus
    hotmod.prometheus.register(rt)          # the default registry

The collector reads the runtime's own exposition
(:meth:`hotmod.Runtime.stats_prometheus`) at every scrape, so the series,
their names and labels are exactly those the C API and Node expose. A
closed runtime contributes no series. ``prometheus_client`` is imported only
when a collector is used: it is not a dependency of ``hotmod`` itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from ._errors import HotmodError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

    from ._native import Runtime

__all__ = ["HotmodCollector", "register"]


class HotmodCollector:
    """A ``prometheus_client`` collector of one runtime's method metrics."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        """The runtime's metric families, read now."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = self._runtime.stats_prometheus()
        except HotmodError:
            return  # closed: nothing to report
        yield from text_string_to_metric_families(text)


def register(runtime: Runtime, registry: CollectorRegistry | None = None) -> HotmodCollector:
    """Registers a collector of ``runtime`` with ``registry`` (default: the
    global ``prometheus_client.REGISTRY``) and returns it, for
    ``registry.unregister(collector)``."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    collector = HotmodCollector(runtime)
    registry.register(collector)
    return collector
