"""HTTP bodies of the gateway: what it accepts, what it answers, how it refuses."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, ClassVar, TypeVar

import msgspec
from aiohttp import web

from bus import BusError, BusUnavailable, RemoteError

from ..messages import (
    Attempt,
    Fallbacks,
    GenerateFailed,
    GenerateResponse,
    LimitState,
    Strategy,
    UserId,
)
from ..providers import (
    CallOptions,
    ChatMessage,
    MaxTokens,
    Stops,
    Temperature,
    TokenLogprob,
    ToolCall,
    TopP,
    check_conversation,
)

T = TypeVar("T")

__all__ = [
    "TURN_SCHEMA",
    "BadInput",
    "GenerateBody",
    "Stop",
    "decode",
    "error_response",
    "failed_response",
    "json_response",
    "limit_headers",
    "request_id_of",
    "response_body",
    "retry_after_header",
]

_encoder = msgspec.json.Encoder()
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class BadInput(Exception):
    """A request the gateway refuses (400 unless said); the message names the field."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


# A conversation's turn that is not the system's, in JSON Schema.
TURN_SCHEMA = {"properties": {"role": {"enum": ["user", "assistant"]}}}

# Up to 4 stop sequences, or one.
Stop = Stops | str | None


class GenerateBody(CallOptions, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``POST /ai-orchestration/generate`` and ``/generate-with-fallback``."""

    prompt: str | None = None
    messages: list[ChatMessage] = []
    user_id: UserId | None = None  # None: the rule of auth.anonymous (or the key's user)
    session_id: UserId | None = None
    model: str = ""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    stop: Stop = None
    # OpenAI's further parameters (CallOptions, inherited): see docs/compatibility.md.
    use_cache: bool | None = None  # None: the configured default (cache.default)
    # The least similarity of a semantic hit (None: cache.semantic.threshold).
    cache_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    strategy: Strategy | None = None
    # The models to fall back to, in order (false: none): see docs/routing.md.
    fallbacks: Fallbacks = None
    # Refused by a rate limit: wait for room within the deadline instead of a 429.
    wait_on_limit: bool | None = None
    # Call the next candidate too when the first has not answered within the hedge delay.
    hedge: bool | None = None
    timeout_ms: Annotated[int, msgspec.Meta(ge=1, le=600_000)] | None = None

    # What the field types cannot say, as JSON Schema for /openapi.json; __post_init__
    # enforces it (with the bus request's own rule): a prompt or messages, not both nor
    # neither, and messages with a user or assistant turn.
    SCHEMA_RULES: ClassVar[dict[str, Any]] = {
        "allOf": [
            {
                "oneOf": [
                    {"required": ["prompt"], "properties": {"prompt": {"type": "string"}}},
                    {"required": ["messages"], "properties": {"messages": {"minItems": 1}}},
                ]
            },
            {"properties": {"messages": {"anyOf": [{"maxItems": 0}, {"contains": TURN_SCHEMA}]}}},
        ]
    }

    def __post_init__(self) -> None:
        check_conversation(self.prompt, self.messages, [], bool(self.tools))

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else (self.stop or [])


class UsageBody(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class AnswerBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    content: str
    provider: str
    model: str
    finish_reason: str
    usage: UsageBody
    cost_usd: float
    tool_calls: list[ToolCall] = []  # only when the model calls tools (finish tool_calls)
    logprobs: list[TokenLogprob] = []  # only when asked for


class OrchestrationBody(msgspec.Struct, kw_only=True):
    request_id: str
    provider_selected: str
    processing_time_ms: float
    cache_hit: bool
    cache_level: str | None  # l1, l2, semantic or coalesced, for a hit
    cache_similarity: float | None  # a semantic hit's
    cache_entry: str | None  # the entry a hit came from
    attempts: list[Attempt]


class ResponseBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The answer of ``/ai-orchestration/generate`` (``fallback``/``reason`` only when set)."""

    response: AnswerBody
    orchestration: OrchestrationBody
    fallback: bool = False
    reason: str = ""


class ErrorDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    message: str
    request_id: str = ""
    attempts: list[Attempt] = []


class ErrorBody(msgspec.Struct, kw_only=True):
    """Every error: ``{"error": {"type", "message"}}`` (and the attempts, when any)."""

    error: ErrorDetail


def decode(raw: bytes, kind: type[T]) -> T:
    """Decode a JSON body; ``BadInput`` names what is wrong and where."""
    if not raw:
        raise BadInput("the request body is empty; send a JSON object")
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise BadInput(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadInput(f"invalid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec's, for bad bytes inside a JSON string
        byte = exc.object[exc.start]
        raise BadInput(f"the body is not valid UTF-8: byte {byte:#04x} in a JSON string") from None


def request_id_of(request: web.Request) -> str | None:
    """The caller's ``X-Request-ID`` if it is usable; ``BadInput`` if it is not."""
    given = request.headers.get("X-Request-ID")
    if given is None:
        return None
    if not _REQUEST_ID.match(given):
        raise BadInput("X-Request-ID: 1 to 128 letters, digits or ._:- please")
    return given


def bus_failure(exc: BusError) -> tuple[int, str, str]:
    """Status, error type and message for a request the bus could not carry through.

    ``unavailable`` only when the request provably did not run (see ``Bus.ask``); any
    other failure came after it was published, so it may have run.
    """
    if isinstance(exc, BusUnavailable):
        return 503, "unavailable", (
            f"the request was not published ({exc}): it did not run and was not charged; "
            "sending it again is safe"
        )  # fmt: skip
    if isinstance(exc, RemoteError):
        why = (f"the worker handling the request stopped before it answered "
               f"({exc.kind}: {exc.message})")  # fmt: skip
    else:
        why = f"the request was published but its answer was lost ({type(exc).__name__}: {exc})"
    return 503, "interrupted", f"{why}; it may have reached a provider"


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=_encoder.encode(body), status=status, headers=headers, content_type="application/json"
    )


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.9g}"


def limit_headers(limits: list[LimitState]) -> dict[str, str]:
    """``X-RateLimit-Limit-*``, ``-Remaining-*`` and ``-Reset-*`` (seconds) per limit,
    named after it: ``requests_per_minute`` -> ``...-Requests-Per-Minute``."""
    headers: dict[str, str] = {}
    for state in limits:
        name = "-".join(part.capitalize() for part in state.name.split("_"))
        headers[f"X-RateLimit-Limit-{name}"] = _number(state.limit)
        headers[f"X-RateLimit-Remaining-{name}"] = _number(state.remaining)
        headers[f"X-RateLimit-Reset-{name}"] = str(math.ceil(state.reset_s))
    return headers


def retry_after_header(retry_after: float | None) -> dict[str, str]:
    """``Retry-After`` in whole seconds, rounded up (a client that waits it is admitted)."""
    return {} if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}


