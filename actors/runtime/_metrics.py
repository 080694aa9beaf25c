"""Counters a process keeps, in the Prometheus text format (``GET /metrics``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

__all__ = ["Metrics"]


class Metrics:
    """Monotonic counters by name and labels, for this process."""

    def __init__(self, redis_errors: Mapping[str, int] | None = None) -> None:
        # This process's own series, kept by prometheus_client.
        self.registry = CollectorRegistry(auto_describe=False)
        self.gateway_overhead = Histogram(
            "aio_gateway_overhead_seconds",
            "Time the gateway adds to a request: its whole time less the router's",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=self.registry,
        )
        self.bus_errors = Counter(
            "aio_bus_errors", "Requests the gateway could not carry over Redis, by kind",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self._counters: defaultdict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(
            float
        )
        self._help: dict[str, str] = {}
        # The bus's count of the Redis failures this process met, by where (read at
        # each scrape; kept in the process, since Redis is what failed).
        self.redis_errors = redis_errors

    def describe(self, name: str, text: str) -> None:
        self._help[name] = text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        self._counters[(name, tuple(sorted(labels.items())))] += amount

    def value(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def families(self) -> list[Metric]:
        """This process's counters, for a ``prometheus_client`` collector."""
        out: list[Metric] = []
        for name in sorted({n for n, _l in self._counters}):
            series = [(dict(labels), v) for (n, labels), v in self._counters.items() if n == name]
            names = sorted({k for labels, _v in series for k in labels})
            family = CounterMetricFamily(name.removesuffix("_total"), self._help.get(name, name),
                                         labels=names)  # fmt: skip
            for labels, value in series:
                family.add_metric([labels.get(n, "") for n in names], value)
            out.append(family)
        if self.redis_errors is not None:
            errors = CounterMetricFamily(
                "aio_redis_errors", "Redis failures this process met, by where",
                labels=["where"],
            )  # fmt: skip
            for where, count in sorted(self.redis_errors.items()):
                errors.add_metric([where], count)
            out.append(errors)
        out.extend(self.registry.collect())
        return out
