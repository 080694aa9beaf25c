"""The OpenAI-compatible edge: ``POST /v1/chat/completions`` and ``GET /v1/models``."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from aiohttp import web

from ..client import GenerateError
from ..messages import (
    KINDS,
    Fallbacks,
    GenerateFailed,
    GenerateResponse,
    LimitState,
    StreamDelta,
    UserId,
)
from ..providers import (
    ChatMessage,
    Effort,
    ImagePart,
    LogitBias,
    MaxTokens,
    NamedTool,
    Penalty,
    ResponseFormat,
    Role,
    Seed,
    Temperature,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprobs,
    TopP,
)
from ._bodies import (
    TURN_SCHEMA,
    BadInput,
    Stop,
    json_response,
    limit_headers,
    retry_after_header,
)

__all__ = [
    "ChatCompletionBody",
    "chat_messages",
    "chat_tools",
    "completion_body",
    "failure_args",
    "is_legacy",
    "openai_error",
    "route_headers",
    "stream_chat",
]

_encoder = msgspec.json.Encoder()
_AT = re.compile(r"- at `\$\.([^`]+)`")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]+)`")
_ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",  # the legacy functions' result turn
}


class ImageUrl(msgspec.Struct, kw_only=True):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(msgspec.Struct, kw_only=True):
    type: Literal["text", "image_url"]  # audio and files are refused (a 400)
    text: str | None = None
    image_url: ImageUrl | None = None


class OpenAIFunction(msgspec.Struct, kw_only=True):
    name: str
    arguments: str = "{}"


class OpenAIToolCall(msgspec.Struct, kw_only=True):
    # Long enough for a Gemini call's id, which carries its signature.
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=16_384)]
    type: Literal["function"] = "function"
    function: OpenAIFunction


class OpenAIMessage(msgspec.Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None  # a legacy function result's function
    tool_calls: list[OpenAIToolCall] | None = None
    tool_call_id: str | None = None
    function_call: OpenAIFunction | None = None  # the legacy assistant's call


class FunctionDefinition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] = {}
    strict: bool | None = None


class ToolDefinition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(msgspec.Struct, kw_only=True):
    name: str


class NamedToolChoice(msgspec.Struct, kw_only=True):
    type: Literal["function"]
    function: NamedFunction


# The most choices (n) one request may ask for: each is a request of its own.
MAX_CHOICES = 16


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


# OpenAI parameters this gateway does not carry yet, and the values of each that ask
# for nothing (sent by clients as defaults): any other value is refused.
NOT_YET: dict[str, list[Any]] = {
    "metadata": [{}],
    "store": [False],
    "service_tier": ["auto", "default"],
    "modalities": [["text"]],
    "audio": [],
    "prediction": [],
    "web_search_options": [],
    "verbosity": [],
    "prompt_cache_key": [],
}


class ChatCompletionBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's chat completion request. A field OpenAI does not know is refused, as
    OpenAI refuses it; one it knows that this gateway does not carry yet is refused
    naming it (``NOT_YET``), unless its value asks for nothing. Nothing is dropped."""

    model: str
    messages: list[OpenAIMessage]
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    stop: Stop = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: UserId | None = None
    safety_identifier: UserId | None = None  # OpenAI's newer name for `user`
    # n > 1: that many requests, each routed, admitted and charged on its own (not
    # streamed; at most MAX_CHOICES).
    n: Annotated[int, msgspec.Meta(ge=1, le=MAX_CHOICES)] | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    reasoning_effort: Effort | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[ToolDefinition], msgspec.Meta(max_length=128)] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # The legacy functions, taken as tools.
    functions: Annotated[list[FunctionDefinition], msgspec.Meta(max_length=128)] | None = None
    function_call: Literal["auto", "none"] | NamedFunction | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None
    # Ours, not OpenAI's: the models to fall back to, in order, or false for none.
    fallbacks: Fallbacks = None
    # Ours: wait for a rate limit's room instead of a 429 (or X-Wait-On-Limit).
    wait_on_limit: bool | None = None
    # Ours: hedge (call the next candidate too when the first is slow).
    hedge: bool | None = None
    # Known to OpenAI, not carried yet: refused when they ask for something.
    metadata: Any = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None

    # What the field types cannot say, as JSON Schema for /openapi.json; __post_init__
    # enforces it (with the bus request's own rule): a user or assistant turn.
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "properties": {
            "messages": {"contains": TURN_SCHEMA},
            **{name: {"enum": [None, *harmless]} for name, harmless in NOT_YET.items()},
        },
        # Streamed: one choice.
        "if": {"properties": {"stream": {"const": True}}, "required": ["stream"]},
        "then": {"properties": {"n": {"enum": [None, 1]}}},
    }

    def __post_init__(self) -> None:
        if not any(message.role in ("user", "assistant") for message in self.messages):
            raise ValueError("`messages` needs at least one user or assistant message")
        if self.n is not None and self.n > 1 and self.stream:
            raise ValueError("n: more than one choice is not streamed by this gateway")
        for name, harmless in NOT_YET.items():
            value = getattr(self, name)
            if value is not None and value not in harmless:
                raise ValueError(f"{name}: not supported by this gateway yet "
                                 "(see docs/compatibility.md)")  # fmt: skip

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else (self.stop or [])


