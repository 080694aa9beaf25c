"""The project's own provider errors; every SDK exception becomes one of these.

Whether an error is worth retrying (on this provider or the next) and whether it
counts against the provider's circuit breaker is a property of its type.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AuthenticationFailed",
    "BadRequest",
    "ContentFiltered",
    "ContextTooLong",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "ServerError",
    "Unavailable",
]


class ProviderError(Exception):
    """Root of the provider errors: which provider, the HTTP status (if any), why."""

    kind: ClassVar[str] = "provider_error"
    retryable: ClassVar[bool] = False
    counts_for_breaker: ClassVar[bool] = False

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{provider}: {message}" + (f" (HTTP {status})" if status else ""))
        self.provider = provider
        self.message = message
        self.status = status


class RateLimited(ProviderError):
    """429: the provider asks us to slow down, for ``retry_after`` seconds if it said."""

    kind = "rate_limited"
    retryable = True
    counts_for_breaker = True  # the breaker opens for at least retry_after

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after


class ProviderTimeout(ProviderError, TimeoutError):
    """No (complete) answer within the provider's timeout."""

    kind = "timeout"
    retryable = True
    counts_for_breaker = True


class AuthenticationFailed(ProviderError):
    """401/403: the key is wrong or lacks rights; retrying will not help."""

    kind = "authentication"


class BadRequest(ProviderError):
    """4xx: the request itself is at fault (unknown model, bad parameter)."""

    kind = "bad_request"


class ContextTooLong(BadRequest):
    """The prompt plus max_tokens does not fit the model's context window."""

    kind = "context_too_long"


class ContentFiltered(ProviderError):
    """The provider refused the prompt or withheld the answer for its content."""

    kind = "content_filtered"


class ServerError(ProviderError):
    """5xx (and Anthropic's 529 overloaded): the provider failed."""

    kind = "server_error"
    retryable = True
    counts_for_breaker = True


class Unavailable(ProviderError, ConnectionError):
    """The provider could not be reached, or the connection broke mid-answer."""

    kind = "unavailable"
    retryable = True
    counts_for_breaker = True