def error_response(
    status: int,
    kind: str,
    message: str,
    *,
    request_id: str = "",
    attempts: list[Attempt] | None = None,
    retry_after: float | None = None,
    limits: list[LimitState] | None = None,
) -> web.Response:
    headers = {"X-Request-ID": request_id} if request_id else {}
    headers |= retry_after_header(retry_after) | limit_headers(limits or [])
    detail = ErrorDetail(type=kind, message=message, request_id=request_id, attempts=attempts or [])
    return json_response(ErrorBody(error=detail), status, headers)


def failed_response(failed: GenerateFailed) -> web.Response:
    return error_response(
        failed.status,
        failed.kind,
        failed.message,
        request_id=failed.request_id,
        attempts=failed.attempts,
        retry_after=failed.retry_after,
        limits=failed.limits,
    )


def response_body(answer: GenerateResponse, processing_time_ms: float) -> ResponseBody:
    usage = answer.usage
    return ResponseBody(
        response=AnswerBody(
            content=answer.content,
            provider=answer.provider,
            model=answer.model,
            finish_reason=answer.finish_reason,
            usage=UsageBody(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                total_tokens=usage.total_tokens,
            ),
            cost_usd=answer.cost_usd,
            tool_calls=answer.tool_calls,
            logprobs=answer.logprobs,
        ),
        orchestration=OrchestrationBody(
            request_id=answer.request_id,
            provider_selected=answer.provider,
            processing_time_ms=round(processing_time_ms, 3),
            cache_hit=answer.cache_hit,
            cache_level=answer.cache_level or None,
            cache_similarity=answer.similarity,
            cache_entry=answer.cache_entry or None,
            attempts=answer.attempts,
        ),
        fallback=answer.fallback,
        reason=answer.reason,
    )
