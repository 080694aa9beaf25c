"""Anthropic through ``anthropic.AsyncAnthropic`` (Messages API), on the aiohttp transport.

As for OpenAI, calls go through the client's documented low-level ``post`` and
the answer is decoded with msgspec, which costs a fraction of the typed path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import msgspec

from ._adapter import Adapter, Raw, RawChunk, error_for_status, parse_retry_after
from ._catalog import Catalog
from ._config import ProviderConfig
from ._errors import (
    BadRequest,
    ContextTooLong,
    ProviderError,
    ProviderTimeout,
    ServerError,
    Unavailable,
)
from ._raw import read_error, sse_events
from ._types import (
    ChatMessage,
    FinishReason,
    ImagePart,
    NamedTool,
    ProviderRequest,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
    portable_id,
)

__all__ = ["AnthropicAdapter"]

_FINISH: dict[str | None, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
# Structured output on Anthropic: a tool the model is made to call, whose input is the
# answer (its schema the request's); its input comes back as the answer's text.
_JSON_TOOL = "json_answer"
# Anthropic requires max_tokens; without one from the request, the model's maximum
# output (from the catalog) or this.
_FALLBACK_MAX_TOKENS = 4096


class _Usage(msgspec.Struct, frozen=True):
    input_tokens: int | None = None
    output_tokens: int | None = None


class _Block(msgspec.Struct):
    type: str = ""
    text: str | None = None
    id: str | None = None  # a tool_use block's
    name: str | None = None
    input: Any = None


class _Message(msgspec.Struct):
    content: list[_Block] = []
    stop_reason: str | None = None
    usage: _Usage = _Usage()


class _Delta(msgspec.Struct):
    text: str | None = None
    partial_json: str | None = None  # an input_json_delta's piece of a tool's input
    stop_reason: str | None = None


class _Error(msgspec.Struct):
    type: str = ""
    message: str = ""


class _Event(msgspec.Struct):
    """One event of a streamed answer."""

    type: str
    index: int = 0
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _Error | None = None


_decode_message = msgspec.json.Decoder(_Message).decode
_decode_event = msgspec.json.Decoder(_Event).decode


class AnthropicAdapter(Adapter):
    """Anthropic's Messages API: the system prompt apart, ``max_tokens`` always set."""

    name = "anthropic"

    def __init__(self, config: ProviderConfig, catalog: Catalog, default_model: str) -> None:
        super().__init__(config, catalog, default_model)
        self.client = anthropic.AsyncAnthropic(
            api_key=str(config.api_key),
            base_url=config.base_url or None,
            timeout=self.timeout,
            max_retries=0,  # the breaker owns retries and counts every attempt
            http_client=anthropic.DefaultAioHttpClient(),
        )

    async def close(self) -> None:
        await self.client.close()

    def _body(self, request: ProviderRequest, model: str) -> dict[str, Any]:
        system, turns = request.split_system()
        max_tokens = request.max_tokens
        if max_tokens is None:
            known = self.catalog.canonical(model)
            max_tokens = (
                self.catalog.models[known].max_output_tokens if known else _FALLBACK_MAX_TOKENS
            )
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": max_tokens,
            "messages": _messages(turns),
        }
        form = request.response_format
        if form is not None and form.type != "text":
            if request.tools:
                raise BadRequest(self.name, "response_format: with tools, not carried to "
                                 "anthropic (its JSON output is a forced tool)")  # fmt: skip
            schema = form.json_schema.schema if form.json_schema else {"type": "object"}
            body["tools"] = [{"name": _JSON_TOOL, "input_schema": schema or {"type": "object"},
                              "description": "Give your answer as this tool's input."}]  # fmt: skip
            body["tool_choice"] = {"type": "tool", "name": _JSON_TOOL}
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            choice = _choice(request.tool_choice)
            if request.parallel_tool_calls is False and choice.get("type") != "none":
                choice["disable_parallel_tool_use"] = True
            if choice:
                body["tool_choice"] = choice
        if system is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        if request.user:
            body["metadata"] = {"user_id": request.user}
        return body

    async def _generate(self, request: ProviderRequest, model: str) -> Raw:
        response = await self.client.post(
            "/v1/messages", body=self._body(request, model), cast_to=httpx2.Response
        )
        message = _decode_message(response.content)
        if _json_wanted(request):  # the forced tool's input is the answer
            answer = next((b.input for b in message.content
                           if b.type == "tool_use" and b.name == _JSON_TOOL), None)  # fmt: skip
            usage = _usage(message.usage.input_tokens or 0, message.usage.output_tokens or 0)
            finish = _FINISH.get(message.stop_reason, "other")
            text = msgspec.json.encode(answer).decode() if answer is not None else ""
            return Raw(text, "stop" if finish == "tool_calls" else finish, usage)
        text = "".join(block.text or "" for block in message.content if block.type == "text")
        calls = [
            ToolCall(id=b.id or f"toolu_{n}", name=b.name or "",
                     arguments=msgspec.json.encode(b.input or {}).decode())
            for n, b in enumerate(message.content) if b.type == "tool_use"
        ]  # fmt: skip
        usage = _usage(message.usage.input_tokens or 0, message.usage.output_tokens or 0)
        return Raw(text, _FINISH.get(message.stop_reason, "other"), usage, calls)

    async def _stream(self, request: ProviderRequest, model: str) -> AsyncIterator[RawChunk]:
        body = self._body(request, model) | {"stream": True}
        response = await self.client.post(
            "/v1/messages", body=body, cast_to=httpx2.Response, stream=True
        )
        input_tokens = output_tokens = 0
        finish: FinishReason | None = None
        tools: dict[int, int] = {}  # content block index -> tool call index
        as_text: set[int] = set()  # the forced JSON tool's blocks: their input is the text
        json_wanted = _json_wanted(request)
        try:
            async for _name, data in sse_events(response.aiter_lines()):
                event = _decode_event(data)
                match event.type:
                    case "message_start" if event.message is not None:
                        input_tokens = event.message.usage.input_tokens or 0
                        output_tokens = event.message.usage.output_tokens or 0
                    case "content_block_start" if event.content_block is not None:
                        block = event.content_block
                        if block.type == "tool_use" and json_wanted and block.name == _JSON_TOOL:
                            as_text.add(event.index)
                        elif block.type == "tool_use":
                            tools[event.index] = len(tools)
                            yield ToolCallDelta(index=tools[event.index], id=block.id or "",
                                                name=block.name or "")  # fmt: skip
                    case "content_block_delta" if event.delta is not None:
                        if event.delta.text:
                            yield event.delta.text
                        elif event.delta.partial_json and event.index in as_text:
                            yield event.delta.partial_json
                        elif event.delta.partial_json and event.index in tools:
                            yield ToolCallDelta(index=tools[event.index],
                                                arguments=event.delta.partial_json)  # fmt: skip
                    case "message_delta":
                        if event.delta is not None:
                            finish = _FINISH.get(event.delta.stop_reason, "other")
                            if json_wanted and finish == "tool_calls":
                                finish = "stop"  # the forced tool answered
                        if event.usage is not None:
                            output_tokens = event.usage.output_tokens or output_tokens
                            input_tokens = event.usage.input_tokens or input_tokens
                    case "message_stop" if finish is not None:
                        yield finish, _usage(input_tokens, output_tokens)
                        return
                    case "error":
                        raise self._error_event(event.error or _Error())
        finally:
            await response.aclose()

    async def _probe(self) -> str:
        page = await self.client.models.list(limit=1)
        return f"models answer ({len(page.data)} listed)"

    def _translate(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, anthropic.APIStatusError):
            return self._status_error(exc)
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(self.name, f"no answer within {self.timeout:g}s")
        if isinstance(exc, anthropic.APIConnectionError):
            return Unavailable(self.name, str(exc))
        return read_error(self.name, self.timeout, exc)

    def _status_error(self, exc: anthropic.APIStatusError) -> ProviderError:
        message = _message(exc)
        status = exc.status_code
        if status == 400 and "prompt is too long" in message:
            return ContextTooLong(self.name, message, status=status)
        return error_for_status(self.name, status, message, parse_retry_after(exc.response.headers))

    def _error_event(self, error: _Error) -> ProviderError:
        """An error event in the middle of a stream (the HTTP status was 200)."""
        if error.type == "rate_limit_error":
            return error_for_status(self.name, 429, error.message)
        return ServerError(self.name, f"{error.type}: {error.message}")


