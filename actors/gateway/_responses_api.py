"""OpenAI's Responses API at the edge: ``POST /v1/responses`` for text, multi-turn input,
instructions, function tools, structured output (``text.format``) and streaming events,
the subset the OpenAI SDK and LangChain use. A request is routed like any chat request
(any provider, any catalog name); the answer is a ``response`` object, never stored:
``previous_response_id`` and ``store: true`` are refused, so the caller sends the whole
conversation each time (as with chat completions).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from aiohttp import web

from bus import BusError

from ..client import GenerateError
from ..messages import GenerateRequest, GenerateResponse, StreamDelta, UserId
from ..providers import (
    ChatMessage,
    Effort,
    ImagePart,
    JsonSchemaFormat,
    MaxTokens,
    NamedTool,
    ResponseFormat,
    Temperature,
    Tool,
    ToolCall,
    ToolChoice,
    TopP,
)
from ._bodies import BadInput, bus_failure, decode, json_response, limit_headers
from ._callers import Refused
from ._openai import (
    cache_threshold,
    failure_args,
    openai_error,
    route_headers,
    use_cache,
    wait_on_limit,
)

if TYPE_CHECKING:
    from ._app import Gateway

__all__ = ["ResponsesApi", "ResponsesBody"]

_encoder = msgspec.json.Encoder()
_ROLES: dict[str, Literal["system", "user", "assistant"]] = {
    "system": "system", "developer": "system", "user": "user", "assistant": "assistant",
}  # fmt: skip


class Part(msgspec.Struct, kw_only=True):
    """A content part: text in, text out (an earlier answer), or an image (by URL)."""

    type: Literal["input_text", "output_text", "input_image", "refusal"]
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] | None = None
    annotations: Any = None  # an earlier answer's, as the SDK sends it back
    logprobs: Any = None


class Item(msgspec.Struct, kw_only=True):
    """An input item: a message, a function call (an earlier answer's) or its output."""

    type: Literal["message", "function_call", "function_call_output", "reasoning"] = "message"
    role: Literal["user", "system", "developer", "assistant"] | None = None
    content: str | list[Part] | None = None
    id: str | None = None
    status: str | None = None
    call_id: Annotated[str, msgspec.Meta(min_length=1, max_length=16_384)] | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[Part] | None = None


class FunctionTool(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["function"]  # built-in tools (web_search, file_search, ...) are refused
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamedFunction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["function"]
    name: str


class Format(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


class TextConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    format: Format | None = None
    verbosity: Literal["medium"] | None = None  # another value asks for what is not carried


class Reasoning(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    effort: Effort | None = None
    summary: None = None  # no summaries are made: a value is refused
    generate_summary: None = None


# Known to OpenAI, not carried: each refused when it asks for something.
_REFUSED: dict[str, str] = {
    "previous_response_id": "responses are not stored: send the whole conversation",
    "conversation": "responses are not stored: send the whole conversation",
    "background": "not carried",
    "include": "not carried",
    "prompt": "stored prompts are not carried",
    "max_tool_calls": "not carried",
    "top_logprobs": "not carried on /v1/responses (use /v1/chat/completions' logprobs)",
    "context_management": "not carried",
    "prompt_cache_key": "not carried",
}


class ResponsesBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's Responses request, the part this gateway carries; a field OpenAI does not
    know is refused, one it knows and this gateway does not carry is refused naming it
    unless its value asks for nothing."""

    model: str
    input: str | list[Item]
    instructions: str | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    tools: Annotated[list[FunctionTool], msgspec.Meta(max_length=128)] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    reasoning: Reasoning | None = None
    stream: bool = False
    stream_options: dict[str, bool] | None = None  # include_obfuscation: no padding is sent
    user: UserId | None = None
    safety_identifier: UserId | None = None
    metadata: dict[str, str] | None = None  # echoed on the answer
    store: Literal[False] | None = None  # nothing is stored (true is refused)
    truncation: Literal["disabled"] | None = None  # "auto" is not carried
    service_tier: Literal["auto", "default"] | None = None
    previous_response_id: str | None = None
    conversation: Any = None
    background: bool | None = None
    include: list[str] | None = None
    prompt: Any = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None
    context_management: Any = None
    prompt_cache_key: str | None = None

    def __post_init__(self) -> None:
        for name, why in _REFUSED.items():
            value = getattr(self, name)
            if value is not None and value is not False and value not in ([], {}):
                raise ValueError(f"{name}: {why} (see docs/compatibility.md)")

    def conversation_of(self) -> list[ChatMessage]:
        """The instructions and the input items as our turns (consecutive function calls
        joined to the assistant turn before them)."""
        turns: list[ChatMessage] = []
        if self.instructions:
            turns.append(ChatMessage(role="system", content=self.instructions))
        if isinstance(self.input, str):
            return [*turns, ChatMessage(role="user", content=self.input)]
        if not self.input:
            raise ValueError("input: give a text or at least one item")
        for index, item in enumerate(self.input):
            where = f"input[{index}]"
            if item.type == "reasoning":
                raise ValueError(f"{where}: reasoning items are not carried")
            if item.type == "function_call":
                if not item.call_id or not item.name:
                    raise ValueError(f"{where}: a function_call needs its call_id and name")
                call = ToolCall(id=item.call_id, name=item.name, arguments=item.arguments or "{}")
                last = turns[-1] if turns else None
                if last is not None and last.role == "assistant":
                    turns[-1] = msgspec.structs.replace(last, tool_calls=[*last.tool_calls, call])
                else:
                    turns.append(ChatMessage(role="assistant", content="", tool_calls=[call]))
            elif item.type == "function_call_output":
                if not item.call_id:
                    raise ValueError(f"{where}: a function_call_output needs its call_id")
                output, images = _parts(item.output, where)
                if images:
                    raise ValueError(f"{where}.output: images in a function's output are not "
                                     "carried (put them in a user message)")  # fmt: skip
                turns.append(ChatMessage(role="tool", content=output, tool_call_id=item.call_id))
            else:
                if item.role is None:
                    raise ValueError(f"{where}.role: a message needs its role")
                content, images = _parts(item.content, where)
                turns.append(ChatMessage(role=_ROLES[item.role], content=content, images=images))
        return turns

    def options(self) -> dict[str, Any]:
        """Tools, tool choice, structured output and reasoning effort, as the bus takes."""
        tools = [Tool(name=t.name, description=t.description, parameters=t.parameters or {},
                      strict=t.strict) for t in self.tools or []]  # fmt: skip
        choice: ToolChoice | None = None
        if isinstance(self.tool_choice, NamedFunction):
            choice = NamedTool(name=self.tool_choice.name)
            if choice.name not in {t.name for t in tools}:
                raise ValueError(f"tool_choice: names {choice.name!r}, which is not one of the "
                                 "tools")  # fmt: skip
        elif self.tool_choice is not None:
            choice = self.tool_choice
        if choice not in (None, "auto", "none") and not tools:
            raise ValueError("tool_choice: asks for a tool call, but there are no tools")
        form = self.text.format if self.text is not None else None
        response_format = None
        if form is not None and form.type != "text":
            schema = None
            if form.type == "json_schema":
                if form.name is None or form.schema is None:
                    raise ValueError("text.format: json_schema needs its name and schema")
                schema = JsonSchemaFormat(name=form.name, schema=form.schema, strict=form.strict,
                                          description=form.description)  # fmt: skip
            response_format = ResponseFormat(type=form.type, json_schema=schema)
        return {
            "tools": tools,
            "tool_choice": choice if tools else None,
            "parallel_tool_calls": self.parallel_tool_calls if tools else None,
            "response_format": response_format,
            "reasoning_effort": self.reasoning.effort if self.reasoning else None,
        }


def _parts(content: str | list[Part] | None, where: str) -> tuple[str, list[ImagePart]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts: list[str] = []
    images: list[ImagePart] = []
    for index, part in enumerate(content):
        if part.type == "input_image":
            if part.image_url is None:
                raise ValueError(f"{where}.content[{index}].image_url: an image is given by its "
                                 "URL (https or a data URI); file ids are not carried")  # fmt: skip
            try:
                images.append(ImagePart(url=part.image_url, detail=part.detail))
            except (msgspec.ValidationError, ValueError):
                raise ValueError(f"{where}.content[{index}].image_url: an https URL or a data "
                                 "URI (data:image/png;base64,...)") from None  # fmt: skip
        else:
            texts.append(part.text or part.refusal or "")
    return "".join(texts), images


class ResponsesApi:
    """The route; the gateway's own parts (client, callers, bounds) do the work."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/responses", self.responses)]

    async def responses(self, request: web.Request) -> web.StreamResponse:
        gateway = self.gateway
        try:
            body: ResponsesBody = decode(await request.read(), ResponsesBody)
            gateway.check_model(body.model)
            named = body.user or body.safety_identifier
            user_id, tier = await gateway.callers.end_user(request, named)
            ask = gateway.bounded(GenerateRequest(
                request_id=gateway.new_request_id(request),
                messages=body.conversation_of(),
                user_id=user_id,
                tier=tier,
                model=body.model,
                temperature=body.temperature,
                top_p=body.top_p,
                max_tokens=body.max_output_tokens,
                **body.options(),
                stream=body.stream,
                use_cache=use_cache(request),
                wait_on_limit=wait_on_limit(request),
                cache_threshold=cache_threshold(request),
                timeout_ms=gateway.client.timeout_ms,
            ))  # fmt: skip
        except Refused as exc:
            return _error(exc.status, "invalid_api_key" if exc.status == 401 else exc.kind,
                                exc.message)  # fmt: skip
        except BadInput as exc:
            return _error(exc.status, exc.kind, str(exc))
        except ValueError as exc:
            return _error(400, "invalid_request", str(exc))
        echo = _Echo(body, ask.request_id, time.time())
        if not body.stream:
            started = time.perf_counter()
            try:
                answer = await gateway.client.generate(ask)
            except GenerateError as exc:
                return _error(*failure_args(exc.failed))
            except BusError as exc:
                return _error(*bus_failure(exc), ask.request_id)
            gateway.observe_overhead(started, answer)
            headers = route_headers(answer) | limit_headers(answer.limits)
            return json_response(echo.finished(answer, _items(answer, echo.ids)), headers=headers)
        replies = gateway.client.stream(ask)
        try:
            first = await anext(replies)  # failures before any text keep their status
        except GenerateError as exc:
            return _error(*failure_args(exc.failed))
        except BusError as exc:
            return _error(*bus_failure(exc), ask.request_id)
        except StopAsyncIteration:
            return _error(502, "bad_gateway", "the stream ended before any answer")
        try:
            return await _Relay(request, echo).run(first, replies)
        finally:
            await replies.aclose()  # type: ignore[attr-defined]


# Our request's field names as the Responses API calls them, for its errors.
_RENAMED = {"reasoning_effort": "reasoning.effort", "response_format": "text.format",
            "max_tokens": "max_output_tokens"}  # fmt: skip


def _error(status: int, kind: str, message: str, *rest: Any) -> web.Response:
    """OpenAI's error shape, naming the Responses API's own fields (``param``)."""
    head, colon, tail = message.partition(":")
    if colon and head in _RENAMED:
        message = _RENAMED[head] + colon + tail
    elif head.startswith("messages"):  # a turn of the conversation: an input item
        message = f"input: {message}"
    return openai_error(status, kind, message, *rest)


class _Ids:
    """The ids of one response's items (each its own: the SDK keys its snapshot by them)."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.response = f"resp_{request_id}"

    def message(self, output_index: int) -> str:
        return f"msg_{self.request_id}" + (f"_{output_index}" if output_index else "")

    def call(self, index: int) -> str:
        return f"fc_{self.request_id}_{index}"


class _Echo:
    """What a response object repeats of its request."""

    def __init__(self, body: ResponsesBody, request_id: str, created: float) -> None:
        self.body = body
        self.ids = _Ids(request_id)
        self.created = int(created)

    def response(self, status: str, model: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        body = self.body
        form = body.text.format if body.text and body.text.format else Format(type="text")
        tools = [msgspec.structs.asdict(t) for t in body.tools or []]
        choice = body.tool_choice
        return {
            "id": self.ids.response, "object": "response", "created_at": self.created,
            "status": status, "error": None, "incomplete_details": None,
            "instructions": body.instructions, "max_output_tokens": body.max_output_tokens,
            "model": model or body.model, "output": output,
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": None,
            "reasoning": {"effort": body.reasoning.effort if body.reasoning else None,
                          "summary": None},
            "store": False, "temperature": body.temperature, "top_p": body.top_p,
            "text": {"format": {k: v for k, v in msgspec.structs.asdict(form).items()
                                if v is not None}},
            "tool_choice": msgspec.structs.asdict(choice) if isinstance(choice, NamedFunction)
            else choice or "auto",
            "tools": tools, "truncation": "disabled", "usage": None,
            "user": body.user, "metadata": body.metadata or {},
        }  # fmt: skip

    def finished(self, answer: GenerateResponse, output: list[dict[str, Any]]) -> dict[str, Any]:
        done = self.response(_STATUS.get(answer.finish_reason, "completed"), answer.model, output)
        why = _INCOMPLETE.get(answer.finish_reason)
        if why is not None:
            done["incomplete_details"] = {"reason": why}
        usage = answer.usage
        done["usage"] = {
            "input_tokens": usage.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.input_tokens + usage.output_tokens,
        }
        return done


_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}
_STATUS = {"length": "incomplete", "content_filter": "incomplete"}


def _message(ids: _Ids, at: int, text: str, status: str) -> dict[str, Any]:
    return {"type": "message", "id": ids.message(at), "status": status, "role": "assistant",
            "content": [_text_part(text)] if status != "in_progress" else []}  # fmt: skip


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _call(ids: _Ids, index: int, call: ToolCall, status: str) -> dict[str, Any]:
    return {"type": "function_call", "id": ids.call(index), "call_id": call.id, "name": call.name,
            "arguments": call.arguments, "status": status}  # fmt: skip


def _items(answer: GenerateResponse, ids: _Ids) -> list[dict[str, Any]]:
    """The output items of a whole answer: its text (when there is some, or no call), then
    each function call."""
    items = []
    if answer.content or not answer.tool_calls:
        items.append(_message(ids, 0, answer.content, "completed"))
    items += [_call(ids, n, call, "completed") for n, call in enumerate(answer.tool_calls)]
    return items


class _Relay:
    """The Responses API's event sequence for one streamed answer: created, in_progress,
    then per output item its added, deltas, done events, then completed (or failed)."""

    def __init__(self, request: web.Request, echo: _Echo) -> None:
        self.request = request
        self.echo = echo
        self.ids = echo.ids
        self.out = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
            "X-Request-ID": echo.ids.response.removeprefix("resp_")})  # fmt: skip
        self.sequence = 0
        self.model = ""
        self.items: list[dict[str, Any]] = []  # done, and the open one last
        self.open: str = ""  # "message", "function_call" or ""
        self.text: list[str] = []
        self.calls: dict[int, tuple[int, ToolCall]] = {}  # call index -> (item index, call)

    async def event(self, kind: str, **data: Any) -> None:
        payload = {"type": kind, "sequence_number": self.sequence, **data}
        self.sequence += 1
        await self.out.write(b"event: " + kind.encode() + b"\ndata: " + _encoder.encode(payload)
                             + b"\n\n")  # fmt: skip

    async def run(self, first: Any, replies: AsyncIterator[Any]) -> web.StreamResponse:
        await self.out.prepare(self.request)
        self.model = first.model if isinstance(first, StreamDelta | GenerateResponse) else ""
        started = self.echo.response("in_progress", self.model, [])
        await self.event("response.created", response=started)
        await self.event("response.in_progress", response=started)
        try:
            reply = first
            while True:
                if isinstance(reply, StreamDelta):
                    await self.piece(reply)
                elif isinstance(reply, GenerateResponse):
                    await self.close()
                    if not self.items:  # no text and no call: an empty message
                        await self.open_message()
                        await self.close()
                    done = self.echo.finished(reply, self.items)
                    kind = "response.completed" if done["status"] == "completed" else (
                        "response.incomplete")  # fmt: skip
                    await self.event(kind, response=done)
                    break
                reply = await anext(replies)
        except StopAsyncIteration:
            await self.failed("stream_interrupted", "the stream ended before its answer")
        except GenerateError as exc:
            await self.failed(exc.failed.kind, exc.failed.message)
        except Exception as exc:  # the request path broke under the stream
            await self.failed("server_error", f"{type(exc).__name__}: {exc}")
        await self.out.write_eof()
        return self.out

    async def failed(self, kind: str, message: str) -> None:
        gone = self.echo.response("failed", self.model, self.items)
        code = "rate_limit_exceeded" if kind in ("rate_limited", "quota_exceeded") else (
            "server_error")  # fmt: skip
        gone["error"] = {"code": code, "message": f"{kind}: {message}"}
        await self.event("response.failed", response=gone)

    async def piece(self, delta: StreamDelta) -> None:
        if delta.text:
            if self.open != "message":
                await self.close()
                await self.open_message()
            self.text.append(delta.text)
            at = len(self.items) - 1
            await self.event("response.output_text.delta", item_id=self.ids.message(at),
                             output_index=at, content_index=0, delta=delta.text,
                             logprobs=[])  # fmt: skip
        for piece in delta.tool_calls:
            if piece.index not in self.calls:
                await self.close()
                call = ToolCall(id=piece.id, name=piece.name, arguments="")
                self.calls[piece.index] = (len(self.items), call)
                self.items.append(_call(self.ids, piece.index, call, "in_progress"))
                self.open = "function_call"
                await self.event("response.output_item.added", output_index=len(self.items) - 1,
                                 item=self.items[-1])  # fmt: skip
            at, call = self.calls[piece.index]
            if piece.arguments:
                self.calls[piece.index] = (at, msgspec.structs.replace(
                    call, arguments=call.arguments + piece.arguments))  # fmt: skip
                await self.event("response.function_call_arguments.delta",
                                 item_id=self.ids.call(piece.index), output_index=at,
                                 delta=piece.arguments)  # fmt: skip

    async def open_message(self) -> None:
        at = len(self.items)
        self.items.append(_message(self.ids, at, "", "in_progress"))
        self.open = "message"
        self.text = []
        await self.event("response.output_item.added", output_index=at, item=self.items[-1])
        await self.event("response.content_part.added", item_id=self.ids.message(at),
                         output_index=at, content_index=0, part=_text_part(""))  # fmt: skip

    async def close(self) -> None:
        """The open item's done events."""
        at = len(self.items) - 1
        if self.open == "message":
            text, item_id = "".join(self.text), self.ids.message(at)
            await self.event("response.output_text.done", item_id=item_id, output_index=at,
                             content_index=0, text=text, logprobs=[])  # fmt: skip
            await self.event("response.content_part.done", item_id=item_id, output_index=at,
                             content_index=0, part=_text_part(text))  # fmt: skip
            self.items[at] = _message(self.ids, at, text, "completed")
            await self.event("response.output_item.done", output_index=at, item=self.items[at])
        elif self.open == "function_call":
            index, (_at, call) = next((i, c) for i, c in self.calls.items() if c[0] == at)
            await self.event("response.function_call_arguments.done",
                             item_id=self.ids.call(index), output_index=at, name=call.name,
                             arguments=call.arguments)  # fmt: skip
            self.items[at] = _call(self.ids, index, call, "completed")
            await self.event("response.output_item.done", output_index=at, item=self.items[at])
        self.open = ""
