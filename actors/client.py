"""A Python client of the request path over the bus (the gateway speaks it too)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from bus import AskTimeout, Bus, BusError, Message

from .messages import (
    AdmissionUnavailable,
    DeadlineExceeded,
    GenerateError,
    GenerateFailed,
    GenerateRequest,
    GenerateResponse,
    InvalidRequest,
    LimitError,
    NoProviderAvailable,
    QuotaError,
    RateLimitError,
    RequestCancelled,
    StreamDelta,
    StreamInterrupted,
    fallback_answer,
    kind_of,
)

__all__ = [
    "AdmissionUnavailable",
    "Client",
    "DeadlineExceeded",
    "GenerateError",
    "GenerateRequest",
    "GenerateResponse",
    "InvalidRequest",
    "LimitError",
    "NoProviderAvailable",
    "QuotaError",
    "RateLimitError",
    "StreamInterrupted",
]

# The caller waits this much past the request's deadline, so that the router's own
# "deadline exceeded" answer (with its attempts) arrives before the caller gives up.
_SLACK_S = 1.0


def error_for(failed: GenerateFailed) -> GenerateError:
    return kind_of(failed.kind).error(failed)


class Client:
    """Sends ``generate.request`` to ``{ns}:requests`` and awaits the router's answer.

    ``generate`` raises a ``GenerateError``; ``generate_with_fallback`` raises only
    ``LimitError``: when nothing can answer it returns a system response with
    ``fallback=True``;
    ``stream`` yields ``StreamDelta`` pieces, then the final ``GenerateResponse``.
    A caller that stops waiting before the answer (its task is cancelled, or it stops
    reading a stream) publishes ``request.cancelled``: the request stops and its
    provider call is cancelled, wherever they run.
    """

    def __init__(self, bus: Bus, *, timeout_ms: int = 60_000) -> None:
        self.bus = bus
        self.timeout_ms = timeout_ms

    def _timed(self, request: GenerateRequest) -> GenerateRequest:
        """The request with this client's timeout unless it has its own."""
        return request if request.timeout_ms else _with(request, timeout_ms=self.timeout_ms)

    def _wait(self, request: GenerateRequest) -> float:
        return (request.timeout_ms or self.timeout_ms) / 1000 + _SLACK_S

    async def generate(self, request: GenerateRequest) -> GenerateResponse:
        request = self._timed(request)
        corr = os.urandom(12).hex()
        try:
            reply = await self.bus.ask(
                self.bus.names.requests, request, self._wait(request), correlation_id=corr
            )
        except AskTimeout:
            raise DeadlineExceeded(self._lost(request, "deadline_exceeded", 504)) from None
        except asyncio.CancelledError:
            self._cancel(request, corr)
            raise
        if isinstance(reply, GenerateFailed):
            raise error_for(reply)
        assert isinstance(reply, GenerateResponse)
        return reply

    async def generate_with_fallback(self, request: GenerateRequest) -> GenerateResponse:
        """Like ``generate``, but a failure comes back as a system answer (``fallback``);
        a refusal for a limit or quota still raises ``LimitError``: it is the caller's
        to see, not to paper over."""
        request = _with(request, fallback=True, stream=False)
        try:
            return await self.generate(request)
        except LimitError:
            raise
        except GenerateError as exc:  # the router answered with a failure after all
            reason = f"{exc.kind}: {exc.failed.message}"
            attempts = exc.attempts
        except BusError as exc:  # the bus itself failed: answer from here
            reason, attempts = f"unavailable: {exc}", []
        return fallback_answer(request.request_id, reason, attempts)

    async def stream(self, request: GenerateRequest) -> AsyncIterator[Message]:
        """``StreamDelta`` pieces, then the ``GenerateResponse``; raises ``GenerateError``."""
        request = _with(self._timed(request), stream=True)
        corr = os.urandom(12).hex()
        replies = self.bus.ask_stream(
            self.bus.names.requests, request, self._wait(request), correlation_id=corr
        )
        ended = False
        try:
            async for reply in replies:
                if isinstance(reply, StreamDelta):
                    yield reply
                    continue
                ended = True
                if isinstance(reply, GenerateFailed):
                    raise error_for(reply)
                yield reply
                return
        except AskTimeout:
            ended = True
            raise DeadlineExceeded(self._lost(request, "deadline_exceeded", 504)) from None
        except BusError:
            ended = True
            raise
        finally:
            if not ended:  # its reader stopped reading before the end
                self._cancel(request, corr)
            await replies.aclose()

    def _cancel(self, request: GenerateRequest, corr: str) -> None:
        """Tell whoever works on this exchange that nobody waits for it any more."""
        cancelled = RequestCancelled(
            request_id=request.request_id,
            cancel_key=corr,
            reason="the caller went away",
            ts_ms=self.bus.now_ms(),
        )
        self.bus.publish_soon(self.bus.names.events, cancelled)

    @staticmethod
    def _lost(request: GenerateRequest, kind: str, status: int) -> GenerateFailed:
        return GenerateFailed(
            request_id=request.request_id,
            kind=kind,
            message="no answer from the router before the deadline",
            status=status,
        )


def _with(request: GenerateRequest, **changes: Any) -> GenerateRequest:
    return msgspec.structs.replace(request, **changes)
