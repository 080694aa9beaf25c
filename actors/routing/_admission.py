"""The router's admission step: limiter and quota keeper asked at once, in parallel."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgspec
import structlog

from bus import AskTimeout, Bus, BusError, Message

from ..messages import (
    AdmissionAsk,
    AdmissionVerdict,
    CacheAnswer,
    CacheLookup,
    GenerateRequest,
    LimitState,
    RequestFailure,
    cache_stream,
    kind_of,
    limiter_stream,
    quota_stream,
)
from ..providers import Catalog, UnknownModel
from ..runtime import AdmissionConfig, Metrics
from ._planner import Candidate

__all__ = ["Admission", "AdmissionResult"]

log = structlog.get_logger("admission")


@dataclass(frozen=True, slots=True)
class AdmissionResult:
    """Admitted or not; when not, why (kind, message, HTTP status, when to retry)."""

    admitted: bool
    kind: RequestFailure = "admission_unavailable"  # when not admitted
    limit_type: str = ""
    message: str = ""
    status: int = 200
    retry_after: float | None = None
    limits: list[LimitState] = field(default_factory=list)
    cache: CacheAnswer | None = None  # the cache's answer, when it was asked
    charged: bool = False  # nothing reserved (a hit not counted): nothing to settle
    quota_refused: bool = False  # a quota refused it too (waiting for a rate limit won't do)


class Admission:
    """Reserves a request's estimated tokens and worst-case cost with the limiter and the
    quota keeper, both asked in one round trip.

    The estimate: the prompt's tokens (an upper estimate) plus the call's ``max_tokens``
    (the request's, else ``default_max_tokens``, as the router sets it on the call),
    the most of any candidate; the cost: the dearest candidate's price for that. Refused
    by either: refused (the other's reservation is released when the router reports
    the request refused). No answer within ``timeout_ms``: the unanswered ask is sent
    once more (same reservation id: charged once, whoever runs it); no answer to that
    within ``timeout_ms`` either: the policy decides.

    With ``cache``, the cache is asked in the same round trip (``cache.lookup``); no
    answer from it is a miss that will not be stored.
    """

    def __init__(
        self,
        bus: Bus,
        config: AdmissionConfig,
        catalog: Catalog,
        metrics: Metrics,
        *,
        cache: bool = False,
        default_max_tokens: int = 4_096,
        tier_waits: dict[str, bool] | None = None,
    ):
        self.bus = bus
        self.tier_waits = tier_waits or {}
        self.default_max_tokens = default_max_tokens
        self.cache = cache
        self.config = config
        self.catalog = catalog
        self.metrics = metrics
        metrics.describe("aio_admissions_total", "Admission decisions, by result")
        metrics.describe(
            "aio_admission_retries_total", "Admission asks sent again after going unanswered"
        )

    def waits(self, request: GenerateRequest) -> bool:
        """Whether a request refused by a rate limit waits for room (its own say, its
        tier's, or admission.wait_on_limit)."""
        if request.wait_on_limit is not None:
            return request.wait_on_limit
        return self.tier_waits.get(request.tier, self.config.wait_on_limit)

    def ask_for(
        self,
        request: GenerateRequest,
        candidates: list[Candidate],
        reservation_id: str = "",
        prompt_tokens: int | None = None,
    ) -> AdmissionAsk:
        prompt = prompt_tokens
        if prompt is None:
            prompt = request.prompt_estimate()
        output, cost = 0, 0.0
        if candidates:  # the model asked for: a fallback model, if it answers, settles
            first = min(c.step for c in candidates)
            candidates = [c for c in candidates if c.step == first]
        for candidate in candidates:
            tokens = 0 if request.embed else self.catalog.output_tokens(
                candidate.model, request.max_tokens, self.default_max_tokens
            )  # fmt: skip
            output = max(output, tokens)
            try:
                info = self.catalog.get(candidate.model)
            except UnknownModel:
                continue
            cost = max(cost, info.cost(prompt, min(tokens, info.max_output_tokens)))
        if not candidates and not request.embed:
            output = request.max_tokens or self.default_max_tokens
        return AdmissionAsk(
            request_id=request.request_id,
            user_id=request.user_id,
            session_id=request.session_id,
            tokens=prompt + output,
            cost_usd=cost,
            reservation_id=reservation_id,
            tier=request.tier,
        )

    async def admit(
        self,
        request: GenerateRequest,
        candidates: list[Candidate],
        reservation_id: str = "",
        prompt_tokens: int | None = None,
        lease_ms: int = 60_000,
        *,
        lookup: bool = True,
        answered: bool = False,
    ) -> AdmissionResult:
        """``lease_ms``: what is left of the request's deadline (how long it may lead
        identical requests, for the cache); ``lookup``: ask the cache too; ``answered``:
        the answer is in hand (from the cache): reserve one request, no tokens and no
        cost. Reserved, not charged for good: should the request still fail (admission
        unanswered, Redis stalled), its completion releases it like any other."""
        ask = self.ask_for(request, candidates, reservation_id, prompt_tokens)
        if answered:
            ask = msgspec.structs.replace(ask, tokens=0, cost_usd=0.0)
        timeout = self.config.timeout_ms / 1000
        names = self.bus.names
        answers: list[Message | Exception]
        asks: list[tuple[str, Message]] = [(limiter_stream(names), ask), (quota_stream(names), ask)]
        # use_cache False says no itself; embeddings are never cached.
        cache = lookup and self.cache and request.use_cache is not False and not request.embed
        if cache:
            asks.append((cache_stream(names), CacheLookup(request=request, lease_ms=lease_ms)))
        started = time.monotonic()
        try:  # every ask in one round trip
            answers = list(await self.bus.ask_all(asks, timeout))
        except BusError as exc:  # Redis is down
            answers = [exc, exc]
        left = lease_ms / 1000 - (time.monotonic() - started)  # of the request's deadline
        if ask.reservation_id and left > 0:
            await self._ask_again(asks, answers, min(timeout, left), request.request_id)
        cached: CacheAnswer | None = None
        if cache and len(answers) == 3:
            found = answers.pop()
            if isinstance(found, CacheAnswer):
                cached = found
            else:
                log.info("admission.cache_unavailable", request_id=request.request_id,
                         error=repr(found))  # fmt: skip
        limits: list[LimitState] = []
        refused: AdmissionVerdict | None = None
        broken: list[Exception] = []
        for answer in answers:
            if isinstance(answer, AdmissionVerdict):
                limits.extend(answer.limits)
                if not answer.admitted and refused is None:
                    refused = answer
            elif isinstance(answer, Exception):
                broken.append(answer)
            else:
                broken.append(TypeError(f"not a verdict: {type(answer).__name__}"))
        if refused is not None:
            self.metrics.inc("aio_admissions_total", result=refused.kind)
            kind: RequestFailure = (
                "quota_exceeded" if refused.kind == "quota_exceeded" else "rate_limited"
            )
            over_quota = any(isinstance(a, AdmissionVerdict) and not a.admitted
                             and a.kind == "quota_exceeded" for a in answers)  # fmt: skip
            return AdmissionResult(
                admitted=False,
                kind=kind,
                quota_refused=over_quota,
                limit_type=refused.limit_type,
                message=refused.message,
                status=kind_of(kind).status,
                retry_after=refused.retry_after_s,
                limits=limits,
                cache=cached,  # its ticket goes out with the refusal: a lead is handed on
            )
        if broken:
            policy = self.config.policy
            log.warning(
                "admission.unavailable", policy=policy, request_id=request.request_id,
                error=repr(broken[0]),
            )  # fmt: skip
            self.metrics.inc("aio_admissions_total", result=f"unavailable_{policy}")
            if policy == "fail_closed":
                return AdmissionResult(
                    admitted=False,
                    kind="admission_unavailable",
                    message=f"limits and quotas could not be checked: {broken[0]}",
                    status=kind_of("admission_unavailable").status,
                    limits=limits,
                    cache=cached,
                )
            return AdmissionResult(admitted=True, limits=limits, cache=cached)
        self.metrics.inc("aio_admissions_total", result="admitted")
        return AdmissionResult(admitted=True, limits=limits, cache=cached)

    async def _ask_again(
        self,
        asks: list[tuple[str, Message]],
        answers: list[Message | Exception],
        timeout: float,
        request_id: str,
    ) -> None:
        """Send the limiter's or quota keeper's ask once more when it went unanswered.

        The process that took it may have died with it (its entry is taken over only
        after the bus's claim idle time, past this timeout) or be stalled; a live one
        answers the new entry. Both carry the reservation id, so whichever runs second
        finds the first's reservation (or its release) and charges nothing more.
        """
        again = [i for i in (0, 1) if isinstance(answers[i], AskTimeout)]
        if not again:
            return
        log.info("admission.asked_again", request_id=request_id,
                 of=[asks[i][0] for i in again])  # fmt: skip
        self.metrics.inc("aio_admission_retries_total")
        try:
            second = await self.bus.ask_all([asks[i] for i in again], timeout)
        except BusError as exc:
            second = [exc for _ in again]
        for i, answer in zip(again, second, strict=True):
            answers[i] = answer
