"""The request path: requests, answers, failures, stream pieces, and liveness."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import msgspec

from bus import Message

from ..providers import (
    CallOptions,
    ChatMessage,
    Dimensions,
    EmbedInputs,
    MaxTokens,
    ProviderRequest,
    Stops,
    Temperature,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopP,
    Usage,
    check_conversation,
    check_embedding,
    check_logprobs,
    estimate_prompt_tokens,
    estimate_tokens,
    extras_of,
    features_of,
)

_IMAGE_AS_TEXT = "image " * 1_600

Strategy = Literal["performance", "cost", "round_robin", "weighted"]
# A request's own fallback chain: models (ids, aliases, provider/model), or false.
Fallbacks = bool | Annotated[list[str], msgspec.Meta(max_length=16)] | None

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


class GenerateRequest(Message, CallOptions, tag="generate.request", frozen=True, kw_only=True):
    """A request for an answer, to ``{ns}:requests`` (the router answers).

    Give ``prompt`` or ``messages``. ``model`` may be a model id, an alias, a tier
    or ``provider/model``; empty: any enabled provider's default model. With
    ``fallback`` the answer is never an error: when every candidate fails it is a
    system response with ``fallback: true``. With ``stream`` the router's replies
    are ``stream.delta`` messages, then the final ``generate.response`` (without
    repeating the text) or ``generate.failed``. The deadline travels on the entry
    (``deadline``, Redis time); ``timeout_ms`` is what the caller asked for.
    ``request_id`` is a fresh one when not given.
    """

    request_id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)
    user_id: UserId = "anonymous"
    session_id: UserId | None = None
    tier: str = ""  # the user's tier, from its client key (the gateway sets it)
    prompt: str | None = None
    messages: list[ChatMessage] = []
    model: str = ""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    stop: Stops = []
    # OpenAI's further parameters (CallOptions) go only to candidates that take each
    # one used, else the request is refused naming it; with logprobs, never from the
    # cache (a cached answer has none).
    strategy: Strategy | None = None
    use_cache: bool | None = None  # None: the configured default (cache.default)
    # The least similarity of a semantic hit for this request (None: cache.semantic's).
    cache_threshold: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    fallback: bool = False
    # The models to fall back to, in order, instead of the model's configured chain;
    # false: none (the model's own providers only). A provider/model never crosses.
    fallbacks: Fallbacks = None
    # Refused only by a rate limit: wait for room within the deadline instead of
    # failing (None: as the user's tier or admission.wait_on_limit says).
    wait_on_limit: bool | None = None
    # Hedge: when the first call has not answered within the hedge delay, call the next
    # candidate too and take the first answer (None: router.hedge and hedge_models).
    hedge: bool | None = None
    stream: bool = False
    timeout_ms: int | None = None
    # Inputs to embed instead of a conversation: the answer is their embeddings (from
    # an embedding model: ``model`` names one), through admission, limits and quotas
    # like any request, never from the cache.
    embed: EmbedInputs = []
    dimensions: Dimensions | None = None

    def __post_init__(self) -> None:
        if self.fallbacks is True:
            raise ValueError("fallbacks: give the models to fall back to, or false for none")
        if self.embed:
            check_embedding(self.prompt, self.messages, self.embed, bool(self.tools))
            if self.stream or self.fallback:
                raise ValueError("`embed`: embeddings are neither streamed nor a fallback's")
        else:
            check_conversation(self.prompt, self.messages, self.stop, bool(self.tools))
            if self.dimensions is not None:
                raise ValueError("dimensions: only for `embed`")
        check_logprobs(self.logprobs, self.top_logprobs)

    def provider_request(self, model: str, max_tokens: int | None = None) -> ProviderRequest:
        """The call to make of one candidate model (``max_tokens``: the call's, when the
        request sets none)."""
        return ProviderRequest(
            prompt=self.prompt,
            messages=self.messages,
            model=model,
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_tokens if self.max_tokens is not None else max_tokens,
            stop=self.stop,
            user=self.user_id,
            embed=self.embed,
            dimensions=self.dimensions,
            **extras_of(self),
        )

    def prompt_estimate(self) -> int:
        """An upper estimate of the prompt's tokens: a conversation's, or the inputs'
        to embed (no per-message overhead; token ids counted exactly)."""
        if self.embed:
            return sum(self.input_estimates())
        return estimate_prompt_tokens(self.texts())

    def input_estimates(self) -> list[int]:
        """Each input to embed's token estimate (a model's window bounds each alone)."""
        return [estimate_tokens(t) if isinstance(t, str) else len(t) for t in self.embed]

    def features(self) -> set[str]:
        """The features (beyond text and sampling) the request uses."""
        return features_of(self)

    def texts(self) -> list[str]:
        """Every message text (tool calls' arguments and the tools' definitions too),
        for token estimates."""
        if self.embed:
            # Token ids count one token each: as many characters of a word would.
            return [t if isinstance(t, str) else "a " * len(t) for t in self.embed]
        if self.prompt is not None:
            texts = [self.prompt]
        else:
            texts = [m.content for m in self.messages]
            for message in self.messages:
                if message.tool_calls:
                    texts.extend(c.name + c.arguments for c in message.tool_calls)
                # An image costs up to about 1,600 tokens (OpenAI's high detail, a
                # large Claude image): each is counted as that much text.
                texts.extend(_IMAGE_AS_TEXT for _image in message.images)
        if self.tools:
            texts.append(msgspec.json.encode(self.tools).decode())
        return texts

    def too_large(self, max_messages: int, max_prompt_chars: int) -> str | None:
        """Why the request is larger than a deployment takes (``router.max_messages``,
        ``router.max_prompt_chars``), or None."""
        if len(self.messages) > max_messages:
            return (f"messages: {len(self.messages)} messages; at most {max_messages} are "
                    f"taken (router.max_messages)")  # fmt: skip
        chars = sum(len(text) for text in self.texts())
        if chars > max_prompt_chars:
            what = "input" if self.embed else "messages"
            return (f"{what}: {chars} characters of prompt; at most {max_prompt_chars} are "
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
    first_token_ms: float | None = None  # a stream's: until its first text
    hedge: bool = False  # a hedged call: made while an earlier one was still out


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
    tool_calls: list[ToolCall] = []  # the model's calls of tools (finish_reason tool_calls)
    logprobs: list[TokenLogprob] = []  # the answer's tokens, when asked for
    # An embedding request's vectors, one per input in order: little-endian float32.
    embeddings: list[bytes] = []
    # The model asked for, when a model of its fallback chain answered instead.
    fallback_from: str = ""
    cache_hit: bool = False
    cache_level: str = ""  # l1, l2, semantic or coalesced, for a hit
    similarity: float | None = None  # a semantic hit's
    cache_entry: str = ""  # the entry a hit came from
    fallback: bool = False
    reason: str = ""
    handled_by: str = ""  # the process whose router answered
    limits: list[LimitState] = []


class GenerateFailed(Message, tag="generate.failed", frozen=True, kw_only=True):
    """The router could not answer. ``kind`` says why; ``status`` is its HTTP status.

    Kinds: ``no_provider`` (503: every candidate failed or was unavailable),
    ``model_not_found`` (404: no model, alias or tier of that name),
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
    model: str = ""  # on the first piece: the model answering (a tier or alias resolved)
    tool_calls: list[ToolCallDelta] = []  # pieces of tool calls (OpenAI's chunk format)
    logprobs: list[TokenLogprob] = []  # the piece's tokens, when asked for
    cache_level: str = ""  # on the first piece of a cached answer replayed: its level
    similarity: float | None = None  # ... and a semantic hit's similarity
    cache_entry: str = ""  # ... and the entry it came from


FALLBACK_TEXT = (
    "I'm sorry, no language model is available to answer right now. Please try again shortly."
)


def fallback_answer(
    request_id: str, reason: str, attempts: list[Attempt], processing_time_ms: float = 0.0
) -> GenerateResponse:
    """The system's own answer when no provider can give one."""
    return GenerateResponse(
        request_id=request_id,
        content=FALLBACK_TEXT,
        provider="system",
        model="fallback",
        finish_reason="stop",
        usage=Usage(),
        cost_usd=0.0,
        processing_time_ms=processing_time_ms,
        attempts=attempts,
        fallback=True,
        reason=reason,
    )
