"""Every message of the system, in one tagged union, with its one codec.

On the wire a stream entry is ``{"type": <tag>, "data": <JSON>}`` (see ``bus``);
``python run.py schema`` prints the JSON Schema of all of them. Rules: frozen,
keyword-only Structs; new fields get defaults; a field's type never changes; a new
meaning gets a new tag.
"""

from bus import Codec, Failure, Message

from ..providers import Completion, ProviderRequest
from ._admin import (
    AdminRefused,
    BreakerCommand,
    BreakerReport,
    LimitsCommand,
    LimitsReport,
    QuotaRow,
    RateLimitRow,
)
from ._admission import AdmissionAsk, AdmissionVerdict
from ._alerts import BurstDetected, QuotaExceeded, QuotaWarning, RateLimitExceeded
from ._calls import CallFailed, ProviderCall
from ._errors import (
    AdmissionUnavailable,
    DeadlineExceeded,
    GenerateError,
    InvalidRequest,
    LimitError,
    NoProviderAvailable,
    QuotaError,
    RateLimitError,
    StreamInterrupted,
)
from ._events import (
    BreakerClosed,
    BreakerHalfOpen,
    BreakerOpened,
    RequestCancelled,
    RequestCompleted,
)
from ._kinds import KINDS, CallFailure, Chain, Kind, RequestFailure, kind_of
from ._request import (
    FALLBACK_TEXT,
    Attempt,
    GenerateFailed,
    GenerateRequest,
    GenerateResponse,
    LimitState,
    Ping,
    Pong,
    Strategy,
    StreamDelta,
    UserId,
    fallback_answer,
)
from ._streams import limiter_stream, quota_stream

__all__ = [
    "CODEC",
    "FALLBACK_TEXT",
    "KINDS",
    "MESSAGE_TYPES",
    "AdminRefused",
    "AdmissionAsk",
    "AdmissionUnavailable",
    "AdmissionVerdict",
    "Attempt",
    "BreakerClosed",
    "BreakerCommand",
    "BreakerHalfOpen",
    "BreakerOpened",
    "BreakerReport",
    "BurstDetected",
    "CallFailed",
    "CallFailure",
    "Chain",
    "DeadlineExceeded",
    "Failure",
    "GenerateError",
    "GenerateFailed",
    "GenerateRequest",
    "GenerateResponse",
    "InvalidRequest",
    "Kind",
    "LimitError",
    "LimitState",
    "LimitsCommand",
    "LimitsReport",
    "NoProviderAvailable",
    "Ping",
    "Pong",
    "ProviderCall",
    "QuotaError",
    "QuotaExceeded",
    "QuotaRow",
    "QuotaWarning",
    "RateLimitError",
    "RateLimitExceeded",
    "RateLimitRow",
    "RequestCancelled",
    "RequestCompleted",
    "RequestFailure",
    "Strategy",
    "StreamDelta",
    "StreamInterrupted",
    "UserId",
    "fallback_answer",
    "kind_of",
    "limiter_stream",
    "quota_stream",
]

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
    BreakerCommand,
    BreakerReport,
    LimitsCommand,
    LimitsReport,
    AdminRefused,
)

CODEC = Codec(MESSAGE_TYPES)
