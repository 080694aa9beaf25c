"""Anthropic's Messages API (with its SSE event sequence) and models list."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import web

from ._api import Api, Call, json_response, sse
from ._text import Answer, instance_of

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
        wrong = _wrong_block(body["messages"])
        if wrong is not None:  # as Anthropic refuses it
            return self.error(400, "invalid_request_error", wrong)
        extra: dict[str, Any] = {"images": [  # each image it was shown (tests read them)
            b.get("source", {}).get("type", "")
            for m in body["messages"] if isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, dict) and b.get("type") == "image"
        ]}  # fmt: skip
        calls = _tool_uses(body, model)
        if calls:
            extra["calls"] = calls
        call = Call(self.provider, model, texts, max_tokens, bool(body.get("stream")), extra)
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
        if call.extra.get("calls"):
            content = [{"type": "tool_use", "id": i, "name": n, "input": a}
                       for i, n, a in call.extra["calls"]]  # fmt: skip
            stop_reason = stop_reason and "tool_use"
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
        if call.extra.get("calls"):
            yield from self._tool_events(call, result)
            return
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

    def _tool_events(self, call: Call, result: Answer) -> Iterator[bytes]:
        """Each tool_use block: its start (id, name, empty input), its input JSON in
        two input_json_delta pieces, its stop; then the message's end."""
        for index, (call_id, name, arguments) in enumerate(call.extra["calls"]):
            block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            yield sse({"type": "content_block_start", "index": index, "content_block": block},
                      "content_block_start")  # fmt: skip
            text = json.dumps(arguments)
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield sse({"type": "content_block_delta", "index": index, "delta": delta},
                          "content_block_delta")  # fmt: skip
            yield sse({"type": "content_block_stop", "index": index}, "content_block_stop")
        stop = {"stop_reason": "tool_use", "stop_sequence": None}
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


def _tool_uses(body: dict[str, Any], model: str) -> list[tuple[str, str, Any]]:
    """The tool_use blocks a model with tools answers (as the OpenAI API's do): none
    after a tool_result or with tool_choice none; the named tool; else the first (the
    first two when there are more and parallel use is not disabled)."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice") or {"type": "auto"}
    messages = body.get("messages") or [{}]
    last = messages[-1].get("content")
    answered = isinstance(last, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last
    )
    if not tools or choice.get("type") == "none" or answered:
        return []
    if choice.get("type") == "tool":
        chosen = [t for t in tools if t.get("name") == choice.get("name")]
    elif len(tools) > 1 and not choice.get("disable_parallel_tool_use"):
        chosen = tools[:2]
    else:
        chosen = tools[:1]
    seed = model + json.dumps(messages, sort_keys=True)
    return [
        ("toolu_" + hashlib.sha256(f"{seed}{n}".encode()).hexdigest()[:20],
         str(t.get("name", "")), instance_of(t.get("input_schema") or {}, f"{seed}{n}"))
        for n, t in enumerate(chosen)
    ]  # fmt: skip


_TOOL_ID = re.compile(r"^[a-zA-Z0-9_-]+$")


def _wrong_block(messages: list[Any]) -> str | None:
    """What Anthropic would refuse in the blocks: an empty text block, a tool id with
    characters it does not take."""
    for n, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for k, block in enumerate(content):
            if not isinstance(block, dict):
                continue
            where = f"messages.{n}.content.{k}"
            if block.get("type") == "text" and not block.get("text"):
                return f"{where}: text content blocks must be non-empty"
            tool_id = (
                block.get("id") if block.get("type") == "tool_use" else block.get("tool_use_id")
            )
            if block.get("type") in ("tool_use", "tool_result") and not _TOOL_ID.match(
                str(tool_id)
            ):
                return f"{where}: String should match pattern '^[a-zA-Z0-9_-]+$'"
    return None