def _usage(input_tokens: int, output_tokens: int) -> Usage:
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=input_tokens + output_tokens,
    )


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return exc.message


def _messages(turns: list[ChatMessage]) -> list[dict[str, Any]]:
    """The turns in Anthropic's words: an assistant's tool calls as ``tool_use`` blocks,
    tool results as ``tool_result`` blocks of one user turn (parallel results together)."""
    out: list[dict[str, Any]] = []
    for message in turns:
        if message.role == "tool":
            block = {"type": "tool_result", "tool_use_id": portable_id(message.tool_call_id),
                     "content": message.content}  # fmt: skip
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        if message.images:
            # Anthropic refuses an empty text block: an image-only turn has none.
            with_images: list[dict[str, Any]] = (
                [{"type": "text", "text": message.content}] if message.content else []
            )
            with_images += [{"type": "image", "source": _source(i)} for i in message.images]
            out.append({"role": message.role, "content": with_images})
            continue
        if not message.tool_calls:
            out.append({"role": message.role, "content": message.content})
            continue
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": message.content}] if message.content else []
        )
        blocks += [{"type": "tool_use", "id": portable_id(c.id), "name": c.name,
                    "input": c.arguments_object()}
                   for c in message.tool_calls]  # fmt: skip
        out.append({"role": "assistant", "content": blocks})
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": tool.name,
        "input_schema": tool.parameters or {"type": "object", "properties": {}},
    }
    if tool.description is not None:
        out["description"] = tool.description
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def _choice(choice: ToolChoice | None) -> dict[str, Any]:
    if choice is None:
        return {"type": "auto"}
    if isinstance(choice, NamedTool):
        return {"type": "tool", "name": choice.name}
    return {"type": {"auto": "auto", "none": "none", "required": "any"}[choice]}


def _json_wanted(request: ProviderRequest) -> bool:
    form = request.response_format
    return form is not None and form.type != "text"


def _source(image: ImagePart) -> dict[str, Any]:
    """An image as Anthropic takes it: base64 data, or a URL it fetches."""
    data = image.data()
    if data is None:
        return {"type": "url", "url": image.url}
    return {"type": "base64", "media_type": data[0], "data": data[1]}
