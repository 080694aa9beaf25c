"""One vocabulary for how calls and requests fail: each kind, and all that follows from it.

A provider call fails with a ``CallFailed.kind`` and a request with a
``GenerateFailed.kind``; both are written on the wire as plain strings (a consumer in
another language may know more kinds than this table). Everything that depends on a
kind (its HTTP status, OpenAI's error type, what the router does next, whether it was
refused at admission, whether a fallback answer may stand in for it, the Python
exception a caller gets) reads ``KINDS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ._errors import (
    AdmissionUnavailable,
    DeadlineExceeded,
    GenerateError,
    InvalidRequest,
    NoProviderAvailable,
    QuotaError,
    RateLimitError,
    StreamInterrupted,
)

__all__ = ["KINDS", "CallFailure", "Chain", "Kind", "RequestFailure", "kind_of"]

# Why a provider call did not answer (the breaker's CallFailed.kind).
CallFailure = Literal[
    "rate_limited", "timeout", "server_error", "unavailable", "authentication",
    "bad_request", "context_too_long", "content_filtered", "cancelled",
    "breaker_open", "key_invalid", "provider_down", "unsupported", "invalid_output",
]  # fmt: skip
# Why a request got no answer (the router's GenerateFailed.kind).
RequestFailure = Literal[
    "no_provider", "deadline_exceeded", "cancelled", "bad_request", "model_not_found",
    "context_too_long",
    "content_filtered", "stream_interrupted", "rate_limited", "quota_exceeded",
    "admission_unavailable", "invalid_output",
]  # fmt: skip
# What a failed call means for the chain of candidates: the request itself is at fault
# (final), another candidate may do (next), or the same one again (retry).
Chain = Literal["final", "next", "retry"]


@dataclass(frozen=True, slots=True)
class Kind:
    """Everything that follows from one kind of failure."""

    status: int  # HTTP status of a request that ends this way
    openai_type: str  # OpenAI's error ``type`` for it
    chain: Chain = "retry"  # a call that fails this way
    refused: bool = False  # refused at admission: never made, charged nothing
    fallback: bool = True  # generate-with-fallback may answer instead (a limit: never)
    error: type[GenerateError] = GenerateError  # what a Python caller gets
    openai_code: str = ""  # OpenAI's error ``code`` for it, where it has its own name


_BAD = "invalid_request_error"
_SERVER = "server_error"

KINDS: Mapping[str, Kind] = {
    # the request itself is at fault: another provider would refuse it too
    "bad_request": Kind(400, _BAD, "final", error=InvalidRequest),
    "model_not_found": Kind(404, _BAD, "final", error=InvalidRequest),
    "content_filtered": Kind(400, _BAD, "final", error=InvalidRequest),
    # too long for this model: another may take it (one with a larger window)
    "context_too_long": Kind(
        400, _BAD, "next", error=InvalidRequest, openai_code="context_length_exceeded"
    ),
    # a limit: a provider's 429 moves on; ours refuses the request, never hidden
    "rate_limited": Kind(
        429, "rate_limit_error", "next", refused=True, fallback=False, error=RateLimitError
    ),
    "quota_exceeded": Kind(
        429, "rate_limit_error", "final", refused=True, fallback=False, error=QuotaError
    ),
    "admission_unavailable": Kind(503, _SERVER, "final", refused=True, error=AdmissionUnavailable),
    # this provider cannot answer now: the next one
    "breaker_open": Kind(503, _SERVER, "next"),
    "key_invalid": Kind(503, _SERVER, "next"),
    "provider_down": Kind(503, _SERVER, "next"),  # the health prober found it down
    # an answer that is not the JSON the request asked for: never served; another may do
    "invalid_output": Kind(502, _SERVER, "next"),
    # the candidate cannot take a parameter the request uses (left out by the planner)
    "unsupported": Kind(400, _BAD, "next", error=InvalidRequest),
    "authentication": Kind(503, _SERVER, "next"),
    # worth another try (a timeout moves on while other candidates remain: the router)
    "timeout": Kind(503, _SERVER, "retry"),
    "server_error": Kind(503, _SERVER, "retry"),
    "unavailable": Kind(503, _SERVER, "retry"),
    # the request's own ends
    "cancelled": Kind(499, _SERVER, "final"),
    "deadline_exceeded": Kind(504, "timeout", "final", error=DeadlineExceeded),
    "no_provider": Kind(503, _SERVER, "final", error=NoProviderAvailable),
    "stream_interrupted": Kind(503, _SERVER, "final", error=StreamInterrupted),
}

_UNKNOWN = Kind(503, _SERVER)


def kind_of(name: str) -> Kind:
    """The entry of a kind; one this table does not know is a retryable server error."""
    return KINDS.get(name, _UNKNOWN)
