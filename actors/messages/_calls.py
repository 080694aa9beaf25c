"""A router's call of one provider's breaker, and its failure."""

from __future__ import annotations

from bus import Message

from ..providers import ProviderRequest


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
    tokens: int = 0  # an upper estimate of its tokens (prompt and max_tokens): its grant
    # A hedged stream's claim key: of two calls, the first to have text claims it and
    # streams; the other stops there (it never sends text).
    claim: str = ""


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
