"""What every simulated API shares: the call's course (fate, latency, limits) and SSE."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from aiohttp import web

from ._state import SimulatorState
from ._text import Answer, answer, input_tokens

__all__ = ["BLOCKED_MARKER", "UNKNOWN_MODEL_MARKER", "Api", "Call", "json_response", "sse"]

# A prompt containing this is refused by the provider's content filter.
BLOCKED_MARKER = "[[blocked]]"
# A model whose name contains this does not exist (404).
UNKNOWN_MODEL_MARKER = "does-not-exist"

_encoder = msgspec.json.Encoder()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(body), status=status, headers=headers, content_type="application/json"
    )


@dataclass(frozen=True, slots=True)
class Call:
    """A parsed request, whatever the API."""

    provider: str
    model: str
    texts: list[str]  # every message's text, system included
    max_tokens: int | None
    stream: bool
    extra: dict[str, Any]  # what one API needs back (e.g. OpenAI's include_usage)


class Api:
    """One provider's HTTP API on the simulator. Subclasses format bodies and errors."""

    provider: str

    def __init__(self, state: SimulatorState, context_window: dict[str, int]) -> None:
        self.state = state
        self._windows = context_window

    # -- to implement ------------------------------------------------------------

    def error(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        raise NotImplementedError

    def context_error(self, call: Call, tokens: int, window: int) -> web.Response:
        raise NotImplementedError

    def blocked(self, call: Call) -> web.Response:
        raise NotImplementedError

    def complete(self, call: Call, result: Answer) -> web.Response:
        raise NotImplementedError

    def events(self, call: Call, result: Answer) -> Iterator[bytes]:
        """The SSE frames of a streamed answer, the terminal ones last."""
        raise NotImplementedError

    # -- shared course of a call ---------------------------------------------------

    async def gate(self, request: web.Request) -> web.Response | None:
        """Count the call and play its fate: a refusal to send, or None to answer."""
        state = self.state
        fate = state.fate(self.provider)
        if fate == "auth":
            # Like the real APIs, the message shows the key it refused.
            key = _presented_key(request)
            return self.error(401, "authentication_error", f"Incorrect API key provided: {key}")
        if fate == "hang":
            await state.hung(self.provider)  # until the client leaves or the simulator stops
            return self.error(503, "server_error", "the simulator is stopping")
        await asyncio.sleep(state.delay(self.provider))
        await state.unpaused(self.provider)
        if fate == "rate_limited":
            retry_after = state.knobs[self.provider].retry_after_s
            headers = {"Retry-After": f"{retry_after:g}"}
            return self.error(429, "rate_limit_error", "rate limit reached (simulated)", headers)
        if fate == "server_error":
            status = state.server_error_status()
            return self.error(status, "server_error", f"simulated {status}")
        return None

    async def serve(self, request: web.Request, call: Call | web.Response) -> web.StreamResponse:
        """Answer a generation call: its fate, then its limits, then the answer."""
        if isinstance(call, web.Response):  # the request itself was refused
            return call
        self.state.last[self.provider] = call
        refusal = await self.gate(request)
        if refusal is not None:
            return refusal
        if UNKNOWN_MODEL_MARKER in call.model:
            return self.error(404, "not_found_error", f"model {call.model!r} does not exist")
        knobs = self.state.knobs[self.provider]
        window = knobs.context_window or self._windows.get(call.model, 128_000)
        tokens = input_tokens(call.texts)
        if tokens + (call.max_tokens or 0) > window:
            return self.context_error(call, tokens, window)
        if any(BLOCKED_MARKER in text for text in call.texts):
            return self.blocked(call)
        result = answer(call.model, call.texts, call.max_tokens, call.extra.get("shape"))
        if not call.stream:
            return self.complete(call, result)
        return await self._stream(request, call, result)

    async def _stream(self, request: web.Request, call: Call, result: Answer) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        frames = list(self.events(call, result))
        cut = self.state.cut(self.provider)
        if cut:
            frames = frames[: max(1, len(frames) // 2)]
        pause = self.state.knobs[self.provider].chunk_delay_ms / 1000
        try:
            for frame in frames:
                await response.write(frame)
                if pause:
                    await asyncio.sleep(pause)
            if cut and self.state.knobs[self.provider].cut_mode == "abort":
                if request.transport is not None:
                    request.transport.abort()  # connection reset mid-answer
                return response
            await response.write_eof()
        except ConnectionResetError:  # the client stopped reading: its choice
            pass
        return response


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n".encode() if event else b""
    body = data if isinstance(data, bytes) else _encoder.encode(data)
    return head + b"data: " + body + b"\n\n"


def _presented_key(request: web.Request) -> str:
    for header in ("x-api-key", "api-key", "x-goog-api-key"):
        if request.headers.get(header):
            return request.headers[header]
    return request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
