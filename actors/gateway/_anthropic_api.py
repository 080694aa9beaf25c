"""Anthropic's Messages API at the edge: ``POST /v1/messages`` (streaming included) and
``POST /v1/messages/count_tokens``, so the anthropic SDK and what is built on it work
through the gateway. A request is routed like any other (any provider, not only
Anthropic); the answer and the errors come back in Anthropic's shapes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from aiohttp import web

from bus import BusError

from ..client import GenerateError
from ..messages import GenerateRequest, GenerateResponse, StreamDelta
from ..providers import (
    ChatMessage,
    ImagePart,
    NamedTool,
    Tool,
    ToolCall,
    ToolChoice,
    TopP,
    estimate_prompt_tokens,
)
from ._bodies import BadInput, bus_failure, decode, json_response
from ._callers import Refused
from ._openai import cache_threshold, use_cache, wait_on_limit

if TYPE_CHECKING:
    from ._app import Gateway

__all__ = ["MessagesApi"]

_encoder = msgspec.json.Encoder()
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
         "content_filter": "refusal"}  # fmt: skip
_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
           404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
           529: "overloaded_error"}  # fmt: skip


class Source(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class TextOnly(msgspec.Struct, kw_only=True):
    type: Literal["text"]
    text: str


class Block(msgspec.Struct, kw_only=True):
    """A content block: text, image, tool_use or tool_result (others are refused)."""

    type: Literal["text", "image", "tool_use", "tool_result"]
    text: str | None = None
    source: Source | None = None
    id: str | None = None
    name: str | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = None
    content: str | list[TextOnly] | None = None
    is_error: bool | None = None


class Turn(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class AnthropicTool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    input_schema: dict[str, Any] = {}
    strict: bool | None = None
    type: Literal["custom"] | None = None  # a client's own tool (server tools: refused)
    cache_control: Any = None  # Anthropic's prompt caching hint: taken, nothing to do


class Choice(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(msgspec.Struct, kw_only=True):
    user_id: str | None = None


class MessagesBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Anthropic's Messages request. Fields this gateway does not carry (``top_k``,
    ``thinking``, server tools, ...) are refused naming them, as unknown ones are."""

    model: str
    max_tokens: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    messages: Annotated[list[Turn], msgspec.Meta(min_length=1)]
    system: str | list[TextOnly] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    top_p: TopP | None = None
    stop_sequences: Annotated[list[str], msgspec.Meta(max_length=4)] | None = None
    stream: bool = False
    tools: Annotated[list[AnthropicTool], msgspec.Meta(max_length=128)] | None = None
    tool_choice: Choice | None = None
    metadata: Metadata | None = None
    # Known to Anthropic, not carried: refused when given.
    top_k: int | None = None
    thinking: Any = None
    service_tier: str | None = None
    container: Any = None
    mcp_servers: Any = None

    def __post_init__(self) -> None:
        for name in ("top_k", "thinking", "container", "mcp_servers"):
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: not supported by this gateway yet")
        if self.service_tier not in (None, "auto", "standard_only"):
            raise ValueError("service_tier: not supported by this gateway yet")


class CountBody(msgspec.Struct, kw_only=True):
    """``count_tokens``: the request's fields that count (the rest are ignored, as
    Anthropic's own endpoint ignores them)."""

    model: str
    messages: Annotated[list[Turn], msgspec.Meta(min_length=1)]
    system: str | list[TextOnly] | None = None
    tools: Annotated[list[AnthropicTool], msgspec.Meta(max_length=128)] | None = None


def conversation(system: str | list[TextOnly] | None, turns: list[Turn]) -> list[ChatMessage]:
    """Anthropic's turns as ours: tool results become tool turns (before the user's
    text of the same turn), tool_use blocks the assistant's tool calls, images the
    user turn's images."""
    out: list[ChatMessage] = []
    if system:
        text = system if isinstance(system, str) else "".join(b.text for b in system)
        out.append(ChatMessage(role="system", content=text))
    for index, turn in enumerate(turns):
        if isinstance(turn.content, str):
            out.append(ChatMessage(role=turn.role, content=turn.content))
            continue
        texts: list[str] = []
        images: list[ImagePart] = []
        calls: list[ToolCall] = []
        for block in turn.content:
            where = f"messages[{index}].content"
            if block.type == "text":
                texts.append(block.text or "")
            elif block.type == "image":
                images.append(_image(block.source, where))
            elif block.type == "tool_use":
                if not block.id or not block.name:
                    raise ValueError(f"{where}: a tool_use block needs its id and name")
                calls.append(ToolCall(id=block.id, name=block.name,
                                      arguments=json.dumps(block.input or {})))  # fmt: skip
            else:  # tool_result
                if not block.tool_use_id:
                    raise ValueError(f"{where}: a tool_result block needs its tool_use_id")
                result = block.content
                text = result if isinstance(result, str) else "".join(b.text for b in result or [])
                if block.is_error:
                    text = f"Error: {text}"
                out.append(ChatMessage(role="tool", content=text, tool_call_id=block.tool_use_id))
        if texts or images or calls or turn.role == "assistant":
            out.append(ChatMessage(role=turn.role, content="".join(texts), images=images,
                                   tool_calls=calls))  # fmt: skip
    return out


