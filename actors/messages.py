"""Every message of the system, in one tagged union, with its one codec.

On the wire a stream entry is ``{"type": <tag>, "data": <JSON>}`` (see ``bus``);
``python run.py schema`` prints the JSON Schema of all of them. Rules: frozen,
keyword-only Structs; new fields get defaults; a field's type never changes; a new
meaning gets a new tag.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bus import Codec, Failure, Message

from .providers import ChatMessage, Completion, ProviderRequest, Usage
from .providers._types import check_conversation

__all__ = [
    "CODEC",
    "MESSAGE_TYPES",
    "AdmissionAsk",
    "AdmissionVerdict",
    "Attempt",
    "BreakerClosed",
    "BreakerHalfOpen",
    "BreakerOpened",
    "BurstDetected",
    "CallFailed",
    "Failure",
    "GenerateFailed",
    "GenerateRequest",
    "GenerateResponse",
    "LimitState",
    "Ping",
    "Pong",
    "ProviderCall",
    "QuotaExceeded",
    "QuotaWarning",
    "RateLimitExceeded",
    "RequestCancelled",
    "RequestCompleted",
    "Strategy",
    "StreamDelta",
    "UserId",
]

Strategy = Literal["performance", "cost", "round_robin", "weighted"]

# A user or session id, wherever one enters (HTTP bodies and paths, the bus): 1 to 256
# characters, no control character (Unicode Cc). Not `^[^...]*$`: Python's `$` also
# matches before a final newline.
UserId = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=256, pattern=r"^(?![\s\S]*[\x00-\x1f\x7f-\x9f])"),
]


# -- liveness ------------------------------------------------------------------------


class Ping(Message, tag="ping", frozen=True, kw_only=True):
    """Asks an echo actor to answer: proves the bus path, end to end."""

    payload: str = ""


class Pong(Message, tag="pong", frozen=True, kw_only=True):
    """The echo actor's answer to ``Ping``."""

    payload: str = ""
    node: str = ""


# -- the request path ---------------------------------------------------------------


class GenerateRequest(Message, tag="generate.request", frozen=True, kw_only=True):
    """A request for an answer, to ``{ns}:requests`` (the router answers).

    Give ``prompt`` or ``messages``. ``model`` may be a model id, an alias, a tier
    or ``provider/model``; empty: any enabled provider's default model. With
    ``fallback`` the answer is never an error: when every candidate fails it is a
    system response with ``fallback: true``. With ``stream`` the router's replies
    are ``stream.delta`` messages, then the final ``generate.response`` (without
    repeating the text) or ``generate.failed``. The deadline travels on the entry
    (``deadline``, Redis time); ``timeout_ms`` is what the caller asked for.
    """

    request_id: str
    user_id: UserId = "anonymous"
    session_id: UserId | None = None
    prompt: str | None = None
    messages: list[ChatMessage] = []
    model: str = ""
    temperature: Annotated[float, msgspec.Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=1)] | None = None
    stop: list[str] = []
    strategy: Strategy | None = None
    use_cache: bool = True
    fallback: bool = False
    stream: bool = False
    timeout_ms: int | None = None

    def __post_init__(self) -> None:
        check_conversation(self.prompt, self.messages, self.stop)

    def provider_request(self, model: str) -> ProviderRequest:
        """The call to make of one candidate model."""
        return ProviderRequest(
            prompt=self.prompt,
            messages=self.messages,
            model=model,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens,
            stop=self.stop,
            user=self.user_id,
        )

    def texts(self) -> list[str]:
        """Every message text, for token estimates."""
        return [self.prompt] if self.prompt is not None else [m.content for m in self.messages]

    def too_large(self, max_messages: int, max_prompt_chars: int) -> str | None:
        """Why the request is larger than a deployment takes (``router.max_messages``,
        ``router.max_prompt_chars``), or None."""
        if len(self.messages) > max_messages:
            return (f"messages: {len(self.messages)} messages; at most {max_messages} are "
                    f"taken (router.max_messages)")  # fmt: skip
        chars = sum(len(text) for text in self.texts())
        if chars > max_prompt_chars:
            return (f"messages: {chars} characters of prompt; at most {max_prompt_chars} are "
                    f"taken (router.max_prompt_chars)")  # fmt: skip
        return None


