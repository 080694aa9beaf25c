"""The errors a request's caller gets: one class per way a request ends unanswered."""

from __future__ import annotations

from ._request import GenerateFailed

__all__ = [
    "AdmissionUnavailable",
    "DeadlineExceeded",
    "GenerateError",
    "InvalidRequest",
    "LimitError",
    "NoProviderAvailable",
    "QuotaError",
    "RateLimitError",
    "StreamInterrupted",
]


class GenerateError(Exception):
    """The request got no answer. ``kind``, ``status`` (HTTP), ``attempts`` say why."""

    def __init__(self, failed: GenerateFailed) -> None:
        super().__init__(f"{failed.kind}: {failed.message}")
        self.failed = failed
        self.kind = failed.kind
        self.status = failed.status
        self.retry_after = failed.retry_after
        self.attempts = failed.attempts


class NoProviderAvailable(GenerateError):
    """Every candidate provider failed, was held open, or none serves the model (503)."""


class DeadlineExceeded(GenerateError, TimeoutError):
    """The request's deadline passed before an answer (504)."""


class InvalidRequest(GenerateError):
    """The request itself was refused: bad request, context too long, filtered (400)."""


class StreamInterrupted(GenerateError):
    """A stream broke after its first text; no other provider can continue it."""


class LimitError(GenerateError):
    """Refused at admission (429): ``limit_type`` names the limit or quota,
    ``retry_after`` says in how many seconds it would be admitted (None: waiting will
    not help), ``limits`` are the user's limits as they stand."""

    def __init__(self, failed: GenerateFailed) -> None:
        super().__init__(failed)
        self.limit_type = failed.limit_type
        self.limits = failed.limits


class RateLimitError(LimitError):
    """A rate limit (requests, tokens or cost per minute or hour, or a burst) refused."""


class QuotaError(LimitError):
    """A quota (monthly, daily or per-session requests, tokens or cost) is used up."""


class AdmissionUnavailable(GenerateError):
    """Limits and quotas could not be checked in time and the policy is fail_closed (503)."""