def _image(source: Source | None, where: str) -> ImagePart:
    if source is None:
        raise ValueError(f"{where}: an image block needs its source")
    url = source.url or ""
    if source.type == "base64":
        url = f"data:{source.media_type or ''};base64,{source.data or ''}"
    try:
        return msgspec.convert({"url": url}, ImagePart)
    except msgspec.ValidationError:
        raise ValueError(f"{where}: an image is base64 data (image/...) or an https URL") from None


def tools_of(body: MessagesBody) -> dict[str, Any]:
    tools = [Tool(name=t.name, description=t.description, parameters=t.input_schema,
                  strict=t.strict) for t in body.tools or []]  # fmt: skip
    choice: ToolChoice | None = None
    parallel: bool | None = None
    given = body.tool_choice
    if given is not None and tools:
        if given.type == "tool":
            if given.name not in {t.name for t in tools}:
                raise ValueError(
                    f"tool_choice: names {given.name!r}, which is not one of the tools"
                )
            choice = NamedTool(name=given.name)
        else:
            choice = {"auto": "auto", "any": "required", "none": "none"}[given.type]  # type: ignore[assignment]
        if given.disable_parallel_tool_use:
            parallel = False
    return {"tools": tools, "tool_choice": choice, "parallel_tool_calls": parallel}


def anthropic_error(status: int, message: str) -> web.Response:
    """An error as Anthropic shapes it (the SDKs pick their exception by status)."""
    error_type = _ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json_response({"type": "error", "error": {"type": error_type, "message": message}},
                         status)  # fmt: skip


def _blocks(answer: GenerateResponse) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if answer.content or not answer.tool_calls:
        blocks.append({"type": "text", "text": answer.content})
    for call in answer.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": call.arguments_object()})  # fmt: skip
    return blocks


def message_body(answer: GenerateResponse) -> dict[str, Any]:
    return {
        "id": f"msg_{answer.request_id}",
        "type": "message",
        "role": "assistant",
        "model": answer.model,
        "content": _blocks(answer),
        "stop_reason": _STOP.get(answer.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": answer.usage.input_tokens,
                  "output_tokens": answer.usage.output_tokens},
    }  # fmt: skip


