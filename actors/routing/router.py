"""The router actor: picks providers, follows fallback chains, retries, keeps deadlines."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from bus import (
    REDIS_DOWN,
    AskTimeout,
    Backoff,
    Bus,
    BusUnavailable,
    Delivery,
    Message,
    Rejected,
    RemoteError,
)

from ..messages import (
    Attempt,
    CacheAnswer,
    CacheTicket,
    CallFailed,
    GenerateFailed,
    GenerateRequest,
    GenerateResponse,
    LimitState,
    ProviderCall,
    RequestCancelled,
    RequestFailure,
    fallback_answer,
    kind_of,
)
from ..providers import (
    Catalog,
    Completion,
    ProviderConfig,
    UnknownModel,
)
from ..runtime import Actor, span
from ..runtime.config import RouterConfig
from ._admission import Admission, AdmissionResult
from ._attempt import ask_breaker
from ._cached import completed, follow, from_cache
from ._inflight import InFlight
from ._output import invalid_output, invalid_schema
from ._planner import Candidate, Planner, Unsupported, WrongKind

__all__ = ["Router"]

# How much longer than an attempt's budget the router waits for its breaker's answer
# (the breaker cuts the call off at the budget and says so).
_REPLY_SLACK_MS = 500

# How long a request's completion event (which settles its reservations) is sent
# again while Redis is unreachable.
_SETTLE_RETRY_S = 60.0


class Router(Actor):
    """Answers ``generate.request`` from ``{ns}:requests``.

    For each candidate of the plan (see ``Planner``) it asks that provider's breaker,
    retrying errors worth retrying with exponential backoff and jitter (never sooner
    than a Retry-After) while the request's deadline allows, then moves down the
    chain. Every request ends in a ``request.completed`` event.

    Each attempt has a budget: while other candidates remain, ``attempt_share`` of what
    is left of the deadline, and never more than its provider's ``timeout_ms`` (a
    stream's first text: ``first_token_timeout_ms``). The breaker cuts the call off
    there, and a provider that timed out is not retried while another candidate
    remains. When the caller goes away (``request.cancelled``) the request stops and
    its provider call is cancelled.
    """

    group: ClassVar[str] = "router"

    def __init__(
        self,
        bus: Bus,
        planner: Planner,
        config: RouterConfig,
        providers: Mapping[str, ProviderConfig],
        admission: Admission | None = None,
        inflight: InFlight | None = None,
        *,
        recall: Callable[[GenerateRequest, int], CacheAnswer | None] | None = None,
    ) -> None:
        super().__init__(bus, stream=bus.names.requests, concurrency=config.concurrency)
        self.planner = planner
        self.config = config
        self.providers = providers
        self.admission = admission
        self.inflight = inflight or InFlight()
        # This process's memory of answers, asked before admission: a hit needs no
        # cache ask.
        self.recall = recall
        self.chain_on = frozenset(config.fallback_on)
        self._waiting: dict[str, _Queue] = {}  # users with requests waiting for room
        catalog = planner.catalog
        self._hedge_models = {catalog.canonical(m) or m for m in config.hedge_models}

    async def handle(self, message: Message, delivery: Delivery) -> Message | None:
        match message:
            case GenerateRequest():
                with span(f"route {message.model or 'default'}", gen_ai__operation__name="chat",
                          gen_ai__request__model=message.model or None):  # fmt: skip
                    return await self._answer(message, delivery)
            case _:
                raise Rejected(
                    f"router does not take {type(message).__name__} (on {delivery.stream})"
                )

    async def _answer(self, request: GenerateRequest, delivery: Delivery) -> Message:
        started = time.perf_counter()
        # The deadline runs from when the request was published (its entry id is the
        # Redis time of the XADD), so a request taken over after a crash keeps it.
        timeout_ms = request.timeout_ms or self.config.request_timeout_ms
        deadline_ms = int(delivery.entry_id.partition("-")[0]) + timeout_ms
        if delivery.deadline_ms is not None:
            deadline_ms = min(deadline_ms, delivery.deadline_ms)
        too_large = request.too_large(self.config.max_messages, self.config.max_prompt_chars)
        too_large = too_large or invalid_schema(request.response_format)
        if too_large is not None:
            return self._finish(request, self._failed(request, "bad_request", too_large, []),
                                started)  # fmt: skip
        # Estimated once: the cost strategy and admission both price the prompt.
        prompt_tokens = request.prompt_estimate()
        try:
            candidates, attempts = self.planner.plan(request, prompt_tokens)
        except UnknownModel as exc:
            return self._finish(
                request, self._failed(request, "model_not_found", f"model: {exc}", []), started
            )
        except WrongKind as exc:
            return self._finish(request, self._failed(request, "bad_request", str(exc), []),
                                started)  # fmt: skip
        except Unsupported as exc:  # no candidate takes a parameter it uses
            return self._finish(
                request, self._failed(request, "bad_request", str(exc), exc.lacking), started
            )
        self.log.debug("router.plan", model=request.model, candidates=candidates,
                       prompt_tokens=prompt_tokens, timeout_ms=timeout_ms)  # fmt: skip
        limits: list[LimitState] = []
        # A redelivery of this entry is the same request; the same id in a new entry
        # is a new one.
        reservation = f"{request.request_id}@{delivery.entry_id}"
        cached: CacheAnswer | None = None
        if candidates and self.admission is not None:
            admitted = await self._admit(request, candidates, reservation, prompt_tokens,
                                         deadline_ms)  # fmt: skip
            if _may_wait(admitted) and self.admission.waits(request):
                ask_again = functools.partial(self._admit, request, candidates, reservation,
                                              prompt_tokens, deadline_ms, lookup=False)  # fmt: skip
                admitted = await self._wait_for_room(
                    request, ask_again, deadline_ms, admitted, delivery, attempts
                )
            limits = admitted.limits
            if not admitted.admitted:
                refused = self._failed(
                    request, admitted.kind, admitted.message, attempts, admitted.retry_after
                )
                refused = msgspec.structs.replace(
                    refused, status=admitted.status, limit_type=admitted.limit_type
                )
                return self._finish(request, refused, started, limits, reservation,
                                    admitted.cache.ticket if admitted.cache else None)  # fmt: skip
            cached = admitted.cache
            if cached is not None and cached.follow and cached.ticket is not None:
                cached = await follow(self.bus, request, cached, deadline_ms)
            if cached is not None and cached.answer is not None:
                hit = await from_cache(self.bus, request, cached, delivery)
                return self._finish(request, hit, started, limits, reservation,
                                    charged=admitted.charged)  # fmt: skip
        ticket = cached.ticket if cached is not None else None
        course = _Course(
            request=request,
            delivery=delivery,
            deadline_ms=deadline_ms,
            attempts=attempts,
            stream_to=delivery.reply_to if request.stream else None,
            prompt_tokens=prompt_tokens,
        )
        with self.inflight.track(delivery.correlation_id or "", course.gone.set):
            result = await self._down_the_chain(course, candidates)
        return self._finish(request, result, started, limits, reservation, ticket,
                            course.completion, spent=course.spent)  # fmt: skip

    async def _down_the_chain(self, course: _Course, candidates: list[Candidate]) -> Message:
        """Try the candidates in order until one answers or the request must end."""
        request, attempts = course.request, course.attempts
        # The largest context window of a model that found the request too long, and
        # what its provider said: a candidate with no larger window is not tried.
        too_long: tuple[int, str] | None = None
        # The chain step being tried, and why the last attempt failed: at first, why the
        # planner left out the model asked for (its breakers open, say), if it did.
        step, why = 0, ""
        asked = self.planner.catalog.canonical(request.model) or request.model
        for skip in attempts:
            if skip.model == asked and skip.outcome in _CLASS:
                why = _CLASS[skip.outcome]
        hedged = False  # the second candidate was called already, as the first's hedge
        for index, candidate in enumerate(candidates):
            if index == 1 and hedged:
                continue
            if candidate.step != step:
                # Down the fallback chain, to another model: only for the failures
                # configured (router.fallback_on); any other ends the request here.
                if why and why not in self.chain_on:
                    break
                step = candidate.step
            window = _window(self.planner.catalog, candidate.model)
            if too_long is not None and window is not None and window <= too_long[0]:
                attempts.append(_not_larger(candidate, window))
                continue
            before = len(attempts)
            later = any(c.step != candidate.step for c in candidates[index + 1 :])
            # A hedge: the same model elsewhere (or a tier's next), never a chain's model.
            hedge = index == 0 and len(candidates) > 1 and candidates[1].step == candidate.step
            if hedge and self._hedges(course):
                result, hedged = await self._hedged(
                    course, candidate, candidates[1], more=len(candidates) > 2, chained=later
                )
            else:
                result = await self._try(
                    course, candidate, more=index + 1 < len(candidates), chained=later
                )
            if result is not None:
                return result
            last = attempts[-1] if len(attempts) > before else None
            if last is not None:
                why = _CLASS.get(last.outcome, "")
            if last is not None and last.outcome == "context_too_long" and window is not None:
                too_long = (max(window, too_long[0] if too_long else 0), last.message)
            if course.gone.is_set():
                return self._cancelled(course)
            if self.bus.now_ms() >= course.deadline_ms:
                return self._deadline(request, attempts)
        made = [a for a in attempts if a.outcome not in _NOT_TRIED]
        if made and all(a.outcome == "context_too_long" for a in made):
            # Too long for every candidate: the request's fault, never worth a retry.
            said = too_long[1] if too_long is not None else attempts[0].message
            return self._failed(request, "context_too_long", said, attempts)
        why = _why(attempts) if attempts else "no enabled provider serves this model"
        return self._failed(request, "no_provider", why, attempts, _soonest(attempts))

    def _hedges(self, course: _Course) -> bool:
        """Whether the request is hedged: its own say, else router.hedge or its model in
        router.hedge_models."""
        request = course.request
        if request.hedge is not None:
            return request.hedge
        model = self.planner.catalog.canonical(request.model) or request.model
        return self.config.hedge or model in self._hedge_models

    def _hedge_delay_s(self, candidate: Candidate, *, stream: bool = False) -> float:
        delay: float | None = self.config.hedge_delay_ms
        if delay is None:  # a stream: until its first text
            delay = self.planner.latency.p95(candidate.provider, candidate.model, stream)
        return (delay if delay is not None else self.config.hedge_unknown_ms) / 1000

    async def _hedged(
        self, course: _Course, first: Candidate, second: Candidate, *, more: bool, chained: bool
    ) -> tuple[Message | None, bool]:
        """The first candidate; when it has not answered within the hedge delay, the
        second as well, and the first answer wins (the other call is cancelled, and its
        attempt says so). ``(result, whether the second was called)``. A stream is
        hedged only until its first text: the first call with text claims it."""
        corr = course.delivery.correlation_id or ""
        # Each call cancelled on its own key (a breaker also hears the caller's own).
        keys = (f"{corr}#hedge-0", f"{corr}#hedge-1")
        own = (dataclasses.replace(course, completion=None),
               dataclasses.replace(course, completion=None))  # fmt: skip
        claim = ""
        if course.stream_to is not None:
            claim = f"{self.bus.names.ns}:claim:{corr or course.request.request_id}"
        tasks = {asyncio.create_task(self._try(own[0], first, more=True, chained=chained,
                                               cancel_key=keys[0], claim=claim)): 0}  # fmt: skip
        gone: asyncio.Task[Any] = asyncio.create_task(course.gone.wait())
        pending: set[asyncio.Task[Any]] = set(tasks)
        results: dict[int, Message | None] = {}
        winner: int | None = None
        hedged = False
        mark = len(course.attempts)
        try:
            done, _rest = await asyncio.wait(
                pending | {gone}, timeout=self._hedge_delay_s(first, stream=bool(claim)),
                return_when=asyncio.FIRST_COMPLETED,
            )  # fmt: skip
            first_done = bool(done - {gone})
            if not first_done and not gone.done() and claim and await self._claimed(claim):
                # Streaming already: no hedge.
                await asyncio.wait(pending | {gone}, return_when=asyncio.FIRST_COMPLETED)
                first_done = all(t.done() for t in pending)
            if first_done:  # answered (or failed) in time: no hedge
                (task,) = pending
                pending = set()
                course.completion = own[0].completion
                return task.result(), False
            if gone.done():
                return self._cancelled(course), False
            hedged = True
            mark = len(course.attempts)
            second_task = asyncio.create_task(
                self._try(
                    own[1], second, more=more, chained=chained, cancel_key=keys[1], claim=claim
                )
            )
            tasks[second_task] = 1  # fmt: skip
            pending.add(second_task)
            while pending and winner is None and not gone.done():
                done, pending = await asyncio.wait(
                    pending | {gone}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(gone)
                for task in done - {gone}:
                    results[tasks[task]] = task.result()
                    if winner is None and isinstance(results[tasks[task]], GenerateResponse):
                        winner = tasks[task]
        finally:
            gone.cancel()
            await self._let_go(course, {t: tasks[t] for t in pending}, keys, (first, second),
                               noted=hedged, claim=claim)  # fmt: skip
        course.attempts[mark:] = [
            msgspec.structs.replace(a, hedge=True)
            if (a.provider, a.model) == (second.provider, second.model) else a
            for a in course.attempts[mark:]
        ]  # fmt: skip
        if winner is not None:
            course.completion = own[winner].completion
            other = own[1 - winner].completion
            if other is not None:  # both answered: the other was paid for too
                course.spent.append(other)
            return results[winner], True
        if course.gone.is_set():
            return self._cancelled(course), True
        finals = [r for r in results.values() if r is not None]
        # The other call's "cancelled" (it lost a stream's claim) is not the request's end.
        finals.sort(key=lambda r: isinstance(r, GenerateFailed) and r.kind == "cancelled")
        return (finals[0] if finals else None), True

    async def _claimed(self, claim: str) -> bool:
        """Whether a hedged stream's first call has claimed it (has sent text)."""
        try:
            return bool(await self.bus.redis.exists(claim))
        except REDIS_DOWN:
            return False

    async def _let_go(
        self,
        course: _Course,
        calls: dict[asyncio.Task[Any], int],
        keys: tuple[str, str],
        pair: tuple[Candidate, Candidate],
        *,
        noted: bool,
        claim: str,
    ) -> None:
        """A hedge's calls still out, cancelled here and at their breakers (and, once the
        hedge was made, each an attempt that says why); its stream's claim let go."""
        why = ("its caller went away" if course.gone.is_set()
               else "the other call of its hedge answered first")  # fmt: skip
        for task, which in calls.items():
            task.cancel()
            self.bus.publish_soon(self.bus.names.events, RequestCancelled(
                request_id=course.request.request_id, cancel_key=keys[which],
                reason=f"hedge: {why}", ts_ms=self.bus.now_ms()))  # fmt: skip
            if noted:
                loser = pair[which]
                course.attempts.append(Attempt(
                    provider=loser.provider, model=loser.model, outcome="cancelled",
                    hedge=which == 1, message=why))  # fmt: skip
        if calls:
            await asyncio.gather(*calls, return_exceptions=True)
        if claim:
            with contextlib.suppress(*REDIS_DOWN):
                await self.bus.redis.delete(claim)

    async def _wait_for_room(
        self,
        request: GenerateRequest,
        ask_again: Callable[[], Awaitable[AdmissionResult]],
        deadline_ms: int,
        refused: AdmissionResult,
        delivery: Delivery,
        attempts: list[Attempt],
    ) -> AdmissionResult:
        """A request refused by a rate limit asks again when the limit says it will have
        room, while its deadline allows; its user's waiting requests in this process go
        in the order they came (a FIFO lock per user, waited for within the deadline too).
        The last refusal when the deadline would pass first, or the caller went away."""
        started = time.perf_counter()
        gone = asyncio.Event()
        queue = self._waiting.setdefault(request.user_id, _Queue())
        queue.users += 1
        result, why = refused, "the deadline would pass first"
        try:
            with self.inflight.track(delivery.correlation_id or "", gone.set):
                if await _acquired(queue.lock, gone, (deadline_ms - self.bus.now_ms()) / 1000):
                    try:
                        result, why = await self._asked_again(ask_again, deadline_ms, refused, gone)
                    finally:
                        queue.lock.release()
                elif gone.is_set():
                    why = "its caller went away"
        finally:
            queue.users -= 1
            if not queue.users:
                self._waiting.pop(request.user_id, None)
        waited_ms = (time.perf_counter() - started) * 1000
        said = f"waited for room under {refused.limit_type or 'a rate limit'}"
        attempts.append(Attempt(provider="admission", model="", outcome="waited",
                                latency_ms=waited_ms,
                                message=said if result.admitted else f"{said}; {why}"))  # fmt: skip
        return result

    async def _asked_again(
        self,
        ask_again: Callable[[], Awaitable[AdmissionResult]],
        deadline_ms: int,
        refused: AdmissionResult,
        gone: asyncio.Event,
    ) -> tuple[AdmissionResult, str]:
        """Admission asked again each time the limit says it has room; the last answer
        and, if it is a refusal, why waiting stopped."""
        result = refused
        while _may_wait(result):
            wait_s = max(0.001, result.retry_after or 0.0)
            if self.bus.now_ms() + wait_s * 1000 >= deadline_ms:
                return result, "the deadline would pass first"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gone.wait(), wait_s)
            if gone.is_set():
                return result, "its caller went away"
            again = await ask_again()
            # The cache's first answer (a ticket to lead) stays with the request; the
            # quotas' figures too (asked again, the quota keeper has charged it once).
            result = dataclasses.replace(again, cache=refused.cache,
                                         limits=_merged(refused.limits, again.limits))  # fmt: skip
        why = "a quota refused it" if result.quota_refused else f"refused: {result.kind}"
        return result, why

    async def _admit(
        self,
        request: GenerateRequest,
        candidates: list[Candidate],
        reservation: str,
        prompt_tokens: int,
        deadline_ms: int,
        *,
        lookup: bool = True,
    ) -> AdmissionResult:
        """Limits, quotas and the cache in one round trip; an answer in this process's
        memory needs no cache ask, nor any admission when cache hits do not count."""
        assert self.admission is not None
        recall = self.recall if self.recall and lookup and not request.embed else None
        recalled = recall(request, self.bus.now_ms()) if recall else None
        if recalled is not None and not self.admission.config.count_cache_hits:
            return AdmissionResult(admitted=True, cache=recalled, charged=True)
        lease_ms = max(1, deadline_ms - self.bus.now_ms())
        with span("admission"):
            admitted = await self.admission.admit(
                request, candidates, reservation, prompt_tokens, lease_ms,
                lookup=lookup and recalled is None, answered=recalled is not None,
            )  # fmt: skip
        self.log.debug("router.admission", admitted=admitted.admitted, kind=admitted.kind)
        if recalled is not None and admitted.admitted:  # settled by its completion
            return dataclasses.replace(admitted, cache=recalled)
        return admitted

    async def _try(
        self,
        course: _Course,
        candidate: Candidate,
        *,
        more: bool,
        chained: bool = False,
        cancel_key: str | None = None,
        claim: str = "",
    ) -> Message | None:
        """Try one candidate (with retries); a final message, or None for the next one.
        ``more``: other candidates remain after this one; ``chained``: some of them are
        fallback models (a content filter may send the request on to them)."""
        request, attempts, delivery = course.request, course.attempts, course.delivery
        provider, model = candidate.provider, candidate.model
        settings = self.providers.get(provider)
        retries = settings.max_retries if settings is not None else 0
        streaming = course.stream_to is not None
        # The same max_tokens as admission reserved for (router.default_max_tokens).
        max_tokens = self.planner.catalog.output_tokens(
            model, request.max_tokens, self.config.default_max_tokens
        )
        call = ProviderCall(
            request_id=request.request_id,
            # The same max_tokens as admission reserved for (router.default_max_tokens).
            request=request.provider_request(model, max_tokens),
            stream_to=course.stream_to,
            stream_corr=delivery.correlation_id if streaming else None,
            tokens=course.prompt_tokens + (0 if request.embed else max_tokens),
            claim=claim,
            cancel_key=delivery.correlation_id or "" if cancel_key is None else cancel_key,
        )
        backoff = Backoff(self.config.retry_base_ms / 1000, self.config.retry_max_ms / 1000)
        for attempt in range(retries + 1):
            if course.gone.is_set():
                return self._cancelled(course)
            now = self.bus.now_ms()
            remaining = course.deadline_ms - now
            if remaining <= 0:
                return self._deadline(request, attempts)
            budget = self._budget(settings, remaining, more=more, stream=streaming)
            # A stream's budget is for its first text: its ask may last the deadline.
            wait_ms = (remaining if streaming else budget) + _REPLY_SLACK_MS
            self.log.debug("router.attempt", provider=provider, model=model, attempt=attempt + 1,
                           remaining_ms=remaining, budget_ms=budget)  # fmt: skip
            asked = time.perf_counter()
            attempt_call = msgspec.structs.replace(call, attempt_deadline_ms=now + budget)
            try:
                reply = await ask_breaker(self.bus, provider, model, attempt_call, wait_ms)
            except AskTimeout:
                attempts.append(
                    Attempt(provider=provider, model=model, outcome="timeout",
                            latency_ms=(time.perf_counter() - asked) * 1000,
                            message=f"no answer from its breaker within {wait_ms / 1000:.1f}s")
                )  # fmt: skip
                if self.bus.now_ms() >= course.deadline_ms:
                    return self._deadline(request, attempts)
                return None
            except (RemoteError, BusUnavailable) as exc:
                attempts.append(
                    Attempt(provider=provider, model=model, outcome="unavailable", message=str(exc))
                )
                return None
            if isinstance(reply, Completion):
                # A model that calls tools has not answered yet: nothing to check.
                wrong = (
                    None
                    if reply.tool_calls
                    else invalid_output(request.response_format, reply.content)
                )
                if wrong is not None:  # never served as valid, never cached
                    return self._invalid(course, reply, wrong, more=more)
                course.completion = reply
                attempts.append(
                    Attempt(provider=provider, model=model, outcome="ok",
                            latency_ms=reply.latency_ms, first_token_ms=reply.first_token_ms)
                )  # fmt: skip
                named = self.planner.catalog.canonical(request.model) or request.model
                return self._answered(request, reply, attempts, streamed=streaming,
                                      fallback_from=named if candidate.step else "")  # fmt: skip
            assert isinstance(reply, CallFailed)
            attempts.append(
                Attempt(provider=provider, model=model, outcome=reply.kind,
                        latency_ms=reply.latency_ms, status=reply.status, message=reply.message,
                        retry_after=reply.retry_after)
            )  # fmt: skip
            if reply.kind == "cancelled":
                return self._cancelled(course)
            if reply.started:
                return self._failed(
                    request, "stream_interrupted",
                    f"{provider} failed after the stream had started: {reply.message}",
                    attempts,
                )  # fmt: skip
            chain = kind_of(reply.kind).chain
            if chained and reply.kind == "content_filtered" and reply.kind in self.chain_on:
                return None  # another model's filter may let it through
            if chain == "final":
                # Final call failures are request failures of the same name.
                return self._failed(request, reply.kind, reply.message, attempts)  # type: ignore[arg-type]
            # A provider that hung is not given the rest of the deadline while another
            # candidate could use it.
            if chain == "next" or (more and reply.kind == "timeout") or attempt == retries:
                return None
            delay = max(backoff.next_delay(), reply.retry_after or 0.0)  # never before Retry-After
            if (course.deadline_ms - self.bus.now_ms()) / 1000 <= delay:
                return None
            self.log.debug("router.backoff", provider=provider, kind=reply.kind, delay_s=delay)
            with contextlib.suppress(TimeoutError):  # woken early by a cancellation
                await asyncio.wait_for(course.gone.wait(), delay)
        return None

    def _budget(
        self, settings: ProviderConfig | None, remaining_ms: int, *, more: bool, stream: bool
    ) -> int:
        """Milliseconds this attempt may take (a stream: until its first text)."""
        budget = remaining_ms * self.config.attempt_share if more else remaining_ms
        if settings is not None:
            budget = min(budget, settings.timeout_ms)
            if stream:
                budget = min(budget, settings.first_token_timeout_ms)
        return max(1, int(budget))

    def _cancelled(self, course: _Course) -> GenerateFailed:
        return self._failed(course.request, "cancelled", "the caller went away before the answer",
                            course.attempts)  # fmt: skip

    def _invalid(
        self, course: _Course, done: Completion, why: str, *, more: bool
    ) -> Message | None:
        """An answer that is not the JSON asked for: the next candidate (when one remains,
        the answer was not streamed, and ``router.invalid_output`` is ``next``), else the
        request fails ``invalid_output``."""
        course.attempts.append(
            Attempt(provider=done.provider, model=done.model, outcome="invalid_output",
                    latency_ms=done.latency_ms, message=why)
        )  # fmt: skip
        course.spent.append(done)  # the provider charged for it: so is the user
        streamed = course.stream_to is not None
        if more and not streamed and self.config.invalid_output == "next":
            return None
        said = f"response_format: {done.provider}/{done.model} answered, but {why}"
        return self._failed(course.request, "invalid_output", said, course.attempts)

    def _answered(
        self,
        request: GenerateRequest,
        done: Completion,
        attempts: list[Attempt],
        *,
        streamed: bool,
        fallback_from: str = "",
    ) -> GenerateResponse:
        return GenerateResponse(
            request_id=request.request_id,
            content="" if streamed else done.content,
            provider=done.provider,
            model=done.model,
            finish_reason=done.finish_reason,
            usage=done.usage,
            cost_usd=done.cost_usd,
            processing_time_ms=0.0,
            attempts=attempts,
            tool_calls=[] if streamed else done.tool_calls,  # a stream's went as deltas
            logprobs=[] if streamed else done.logprobs,
            embeddings=done.embeddings,
            fallback_from=fallback_from,
        )

    def _deadline(self, request: GenerateRequest, attempts: list[Attempt]) -> GenerateFailed:
        return self._failed(request, "deadline_exceeded", "the request's deadline passed", attempts)

    def _failed(
        self,
        request: GenerateRequest,
        kind: RequestFailure,
        message: str,
        attempts: list[Attempt],
        retry_after: float | None = None,
    ) -> GenerateFailed:
        status = kind_of(kind).status
        return GenerateFailed(
            request_id=request.request_id,
            kind=kind,
            message=message,
            status=status,
            retry_after=retry_after,
            attempts=list(attempts),
        )

    def _finish(
        self,
        request: GenerateRequest,
        result: Message,
        started: float,
        limits: list[LimitState] | None = None,
        reservation: str = "",
        ticket: CacheTicket | None = None,
        completion: Completion | None = None,
        *,
        charged: bool = False,
        spent: list[Completion] | None = None,
    ) -> Message:
        elapsed = (time.perf_counter() - started) * 1000
        if (
            isinstance(result, GenerateFailed)
            and request.fallback
            and not request.stream
            and kind_of(result.kind).fallback
        ):
            # generate-with-fallback does not fail for a provider's sake: a system answer
            # says why instead (a limit's refusal stays a refusal: its kind says so).
            result = fallback_answer(
                request.request_id, f"{result.kind}: {result.message}", result.attempts, elapsed
            )
        if isinstance(result, GenerateResponse):
            result = msgspec.structs.replace(
                result, processing_time_ms=elapsed, handled_by=self.bus.node, limits=limits or []
            )
        elif isinstance(result, GenerateFailed) and limits:
            result = msgspec.structs.replace(result, limits=limits)
        self.log.debug("router.finished", result=type(result).__name__, elapsed_ms=elapsed,
                       attempts=getattr(result, "attempts", None))  # fmt: skip
        event = completed(request, result, elapsed, reservation, ticket, completion,
                          self.bus.now_ms(), charged=charged, spent=spent)  # fmt: skip
        if isinstance(result, GenerateResponse) and result.cache_hit:
            saved = self.planner.catalog.cost(result.model, result.usage)
            event = msgspec.structs.replace(
                event, saved_usd=saved, saved_tokens=result.usage.total_tokens
            )
        # With the reply's round trip. It settles what admission reserved: while Redis
        # is unreachable it is sent again, for a minute (past that, the reservations
        # expire by themselves: reservation_ttl_ms).
        self.bus.publish_soon(self.bus.names.events, event, keep_trying_s=_SETTLE_RETRY_S)
        return result