class Attempt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One try of one candidate: ``outcome`` is ``ok`` or why it did not answer."""

    provider: str
    model: str
    outcome: str
    latency_ms: float = 0.0
    status: int | None = None
    message: str = ""
    retry_after: float | None = None


class LimitState(msgspec.Struct, frozen=True, kw_only=True):
    """A rate limit or quota as it stands for a user (the X-RateLimit-* headers)."""

    name: str  # requests_per_minute, tokens_per_hour, daily_tokens, monthly_cost, ...
    limit: float
    remaining: float
    reset_s: float  # until it has room again (a window) or starts over (a period)


class GenerateResponse(Message, tag="generate.response", frozen=True, kw_only=True):
    """The router's answer. After a stream, ``content`` is empty (it was streamed)."""

    request_id: str
    content: str
    provider: str
    model: str
    finish_reason: str
    usage: Usage
    cost_usd: float
    processing_time_ms: float
    attempts: list[Attempt] = []
    cache_hit: bool = False
    fallback: bool = False
    reason: str = ""
    handled_by: str = ""  # the process whose router answered
    limits: list[LimitState] = []


class GenerateFailed(Message, tag="generate.failed", frozen=True, kw_only=True):
    """The router could not answer. ``kind`` says why; ``status`` is its HTTP status.

    Kinds: ``no_provider`` (503: every candidate failed or was unavailable),
    ``deadline_exceeded`` (504), ``cancelled`` (499: its caller went away),
    ``bad_request``, ``context_too_long``,
    ``content_filtered`` (400), ``stream_interrupted`` (the stream broke after it
    had started; no other provider can continue it), ``rate_limited`` and
    ``quota_exceeded`` (429), ``admission_unavailable`` (503: the limiter or quota
    keeper could not answer and the policy is fail_closed).
    """

    request_id: str
    kind: str
    message: str
    status: int
    retry_after: float | None = None
    attempts: list[Attempt] = []
    limits: list[LimitState] = []
    limit_type: str = ""  # which limit or quota refused it (rate_limited, quota_exceeded)


class StreamDelta(Message, tag="stream.delta", frozen=True, kw_only=True):
    """A piece of a streamed answer's text."""

    text: str


class ProviderCall(Message, tag="provider.call", frozen=True, kw_only=True):
    """A call for one breaker, to ``{ns}:calls:{provider}``.

    The reply is a ``provider.completion`` or a ``provider.failed``. With
    ``stream_to``, the text goes as ``stream.delta`` replies to that stream and
    correlation id (the gateway's), and the final reply (to the router) carries the
    usage with the text accumulated in ``content``.

    ``attempt_deadline_ms`` (Redis time) is this attempt's budget: the whole answer,
    or for a stream its first text, must come by then, else the call is cut off and
    counts as a timeout. ``cancel_key`` names the caller's exchange: a
    ``request.cancelled`` event with it cancels the call.
    """

    request_id: str
    request: ProviderRequest
    stream_to: str | None = None
    stream_corr: str | None = None
    attempt_deadline_ms: int | None = None
    cancel_key: str = ""


class CallFailed(Message, tag="provider.failed", frozen=True, kw_only=True):
    """A breaker's answer when its provider did not answer (or it did not call it).

    ``kind`` is a provider error kind (``rate_limited``, ``timeout``, ``server_error``,
    ``unavailable``, ``authentication``, ``bad_request``, ``context_too_long``,
    ``content_filtered``) or ``breaker_open`` / ``key_invalid`` when the breaker
    refused. ``started``: a stream had already sent text.
    """

    provider: str
    model: str
    kind: str
    message: str
    status: int | None = None
    retry_after: float | None = None
    latency_ms: float = 0.0
    started: bool = False


# -- admission ------------------------------------------------------------------------


class AdmissionAsk(Message, tag="admission.ask", frozen=True, kw_only=True):
    """To the limiter (``{ns}:limiter``) and the quota keeper (``{ns}:quota``): reserve
    one request, ``tokens`` and ``cost_usd`` for this user, or say why not."""

    request_id: str
    user_id: str
    session_id: str | None = None
    tokens: int
    cost_usd: float
    # What the reservation is known by: the request id and its entry on the requests
    # stream, so that a redelivery of that entry is charged once while a new request
    # reusing the id is charged again ("": the request id).
    reservation_id: str = ""


class AdmissionVerdict(Message, tag="admission.verdict", frozen=True, kw_only=True):
    """The answer to an ``admission.ask``; ``limits`` are the user's, as they stand."""

    admitted: bool
    kind: str = ""  # rate_limited | quota_exceeded
    limit_type: str = ""
    limit: float | None = None
    current: float | None = None
    retry_after_s: float | None = None
    message: str = ""
    limits: list[LimitState] = []