class MessagesApi:
    """The routes; the gateway's own parts (client, callers, bounds) do the work."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self.messages),
            web.post("/v1/messages/count_tokens", self.count_tokens),
        ]

    async def count_tokens(self, request: web.Request) -> web.Response:
        """An upper estimate of the prompt's tokens (ours, not the provider's count)."""
        try:
            body: CountBody = decode(await request.read(), CountBody)
            turns = conversation(body.system, body.messages)
            texts = [m.content for m in turns] + [c.arguments for m in turns for c in m.tool_calls]
            if body.tools:
                texts.append(msgspec.json.encode(body.tools).decode())
        except (BadInput, ValueError) as exc:
            return anthropic_error(getattr(exc, "status", 400), str(exc))
        return json_response({"input_tokens": estimate_prompt_tokens(texts)})

    async def messages(self, request: web.Request) -> web.StreamResponse:
        gateway = self.gateway
        try:
            body: MessagesBody = decode(await request.read(), MessagesBody)
            gateway.check_model(body.model)
            named = body.metadata.user_id if body.metadata else None
            user_id, tier = await gateway.callers.end_user(request, named)
            ask = gateway.bounded(GenerateRequest(
                request_id=gateway.new_request_id(request),
                messages=conversation(body.system, body.messages),
                user_id=user_id,
                tier=tier,
                model=body.model,
                temperature=body.temperature,  # Anthropic's 0..1: within ours
                top_p=body.top_p,
                max_tokens=body.max_tokens,
                stop=body.stop_sequences or [],
                **tools_of(body),
                stream=body.stream,
                use_cache=use_cache(request),
                wait_on_limit=wait_on_limit(request),
                cache_threshold=cache_threshold(request),
                timeout_ms=gateway.client.timeout_ms,
            ))  # fmt: skip
        except Refused as exc:
            return anthropic_error(exc.status, exc.message)
        except BadInput as exc:
            return anthropic_error(exc.status, str(exc))
        except ValueError as exc:
            return anthropic_error(400, str(exc))
        if not body.stream:
            try:
                answer = await gateway.client.generate(ask)
            except GenerateError as exc:
                return anthropic_error(exc.failed.status, exc.failed.message)
            except BusError as exc:
                status, _kind, message = bus_failure(exc)
                return anthropic_error(status, message)
            return json_response(message_body(answer), headers={"request-id": ask.request_id})
        return await self._stream(request, ask)

    async def _stream(self, request: web.Request, ask: GenerateRequest) -> web.StreamResponse:
        replies = self.gateway.client.stream(ask)
        try:
            first = await anext(replies)
        except GenerateError as exc:
            return anthropic_error(exc.failed.status, exc.failed.message)
        except BusError as exc:
            status, _kind, message = bus_failure(exc)
            return anthropic_error(status, message)
        except StopAsyncIteration:
            return anthropic_error(502, "the stream ended before any answer")
        try:
            return await _relay(request, ask, first, replies)
        finally:
            await replies.aclose()  # type: ignore[attr-defined]


async def _relay(
    request: web.Request, ask: GenerateRequest, first: Any, replies: AsyncIterator[Any]
) -> web.StreamResponse:
    """Anthropic's event sequence: message_start, a text block (its deltas), a tool_use
    block per call (its input as input_json_delta pieces), message_delta, message_stop;
    a failure after the start is an ``error`` event."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "request-id": ask.request_id})  # fmt: skip
    await response.prepare(request)

    async def event(name: str, data: dict[str, Any]) -> None:
        await response.write(b"event: " + name.encode() + b"\ndata: " + _encoder.encode(data)
                             + b"\n\n")  # fmt: skip

    model = first.model if isinstance(first, (StreamDelta, GenerateResponse)) else ask.model
    start: dict[str, Any] = {"id": f"msg_{ask.request_id}", "type": "message", "role": "assistant",
             "model": model or ask.model, "content": [], "stop_reason": None,
             "stop_sequence": None, "usage": {"input_tokens": 0, "output_tokens": 0}}  # fmt: skip
    await event("message_start", {"type": "message_start", "message": start})
    index = -1  # the open block's index
    kind = ""  # its type
    tools: dict[int, int] = {}  # tool call index -> block index

    async def open_block(block: dict[str, Any]) -> None:
        nonlocal index, kind
        if index >= 0:
            await event("content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
        kind = block["type"]
        opened = {"type": "content_block_start", "index": index, "content_block": block}
        await event("content_block_start", opened)

    async def piece(delta: StreamDelta) -> None:
        if delta.text:
            if kind != "text":
                await open_block({"type": "text", "text": ""})
            await event("content_block_delta", {"type": "content_block_delta", "index": index,
                        "delta": {"type": "text_delta", "text": delta.text}})  # fmt: skip
        for call in delta.tool_calls:
            if call.index not in tools:
                await open_block({"type": "tool_use", "id": call.id, "name": call.name,
                                  "input": {}})  # fmt: skip
                tools[call.index] = index
            if call.arguments:
                json_delta = {"type": "input_json_delta", "partial_json": call.arguments}
                await event("content_block_delta", {"type": "content_block_delta",
                            "index": tools[call.index], "delta": json_delta})  # fmt: skip

    try:
        stream: AsyncIterator[Any] = _prepend(first, replies)
        async for reply in stream:
            if isinstance(reply, StreamDelta):
                await piece(reply)
            elif isinstance(reply, GenerateResponse):
                if index < 0:  # no text at all: an empty text block, as Anthropic sends
                    await open_block({"type": "text", "text": ""})
                await event("content_block_stop", {"type": "content_block_stop", "index": index})
                usage = {"input_tokens": reply.usage.input_tokens,
                         "output_tokens": reply.usage.output_tokens}  # fmt: skip
                stop = _STOP.get(reply.finish_reason, "end_turn")
                await event("message_delta", {"type": "message_delta", "usage": usage,
                            "delta": {"stop_reason": stop, "stop_sequence": None}})  # fmt: skip
                await event("message_stop", {"type": "message_stop"})
                break
    except GenerateError as exc:
        await event("error", {"type": "error", "error": {
            "type": "api_error", "message": exc.failed.message}})  # fmt: skip
    except Exception as exc:  # the request path broke under the stream
        await event("error", {"type": "error", "error": {
            "type": "api_error", "message": f"{type(exc).__name__}: {exc}"}})  # fmt: skip
    await response.write_eof()
    return response


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for reply in rest:
        yield reply