@dataclass(slots=True)
class _Queue:
    """One user's requests waiting for a rate limit's room, in this process."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


async def _acquired(lock: asyncio.Lock, gone: asyncio.Event, within_s: float) -> bool:
    """The lock, unless the caller goes away or ``within_s`` passes first."""
    if within_s <= 0:
        return False
    taking = asyncio.ensure_future(lock.acquire())
    leaving = asyncio.ensure_future(gone.wait())
    try:
        await asyncio.wait({taking, leaving}, timeout=within_s,
                           return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    finally:
        leaving.cancel()
        if not taking.done():
            taking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await taking
    got = taking.done() and not taking.cancelled() and taking.result()
    if got and gone.is_set():
        lock.release()
        return False
    return bool(got)


def _merged(before: list[LimitState], now: list[LimitState]) -> list[LimitState]:
    """Limits by name, the latest figures winning."""
    by_name = {limit.name: limit for limit in before}
    by_name.update((limit.name, limit) for limit in now)
    return list(by_name.values())


def _may_wait(result: AdmissionResult) -> bool:
    """Refused by a rate limit that will have room (never a quota, nor a request that
    alone is over the limit)."""
    return (
        not result.admitted
        and result.kind == "rate_limited"
        and result.retry_after is not None
        and not result.quota_refused
    )


@dataclass(slots=True)
class _Course:
    """One request's way down the chain of candidates."""

    request: GenerateRequest
    delivery: Delivery
    deadline_ms: int
    attempts: list[Attempt]
    stream_to: str | None
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # its caller went away
    prompt_tokens: int = 0  # its estimate
    completion: Completion | None = None  # the answer, with its text even when streamed
    # Answers a provider gave (and charged for) that were not served: not the JSON asked.
    spent: list[Completion] = field(default_factory=list)


