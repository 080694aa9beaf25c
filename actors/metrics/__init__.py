"""The metrics actor: the deployment's numbers from every process's events, shown in
the Prometheus text format (made with prometheus_client) and as JSON stats."""

from ._render import prometheus_text, quantile, stats
from ._series import updates
from .actor import MetricsActor

__all__ = ["MetricsActor", "prometheus_text", "quantile", "stats", "updates"]