def chat_messages(body: ChatCompletionBody) -> list[ChatMessage]:
    """OpenAI messages as ours (``developer`` is ``system``, text parts joined; the
    legacy function call and result as a tool call and a tool turn)."""
    out = []
    for message in body.messages:
        content = message.content
        images: list[ImagePart] = []
        if isinstance(content, list):
            for part in content:
                if part.type == "image_url":
                    if part.image_url is None:
                        raise ValueError("messages: an image_url part needs its image_url")
                    images.append(_image(part.image_url))
            content = "".join(part.text or "" for part in content)
        calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments)
                 for c in message.tool_calls or []]  # fmt: skip
        call_id = message.tool_call_id or ""
        if message.function_call is not None and not calls:  # legacy: one call, by its name
            calls.append(ToolCall(id=f"fn_{message.function_call.name}",
                                  name=message.function_call.name,
                                  arguments=message.function_call.arguments))  # fmt: skip
        if message.role == "function":
            call_id = f"fn_{message.name or ''}"
        out.append(ChatMessage(role=_ROLES[message.role], content=content or "",
                               tool_calls=calls, tool_call_id=call_id,
                               images=images))  # fmt: skip
    return out


def _image(given: ImageUrl) -> ImagePart:
    try:
        return msgspec.convert({"url": given.url, "detail": given.detail}, ImagePart)
    except msgspec.ValidationError:
        raise ValueError(
            "messages: an image_url is an https URL or a data URI (data:image/png;base64,...)"
        ) from None


