"""Answers read raw from an SDK's low-level ``post``: SSE framing and read errors.

The OpenAI and Anthropic adapters decode responses themselves (msgspec), so the
errors of reading them (a body cut off, a stall, bytes that are no JSON) reach the
adapter unwrapped by the SDK; they mean the same for both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import msgspec

from ._errors import ProviderError, ProviderTimeout, Unavailable

__all__ = ["read_error", "sse_events"]


def read_error(provider: str, timeout: float, exc: Exception) -> ProviderError | None:
    """The error for a failure while reading an answer (None: not such a failure)."""
    if isinstance(exc, httpx2.TimeoutException):
        return ProviderTimeout(provider, f"no stream data within {timeout:g}s")
    if isinstance(exc, httpx2.TransportError):
        return Unavailable(provider, f"the stream broke: {type(exc).__name__}: {exc}")
    if isinstance(exc, msgspec.DecodeError):
        return Unavailable(provider, f"an unreadable answer: {exc}")
    return None


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    """Server-sent events as ``(event, data)``; the data lines of one event are joined."""
    event: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("event:"):
            event = line[6:].strip()
    # An event not closed by a blank line was cut off: it is dropped, and the caller
    # sees a stream that ended before its final event.
