"""Choosing providers and calling them: the router (plans, fallback chains, retries,
attempt budgets, admission), one breaker actor per provider and the breakers' shared
state, and the registry of in-flight work that a cancellation stops."""

from ._admission import Admission, AdmissionResult
from ._breaker_state import BreakerState, BreakerStore, BreakerView
from ._inflight import InFlight
from ._load import DeploymentLoad
from ._planner import Candidate, HealthSource, LatencyView, Planner
from .breaker import Breaker
from .router import Router

__all__ = [
    "Admission",
    "AdmissionResult",
    "Breaker",
    "BreakerState",
    "BreakerStore",
    "BreakerView",
    "Candidate",
    "DeploymentLoad",
    "HealthSource",
    "InFlight",
    "LatencyView",
    "Planner",
    "Router",
]