def chat_tools(body: ChatCompletionBody) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` of the request (the legacy
    ``functions`` and ``function_call`` as tools)."""
    definitions = [t.function for t in body.tools or []] + list(body.functions or [])
    tools = [Tool(name=d.name, description=d.description, parameters=d.parameters,
                  strict=d.strict) for d in definitions]  # fmt: skip
    choice: ToolChoice | None = None
    given = body.tool_choice if body.tool_choice is not None else body.function_call
    if isinstance(given, str):
        choice = given
    elif isinstance(given, NamedToolChoice):
        choice = NamedTool(name=given.function.name)
    elif isinstance(given, NamedFunction):
        choice = NamedTool(name=given.name)
    if isinstance(choice, NamedTool) and choice.name not in {t.name for t in tools}:
        raise ValueError(f"tool_choice: names {choice.name!r}, which is not one of the tools")
    if choice == "required" and not tools:
        raise ValueError("tool_choice: asks for a tool call, but there are no tools")
    parallel = body.parallel_tool_calls if tools else None
    if is_legacy(body):  # a legacy answer holds one function_call: one call at most
        parallel = False
    return {"tools": tools, "tool_choice": choice if tools else None,
            "parallel_tool_calls": parallel}  # fmt: skip


def is_legacy(body: ChatCompletionBody) -> bool:
    """The request uses the legacy ``functions`` (and no ``tools``): the answer is
    OpenAI's legacy ``function_call``."""
    return bool(body.functions) and not body.tools


def _usage(answers: list[GenerateResponse]) -> dict[str, int]:
    prompt = sum(a.usage.input_tokens for a in answers)
    completion = sum(a.usage.output_tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": sum(a.usage.total_tokens for a in answers)}  # fmt: skip


def cache_headers(level: str, similarity: float | None = None, entry: str = "") -> dict[str, str]:
    """``X-Cache: HIT`` and ``X-Cache-Level`` for an answer from the cache (and for a
    semantic hit ``X-Cache-Similarity`` and ``X-Cache-Entry``), else ``X-Cache: MISS``."""
    if not level:
        return {"X-Cache": "MISS"}
    headers = {"X-Cache": "HIT", "X-Cache-Level": level}
    if similarity is not None:
        headers |= {"X-Cache-Similarity": f"{similarity:.4f}", "X-Cache-Entry": entry}
    return headers


def use_cache(request: web.Request) -> bool | None:
    """What the caller's headers say of the cache: ``X-Cache: no-cache`` (or
    ``Cache-Control: no-cache`` / ``no-store``) turns it off for this request; None:
    the configured default."""
    said = f"{request.headers.get('X-Cache', '')},{request.headers.get('Cache-Control', '')}"
    words = {word.strip().lower() for word in said.split(",")}
    return False if words & {"no-cache", "no-store"} else None


def wait_on_limit(request: web.Request, said: bool | None = None) -> bool | None:
    """Whether a request refused by a rate limit waits for room: the body's say
    (``said``), else ``X-Wait-On-Limit: true`` / ``false``; None: the user's tier or
    admission.wait_on_limit decides. ``BadInput`` for another value."""
    if said is not None:
        return said
    given = request.headers.get("X-Wait-On-Limit")
    if given is None:
        return None
    word = given.strip().lower()
    if word not in ("true", "false", "1", "0"):
        raise BadInput("X-Wait-On-Limit: true or false")
    return word in ("true", "1")


def cache_threshold(request: web.Request) -> float | None:
    """``X-Cache-Threshold``: the least similarity of a semantic hit for this request
    (0 to 1); ``BadInput`` when it is not one."""
    given = request.headers.get("X-Cache-Threshold")
    if given is None:
        return None
    try:
        value = float(given)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise BadInput("X-Cache-Threshold: a similarity from 0 to 1")
    return value


def _headers(answer: GenerateResponse, limits: list[LimitState] | None = None) -> dict[str, str]:
    level = answer.cache_level if answer.cache_hit else ""
    return (
        route_headers(answer)
        | cache_headers(level, answer.similarity, answer.cache_entry)
        | limit_headers(answer.limits if limits is None else limits)
    )


def route_headers(answer: GenerateResponse) -> dict[str, str]:
    """How the answer was routed: the deployment and model that answered, the number of
    attempts, and whether it came from a fallback model, a hedge, or after a wait."""
    headers = {
        "X-Request-ID": answer.request_id,
        "X-AIO-Provider": answer.provider,
        "X-AIO-Model": answer.model,
        "X-AIO-Attempts": str(len(answer.attempts)),
    }
    if answer.fallback_from:
        headers["X-AIO-Fallback"] = answer.fallback_from  # the model asked for
    if any(a.hedge and a.outcome == "ok" for a in answer.attempts):
        headers["X-AIO-Hedged"] = "true"  # the hedge's call answered
    waited = sum(a.latency_ms for a in answer.attempts if a.outcome == "waited")
    if waited:
        headers["X-AIO-Waited-Ms"] = str(round(waited))
    return headers


def completion_body(
    answers: list[GenerateResponse], *, legacy: bool = False, logprobs: bool = False
) -> web.Response:
    """The chat completion, a choice per answer (the usage is theirs together; the
    first one's headers); ``legacy``: the request used ``functions``, so the call is the
    message's ``function_call`` (one at most: legacy requests ask for one)."""
    answer = answers[0]
    body = {
        "id": f"chatcmpl-{answer.request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": answer.model,
        "choices": [_choice(index, one, legacy, logprobs) for index, one in enumerate(answers)],
        "usage": _usage(answers),
        "system_fingerprint": None,
    }
    return json_response(body, headers=_headers(answer, _tightest(answers)))


def _tightest(answers: list[GenerateResponse]) -> list[LimitState]:
    """Each limit as the answer that left the least of it reported it (the last one
    admitted, of several answered at once)."""
    least: dict[str, LimitState] = {}
    for answer in answers:
        for limit in answer.limits:
            known = least.get(limit.name)
            if known is None or limit.remaining < known.remaining:
                least[limit.name] = limit
    return list(least.values())


def _choice(index: int, answer: GenerateResponse, legacy: bool, logprobs: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.content, "refusal": None}
    finish = answer.finish_reason
    if answer.tool_calls:
        message["content"] = answer.content or None
        if legacy:
            first = answer.tool_calls[0]
            message["function_call"] = {"name": first.name, "arguments": first.arguments}
            finish = "function_call"
        else:
            message["tool_calls"] = [_call(c) for c in answer.tool_calls]
    return {
        "index": index,
        "message": message,
        "logprobs": _scores(answer.logprobs) if logprobs else None,
        "finish_reason": finish,
    }


def _scores(tokens: list[TokenLogprob]) -> dict[str, Any]:
    """Log probabilities as OpenAI shows them (``bytes`` left out: null)."""
    return {
        "content": [
            {"token": t.token, "logprob": t.logprob, "bytes": None,
             "top_logprobs": [{"token": a.token, "logprob": a.logprob, "bytes": None}
                              for a in t.top_logprobs]}
            for t in tokens
        ],
        "refusal": None,
    }  # fmt: skip


def _call_delta(piece: ToolCallDelta) -> dict[str, Any]:
    """A piece of a tool call as OpenAI streams it: id, type and name on the first."""
    out: dict[str, Any] = {"index": piece.index}
    if piece.id:
        out |= {"id": piece.id, "type": "function"}
    function: dict[str, Any] = {"arguments": piece.arguments}
    if piece.name:
        function["name"] = piece.name
    out["function"] = function
    return out


def _call(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": call.arguments}}  # fmt: skip


_ERROR_TYPES = {400: "invalid_request_error", 429: "rate_limit_error", 504: "timeout"}


def failure_args(
    failed: GenerateFailed,
) -> tuple[int, str, str, str, float | None, list[LimitState]]:
    """``openai_error``'s arguments for a request that got no answer."""
    return (failed.status, failed.kind, failed.message, failed.request_id, failed.retry_after,
            failed.limits)  # fmt: skip


def openai_error(status: int, kind: str, message: str, request_id: str = "",
                 retry_after: float | None = None,
                 limits: list[LimitState] | None = None) -> web.Response:  # fmt: skip
    """An error as OpenAI shapes it (``type`` and ``message``, plus ``code`` and ``param``)."""
    error = {
        "message": message,
        "type": KINDS[kind].openai_type
        if kind in KINDS
        else _ERROR_TYPES.get(status)
        or ("invalid_request_error" if status < 500 else "server_error"),
        "param": _param(message) if status in (400, 404) else None,
        "code": (KINDS[kind].openai_code or kind) if kind in KINDS else kind,
    }
    headers = {"X-Request-ID": request_id} if request_id else {}
    headers |= retry_after_header(retry_after) | limit_headers(limits or [])
    return json_response({"error": error}, status, headers)


def _param(message: str) -> str | None:
    """The parameter an error message names (``model: ...``, or a decoding error's
    ``... - at `$.messages[0].role```)."""
    at = _AT.search(message)
    unknown = _UNKNOWN.search(message)
    if unknown is not None:  # the field itself, where it is
        return f"{at.group(1)}.{unknown.group(1)}" if at is not None else unknown.group(1)
    if at is not None:
        return at.group(1)
    head, colon, _rest = message.partition(":")
    if not colon or " " in head or not head:
        return None
    return head.removeprefix("$.")


async def stream_chat(
    request: web.Request,
    replies: AsyncIterator[Any],
    first: StreamDelta,
    *,
    request_id: str,
    model: str,
    include_usage: bool,
    legacy: bool = False,
) -> web.StreamResponse:
    """Relay a streamed answer as OpenAI's SSE chunks; the first text is in hand
    (``legacy``: a call as the legacy ``function_call`` deltas).

    A failure after the stream started ends it with an error event (never a silent
    clean end): the OpenAI SDKs raise on it.
    """
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Request-ID": request_id,
        }
        | cache_headers(first.cache_level, first.similarity, first.cache_entry)
    )
    await response.prepare(request)
    head = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": first.model or model,  # the model answering, from the first chunk on
    }

    async def send(payload: dict[str, Any]) -> None:
        await response.write(b"data: " + _encoder.encode(head | payload) + b"\n\n")

    def choice(
        delta: dict[str, Any], finish: str | None = None, scores: Any = None
    ) -> dict[str, Any]:
        return {
            "choices": [{"index": 0, "delta": delta, "logprobs": scores, "finish_reason": finish}]
        }

    def delta_of(piece: StreamDelta, role: bool = False) -> dict[str, Any]:
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        if piece.text or not piece.tool_calls:
            delta["content"] = piece.text
        if piece.tool_calls and legacy:
            first = piece.tool_calls[0]
            function: dict[str, Any] = {"arguments": first.arguments}
            if first.name:
                function["name"] = first.name
            delta["function_call"] = function
        elif piece.tool_calls:
            delta["tool_calls"] = [_call_delta(c) for c in piece.tool_calls]
        return delta

    def scored(piece: StreamDelta) -> Any:
        return _scores(piece.logprobs) if piece.logprobs else None

    await send(choice(delta_of(first, role=True), scores=scored(first)))
    try:
        async for reply in replies:
            if isinstance(reply, StreamDelta):
                await send(choice(delta_of(reply), scores=scored(reply)))
            elif isinstance(reply, GenerateResponse):
                head["model"] = reply.model
                finish = reply.finish_reason
                if legacy and finish == "tool_calls":
                    finish = "function_call"
                await send(choice({}, finish))
                if include_usage:
                    await send({"choices": [], "usage": _usage([reply])})
                await response.write(b"data: [DONE]\n\n")
                break
    except GenerateError as exc:
        await _error_event(response, exc.kind, exc.failed.message)
    except Exception as exc:  # the request path broke under the stream
        await _error_event(response, "stream_interrupted", f"{type(exc).__name__}: {exc}")
    await response.write_eof()
    return response


async def _error_event(response: web.StreamResponse, kind: str, message: str) -> None:
    error = {"error": {"message": message, "type": "server_error", "code": kind}}
    await response.write(b"data: " + _encoder.encode(error) + b"\n\n")