# -- events ---------------------------------------------------------------------------


class RequestCompleted(Message, tag="request.completed", frozen=True, kw_only=True):
    """Published on ``{ns}:events`` for every request, answered or not."""

    request_id: str
    user_id: str
    session_id: str | None = None
    outcome: Literal["ok", "failed", "fallback"]
    provider: str = ""
    model: str = ""
    usage: Usage = Usage()
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    attempts: list[Attempt] = []
    cache_hit: bool = False
    stream: bool = False
    error_kind: str = ""
    ts_ms: int = 0
    reservation_id: str = ""  # the admission reservation to settle ("": the request id)


class RequestCancelled(Message, tag="request.cancelled", frozen=True, kw_only=True):
    """Published on ``{ns}:events`` when a request's caller went away before its answer
    (a client disconnected): whoever works on the exchange ``cancel_key`` (the
    correlation id of the caller's ask) stops, and its provider call is cancelled."""

    request_id: str
    cancel_key: str
    reason: str = ""
    ts_ms: int = 0


class BreakerOpened(Message, tag="breaker.opened", frozen=True, kw_only=True):
    """A provider's breaker opened: calls to it are refused until ``open_until_ms``
    (0: until an admin resets it, for a rejected key or a forced open)."""

    provider: str
    reason: str
    open_until_ms: int = 0
    failure_rate: float | None = None
    slow_call_rate: float | None = None
    calls: int = 0
    key_invalid: bool = False  # the provider rejected the key (401/403)
    forced: bool = False  # an operator forced it open
    ts_ms: int = 0


class BreakerHalfOpen(Message, tag="breaker.half_open", frozen=True, kw_only=True):
    """A provider's breaker lets a few trial calls through."""

    provider: str
    trials: int
    ts_ms: int = 0


class BreakerClosed(Message, tag="breaker.closed", frozen=True, kw_only=True):
    """A provider's breaker closed: its trials succeeded, or an admin reset it."""

    provider: str
    reason: str
    ts_ms: int = 0


# -- alerts ---------------------------------------------------------------------------


class QuotaExceeded(Message, tag="quota.exceeded", frozen=True, kw_only=True):
    """A request was refused for a quota; at most one per user, quota and period.

    ``rejections``: the refusals on that quota in the period so far (this one too).
    """

    user_id: str
    quota_type: str  # monthly_requests, daily_tokens, session_cost, ...
    limit: float
    current: float
    period: str  # monthly | daily | per_session
    resets_at: str  # ISO 8601, UTC ("" for a session: it ends when it idles out)
    request_id: str
    ts: str  # ISO 8601, UTC
    session_id: str | None = None
    rejections: int = 1


class QuotaWarning(Message, tag="quota.warning", frozen=True, kw_only=True):
    """A user crossed the warning share of a quota; once per quota and period."""

    user_id: str
    quota_type: str
    limit: float
    current: float
    share: float
    period: str
    resets_at: str
    request_id: str
    ts: str
    session_id: str | None = None


class RateLimitExceeded(Message, tag="rate-limit.exceeded", frozen=True, kw_only=True):
    """A request was refused for a rate limit; at most one per user, limit and window.

    ``rejections``: the refusals on that limit in the last day (this one too).
    """

    user_id: str
    limit_type: str  # requests_per_minute, tokens_per_hour, burst, ...
    limit: float
    current: float
    window_s: float
    retry_after_s: float | None
    request_id: str
    ts: str
    rejections: int = 1


class BurstDetected(Message, tag="burst.detected", frozen=True, kw_only=True):
    """A user sent more than ``limit`` requests within ``window_s``; the extra ones are
    refused (each also a ``rate-limit.exceeded`` with ``limit_type`` ``burst``). At most
    one per user and burst window."""

    user_id: str
    limit: float
    current: float
    window_s: float
    retry_after_s: float | None
    request_id: str
    ts: str
    rejections: int = 1


MESSAGE_TYPES: tuple[type[Message], ...] = (
    Failure,
    Ping,
    Pong,
    GenerateRequest,
    GenerateResponse,
    GenerateFailed,
    StreamDelta,
    ProviderRequest,
    ProviderCall,
    Completion,
    CallFailed,
    RequestCompleted,
    RequestCancelled,
    BreakerOpened,
    BreakerHalfOpen,
    BreakerClosed,
    AdmissionAsk,
    AdmissionVerdict,
    QuotaExceeded,
    QuotaWarning,
    RateLimitExceeded,
    BurstDetected,
)

CODEC = Codec(MESSAGE_TYPES)
