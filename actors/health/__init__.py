"""The health prober: providers probed on a schedule (no tokens spent by default),
judged with their real traffic; embeddable in any asyncio program without a bus."""

from ..messages import HealthReport, HealthStatus, ProviderHealth
from ._judge import Traffic, judge
from .desk import HealthDesk
from .prober import HealthProber

__all__ = [
    "HealthDesk",
    "HealthProber",
    "HealthReport",
    "HealthStatus",
    "ProviderHealth",
    "Traffic",
    "judge",
]