def _why(attempts: list[Attempt]) -> str:
    return "; ".join(f"{a.provider}/{a.model}: {a.outcome}" for a in attempts) or "no candidates"


def _soonest(attempts: list[Attempt]) -> float | None:
    """When every candidate was rate limited or held open: the soonest one may answer."""
    waits = [a.retry_after for a in attempts if a.outcome != "ok"]
    if not waits or any(w is None for w in waits):
        return None
    return min(w for w in waits if w is not None)


def _window(catalog: Catalog, model: str) -> int | None:
    """A model's context window, None for one the catalog does not know."""
    try:
        return catalog.get(model).context_window
    except UnknownModel:
        return None


def _not_larger(candidate: Candidate, window: int) -> Attempt:
    return Attempt(
        provider=candidate.provider, model=candidate.model, outcome="context_too_long",
        message=f"not tried: its context window ({window} tokens) is no larger than that "
                f"of a model that found the request too long",
    )  # fmt: skip


# The class of failure (router.fallback_on) each attempt outcome is; outcomes not named
# (unsupported, invalid_output) never stop a request going down its chain.
_CLASS = {
    "server_error": "server_error", "unavailable": "server_error",
    "breaker_open": "server_error", "provider_down": "server_error",
    "key_invalid": "server_error", "authentication": "server_error",
    "timeout": "timeout", "rate_limited": "rate_limited",
    "content_filtered": "content_filtered", "context_too_long": "context_too_long",
}  # fmt: skip

# Attempts the planner noted without a call: they say nothing of the request's length.
_NOT_TRIED = frozenset({"unsupported", "breaker_open", "key_invalid", "provider_down",
                        "waited"})  # fmt: skip
