"""What every adapter shares: timing, cost, the final-chunk check, error translation."""

from __future__ import annotations

import abc
import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import structlog

from ._catalog import Catalog
from ._config import ProviderConfig, vendor_of
from ._errors import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Unavailable,
)
from ._features import FEATURES, TRANSLATED, features_of
from ._types import (
    Chunk,
    Completion,
    FinishReason,
    ProbeResult,
    ProviderRequest,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["Adapter", "Raw", "RawChunk", "Scored", "error_for_status", "parse_retry_after"]

log = structlog.get_logger("providers")


# What an adapter's SDK-facing stream yields: a text delta, or the end of the answer.
class Scored(NamedTuple):
    """A streamed piece of text with its tokens' log probabilities (when asked for)."""

    text: str
    logprobs: list[TokenLogprob]


RawChunk = str | Scored | ToolCallDelta | tuple[FinishReason, Usage]


class Raw(NamedTuple):
    """One whole answer as an adapter read it."""

    text: str
    finish: FinishReason
    usage: Usage
    tool_calls: list[ToolCall] = []
    logprobs: list[TokenLogprob] = []


class Adapter(abc.ABC):
    """One provider behind the common protocol: ``generate``, ``stream``, ``probe``.

    Subclasses build one SDK client (SDK retries off, the provider's timeout, the
    aiohttp transport where the SDK has one) and implement the ``_`` methods; every
    exception they let through is translated here into a ``ProviderError``.
    """

    name: str

    def __init__(self, config: ProviderConfig, catalog: Catalog, default_model: str) -> None:
        self.config = config
        self.catalog = catalog
        self.default_model = default_model
        self.timeout = config.timeout_ms / 1000
        self._secret = str(config.api_key)

    # -- to implement ----------------------------------------------------------------

    @abc.abstractmethod
    async def _generate(self, request: ProviderRequest, model: str) -> Raw:
        """Content, finish reason and usage of one whole answer."""

    @abc.abstractmethod
    def _stream(self, request: ProviderRequest, model: str) -> AsyncIterator[RawChunk]:
        """Text deltas, then ``(finish_reason, usage)`` once the provider said it ended."""

    async def _embed(self, request: ProviderRequest, model: str) -> tuple[list[bytes], Usage]:
        """Each input's embedding (little-endian float32), in order, and the usage."""
        raise BadRequest(self.name, f"{self.name} has no embeddings API here")

    @abc.abstractmethod
    async def _probe(self) -> str:
        """The cheapest real call that proves the provider answers; returns a detail."""

    @abc.abstractmethod
    def _translate(self, exc: Exception) -> ProviderError | None:
        """The project's error for an SDK exception (None: not the SDK's)."""

    async def close(self) -> None:  # noqa: B027 - not every adapter holds something
        """Release the SDK client."""

    # -- the protocol ----------------------------------------------------------------

    def model_for(self, request: ProviderRequest) -> str:
        return request.model or self.default_model

    def _carried(self, request: ProviderRequest) -> None:
        """``BadRequest`` when the request uses a parameter this adapter does not carry
        to its API: it is refused, never dropped."""
        unknown = features_of(request) - TRANSLATED.get(vendor_of(self.name), frozenset())
        if unknown:
            names = ", ".join(FEATURES[f] + ("" if FEATURES[f] == f else f" {f}")
                              for f in sorted(unknown))  # fmt: skip
            raise BadRequest(self.name, f"{names}: not carried to {self.name} by its adapter")

    async def generate(self, request: ProviderRequest) -> Completion:
        """The whole answer; raises a ``ProviderError``."""
        self._carried(request)
        model = self.model_for(request)
        started = time.perf_counter()
        try:
            content, finish, usage, calls, logprobs = await self._generate(request, model)
        except Exception as exc:
            raise self._error(exc) from exc
        if finish == "content_filter" and not content:
            raise ContentFiltered(self.name, "the provider withheld the answer")
        return Completion(
            content=content,
            tool_calls=calls,
            logprobs=logprobs,
            finish_reason=finish,
            usage=usage,
            cost_usd=self.catalog.cost(model, usage),
            provider=self.name,
            model=model,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def embed(self, request: ProviderRequest) -> Completion:
        """The embeddings of ``request.embed`` (in ``embeddings``); raises a
        ``ProviderError``."""
        self._carried(request)
        model = self.model_for(request)
        started = time.perf_counter()
        try:
            vectors, usage = await self._embed(request, model)
        except Exception as exc:
            raise self._error(exc) from exc
        if len(vectors) != len(request.embed):
            raise ServerError(self.name, f"{len(vectors)} embeddings for {len(request.embed)} "
                              "inputs")  # fmt: skip
        return Completion(
            content="",
            embeddings=vectors,
            finish_reason="stop",
            usage=usage,
            cost_usd=self.catalog.cost(model, usage),
            provider=self.name,
            model=model,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    async def stream(self, request: ProviderRequest) -> AsyncIterator[Chunk]:
        """Text deltas, then one final chunk with finish reason, usage and cost.

        A stream that ends before the provider said it ended (a cut connection, a
        proxy's early close) raises ``Unavailable``: a truncated answer is never
        passed off as complete. Each wait for the next piece is bounded by the
        provider's timeout.
        """
        self._carried(request)
        model = self.model_for(request)
        pieces = self._stream(request, model).__aiter__()
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout):
                        raw = await anext(pieces)
                except StopAsyncIteration:
                    raise Unavailable(
                        self.name, "the stream ended before its final event"
                    ) from None
                except TimeoutError as exc:
                    if isinstance(exc, ProviderError):
                        raise
                    raise ProviderTimeout(
                        self.name, f"no stream data within {self.timeout:g}s"
                    ) from exc
                except ProviderError:
                    raise
                except Exception as exc:
                    raise self._error(exc) from exc
                if isinstance(raw, str):
                    if raw:
                        yield Chunk(delta=raw)
                    continue
                if isinstance(raw, ToolCallDelta):
                    yield Chunk(tool_call=raw)
                    continue
                if isinstance(raw, Scored):
                    yield Chunk(delta=raw.text, logprobs=raw.logprobs)
                    continue
                finish, usage = raw
                yield Chunk(
                    finish_reason=finish, usage=usage, cost_usd=self.catalog.cost(model, usage)
                )
                return
        finally:
            await _close(pieces)

    def probe_models(self) -> list[str]:
        """The models a completion probe asks, one call each: the default model (a
        provider with several deployments names each deployment's model)."""
        return [self.default_model]

    async def probe(self) -> ProbeResult:
        """Never raises: a failed probe is a result with ``ok=False``."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                detail = await self._probe()
            ok = True
        except Exception as exc:
            error = exc if isinstance(exc, ProviderError) else self._error(exc)
            detail, ok = f"{error.kind}: {error.message}", False
        return ProbeResult(
            provider=self.name,
            ok=ok,
            latency_ms=(time.perf_counter() - started) * 1000,
            detail=detail,
        )

    # -- errors ------------------------------------------------------------------------

    def _error(self, exc: Exception) -> ProviderError:
        if isinstance(exc, ProviderError):
            return exc
        # The SDK's own words (a provider's error body says what it disliked); the
        # logging's redaction masks the key when a provider echoes it back.
        log.debug("provider.sdk_error", provider=self.name, error=exc)
        error = self._translate(exc)
        if error is None:
            if isinstance(exc, TimeoutError):
                error = ProviderTimeout(self.name, f"no answer within {self.timeout:g}s")
            elif isinstance(exc, ConnectionError | OSError):
                error = Unavailable(self.name, self.redact(f"{type(exc).__name__}: {exc}"))
            else:
                error = ProviderError(self.name, self.redact(f"{type(exc).__name__}: {exc}"))
        error.message = self.redact(error.message)
        error.args = (self.redact(str(error.args[0])),) if error.args else ()
        return error

    def redact(self, text: str) -> str:
        """Keep the API key out of every message that leaves the adapter."""
        return text.replace(self._secret, "***") if self._secret else text


async def _close(iterator: AsyncIterator[Any]) -> None:
    closer = getattr(iterator, "aclose", None)
    if closer is not None:
        # Closing a broken stream may fail again; the first error is the one to report.
        with contextlib.suppress(Exception):
            await closer()


def parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_for_status(
    provider: str, status: int, message: str, retry_after: float | None = None
) -> ProviderError:
    """The error class an HTTP status means, when the body says nothing more precise."""
    if status == 429:
        return RateLimited(provider, message, status=status, retry_after=retry_after)
    if status in (401, 403):
        return AuthenticationFailed(provider, message, status=status)
    if status == 408:
        return ProviderTimeout(provider, message, status=status)
    if status >= 500:
        return ServerError(provider, message, status=status)
    return BadRequest(provider, message, status=status)
