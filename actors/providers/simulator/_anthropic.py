"""Anthropic's Messages API (with its SSE event sequence) and models list."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import web

from ._api import Api, Call, json_response, sse
from ._text import Answer

__all__ = ["AnthropicApi"]

_decoder = msgspec.json.Decoder()

_MODELS = (
    "claude-3-haiku-20240307",
    "claude-3-5-haiku-20241022",
    "claude-sonnet-4-5",
    "claude-opus-4-1",
)
_STOP = {"stop": "end_turn", "length": "max_tokens"}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class AnthropicApi(Api):
    provider = "anthropic"

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/messages", self.messages)]

    def _refused(self, request: web.Request) -> web.Response | None:
        bearer = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not (request.headers.get("x-api-key") or bearer):
            return self.error(401, "authentication_error", "x-api-key header is required")
        if not request.headers.get("anthropic-version"):
            return self.error(400, "invalid_request_error", "anthropic-version header is required")
        return None

    async def messages(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        try:
            body = _decoder.decode(await request.read())
            system = body.get("system") or ""
            roles = {m["role"] for m in body["messages"]}
            if not roles <= {"user", "assistant"}:
                raise ValueError(f"messages: roles must be user or assistant, not {roles}")
            texts = ([_text_of(system)] if system else []) + [
                _text_of(m["content"]) for m in body["messages"]
            ]
            model, max_tokens = body["model"], int(body["max_tokens"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError) as exc:
            return self.error(400, "invalid_request_error", f"malformed request: {exc!r}")
        call = Call(self.provider, model, texts, max_tokens, bool(body.get("stream")), {})
        return await self.serve(request, call)

    def error(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        kind = _ERROR_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}}
        return json_response(body, status, headers)

    def context_error(self, call: Call, tokens: int, window: int) -> web.Response:
        message = f"prompt is too long: {tokens} tokens > {window} maximum"
        return self.error(400, "invalid_request_error", message)

    def blocked(self, call: Call) -> web.Response:
        # Anthropic answers, but with an empty refusal rather than an error.
        result = Answer("", [], 0, 0, "stop")
        return json_response(self._message(call, result, "refusal"))

    def _message(self, call: Call, result: Answer, stop_reason: str) -> dict[str, Any]:
        digest = hashlib.sha256("\x00".join(call.texts).encode()).hexdigest()[:24]
        content = [{"type": "text", "text": result.text}] if result.text else []
        return {
            "id": f"msg_{digest}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens},
        }

    def complete(self, call: Call, result: Answer) -> web.Response:
        return json_response(self._message(call, result, _STOP[result.finish]))

    def events(self, call: Call, result: Answer) -> Iterator[bytes]:
        start = self._message(call, result, "") | {"content": [], "stop_reason": None}
        start["usage"] = {"input_tokens": result.input_tokens, "output_tokens": 1}
        yield sse({"type": "message_start", "message": start}, "message_start")
        block = {"type": "text", "text": ""}
        yield sse(
            {"type": "content_block_start", "index": 0, "content_block": block},
            "content_block_start",
        )
        yield sse({"type": "ping"}, "ping")
        for piece in result.pieces:
            delta = {"type": "text_delta", "text": piece}
            yield sse(
                {"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta"
            )
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        stop = {"stop_reason": _STOP[result.finish], "stop_sequence": None}
        usage = {"output_tokens": result.output_tokens}
        yield sse({"type": "message_delta", "delta": stop, "usage": usage}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    async def models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        refusal = await self.gate(request)
        if refusal is not None:
            return refusal
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in _MODELS
        ]
        return json_response(
            {"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]}
        )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    raise TypeError("content must be a string or a list of blocks")
