"""The breaker actor: one per provider, owning its adapter and its circuit breaker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, ClassVar, Protocol

from bus import REDIS_DOWN, Bus, BusUnavailable, Delivery, Message, Rejected, added_ms

from ..messages import BreakerCommand, BreakerReport, CallFailed, ProviderCall, StreamDelta
from ..providers import (
    Adapter,
    AuthenticationFailed,
    Completion,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
)
from ..runtime import Actor, annotate, span
from ._breaker_state import BreakerState, BreakerStore, BreakerView, Decision
from ._inflight import InFlight

__all__ = ["Breaker"]


class Breaker(Actor):
    """Calls one provider for the router, unless its circuit breaker says not to.

    Consumes ``{ns}:calls:{provider}``; replies ``provider.completion`` or
    ``provider.failed``. Which errors count against the breaker is their type's
    ``counts_for_breaker``; a 429 opens it for at least its Retry-After; a 401/403
    marks the key invalid until an operator resets the breaker. The state lives in
    Redis (``BreakerStore``); this actor reads it through the process's view and
    goes to Redis itself only when the view does not say "closed".

    Each call is cut off at its attempt's budget (``ProviderCall.attempt_deadline_ms``;
    for a stream, the budget is for its first text, the rest may take until the ask's
    deadline): a cut-off call counts as a timeout against the breaker at once. A call
    whose caller went away (``request.cancelled``) is cancelled and counts for nothing.
    """

    group: ClassVar[str] = "breaker"

    def __init__(
        self,
        bus: Bus,
        adapter: Adapter,
        store: BreakerStore,
        view: BreakerView,
        *,
        concurrency: int,
        inflight: InFlight | None = None,
        grants: GrantSource | None = None,
    ) -> None:
        super().__init__(bus, stream=bus.names.calls(adapter.name), concurrency=concurrency)
        self.adapter = adapter
        self.grants = grants  # the deployment's own limits, when its provider has some
        self.provider = adapter.name
        self.store = store
        self.view = view
        self.inflight = inflight or InFlight()
        self.log = self.log.bind(provider=self.provider)
        self._recording: set[asyncio.Task[None]] = set()

    async def on_stop(self) -> None:
        if self._recording:
            await asyncio.wait(self._recording, timeout=self.bus.config.command_timeout_ms / 1000)

    async def handle(self, message: Message, delivery: Delivery) -> Message | None:
        match message:
            case ProviderCall():
                model = message.request.model or None
                with span(f"breaker {self.provider}", gen_ai__provider__name=self.provider,
                          gen_ai__request__model=model) as current:  # fmt: skip
                    done = await self._call(message, delivery)
                    if isinstance(done, CallFailed):
                        annotate(current, error__type=done.kind)
                    return done
            case BreakerCommand():
                return await self._command(message)
            case _:
                raise Rejected(
                    f"breaker does not take {type(message).__name__} (on {delivery.stream})"
                )

    async def _call(self, call: ProviderCall, delivery: Delivery) -> Message:
        model = self.adapter.model_for(call.request)
        parent = call.cancel_key.partition("#hedge")[0]
        gone = self.inflight.cancelled(call.cancel_key) or self.inflight.cancelled(parent)
        if gone or _spent(self.bus, call):
            # Its caller left, or its budget went by while it waited here (this breaker
            # was busy): no call, and nothing against the provider.
            return CallFailed(
                provider=self.provider, model=model,
                kind="cancelled" if gone else "timeout",
                message="its caller went away before the call" if gone else
                "the attempt's budget ran out before the call could start (the breaker "
                "was busy)",
            )  # fmt: skip
        grant = ""
        if self.grants is not None:  # within what the provider grants, or not made
            grant, granted = await self.grants.take(call.tokens)
            if not granted.admitted:
                return CallFailed(
                    provider=self.provider, model=model, kind="rate_limited",
                    message=f"{self.provider}: its {granted.limit_type} grant "
                    f"({granted.limit:g}) is used up for now; not called",
                    retry_after=granted.retry_after_s,
                )  # fmt: skip
        try:
            reply = await self._permitted(call, delivery, model)
        except BaseException:
            await self._settle(grant, 0, made=True)  # it may have reached the provider
            raise
        made = not (isinstance(reply, CallFailed) and reply.kind in _NOT_MADE)
        await self._settle(grant, reply.usage.total_tokens if isinstance(reply, Completion)
                           else 0, made=made)  # fmt: skip
        return reply

    async def _settle(self, grant: str, tokens: int, *, made: bool) -> None:
        """A grant settled to what its call used; a grant that cannot be settled (Redis
        failing) is released when its reservation expires."""
        if not grant or self.grants is None:
            return
        try:
            await self.grants.settle(grant, tokens, made=made)
        except Exception as exc:
            self.log.warning("breaker.grant_unsettled", error=repr(exc))

    async def _permitted(self, call: ProviderCall, delivery: Delivery, model: str) -> Message:
        """The call, if the breaker lets it go."""
        decision = await self._permit()
        if decision.verdict == "reject":
            self.log.debug("breaker.rejected", state=decision.state, reason=decision.reason)
            kind = "key_invalid" if self.view.get(self.provider).key_invalid else "breaker_open"
            retry_after = None
            if decision.open_until_ms:
                retry_after = max(0.0, (decision.open_until_ms - self.bus.now_ms()) / 1000)
            return CallFailed(
                provider=self.provider,
                model=model,
                kind=kind,
                message=f"the {self.provider} breaker is {decision.state}: {decision.reason}",
                retry_after=retry_after,
            )
        trial = decision.verdict == "trial"
        self.log.debug("breaker.call_started", model=model, stream=call.stream_to is not None,
                       trial=trial)  # fmt: skip
        started = time.perf_counter()
        sender = _DeltaSender(self.bus, call.stream_to, call.stream_corr, model)
        cutoff = _Cutoff(self.bus, call, delivery)
        try:
            async with asyncio.timeout_at(cutoff.first) as scope:
                cutoff.scope = scope
                # A hedged call is also cancelled when its caller goes away (the key
                # the gateway cancels is the hedge's own without its suffix).
                parent = call.cancel_key.partition("#hedge")[0]
                also = (self.inflight.track(parent, cutoff.cancel)
                        if parent != call.cancel_key else contextlib.nullcontext())  # fmt: skip
                with self.inflight.track(call.cancel_key, cutoff.cancel), also:
                    if call.request.embed:
                        completion = await self.adapter.embed(call.request)
                    elif call.stream_to is None:
                        completion = await self.adapter.generate(call.request)
                    else:
                        completion = await self._stream(call, sender, cutoff)
        except (ProviderError, TimeoutError) as exc:
            error = exc if isinstance(exc, ProviderError) else cutoff.error(self.provider)
            latency = (time.perf_counter() - started) * 1000
            self.log.debug("breaker.call_finished", outcome=error.kind, status=error.status,
                           latency_ms=latency, message=error.message)  # fmt: skip
            await sender.settle()  # no text may reach the reader after our answer
            self._record(error, latency, trial)
            failed = CallFailed(
                provider=self.provider,
                model=model,
                kind=error.kind,
                message=error.message,
                status=error.status,
                retry_after=getattr(error, "retry_after", None),
                latency_ms=latency,
                started=sender.started,
            )
            # The error's traceback holds this frame, whose locals hold the error: a cycle
            # that only the collector (run rarely in serve) would free, request and all.
            del error
            return failed
        self.log.debug("breaker.call_finished", outcome="ok", latency_ms=completion.latency_ms,
                       finish_reason=completion.finish_reason, usage=completion.usage)  # fmt: skip
        self._record(None, completion.latency_ms, trial)
        return completion

    async def _stream(
        self, call: ProviderCall, sender: _DeltaSender, cutoff: _Cutoff
    ) -> Completion:
        started = time.perf_counter()
        first_token_ms: float | None = None
        text: list[str] = []
        calls: dict[int, list[str]] = {}  # index -> id, name, arguments so far
        claimed = not call.claim
        async for chunk in self.adapter.stream(call.request):
            if not chunk.final:
                if not claimed and (chunk.delta or chunk.tool_call is not None):
                    await self._claim(call)  # a hedged stream: the first with text goes on
                    claimed = True
                piece = chunk.tool_call
                if piece is not None:
                    known = calls.setdefault(piece.index, ["", "", ""])
                    known[0] = known[0] or piece.id
                    known[1] = known[1] or piece.name
                    known[2] += piece.arguments
                    sender.push_tool(piece)
                else:
                    text.append(chunk.delta)
                    sender.push(chunk.delta, chunk.logprobs)
                if chunk.delta or piece is not None:
                    cutoff.first_text()
                    if first_token_ms is None:
                        first_token_ms = (time.perf_counter() - started) * 1000
                continue
            try:
                await sender.flush()
            except BusUnavailable as exc:
                raise _LostStream(self.provider, str(exc)) from exc
            assert chunk.finish_reason is not None and chunk.usage is not None
            return Completion(
                content="".join(text),
                finish_reason=chunk.finish_reason,
                usage=chunk.usage,
                cost_usd=chunk.cost_usd or 0.0,
                provider=self.provider,
                model=self.adapter.model_for(call.request),
                latency_ms=(time.perf_counter() - started) * 1000,
                first_token_ms=first_token_ms,
                tool_calls=[
                    ToolCall(id=c[0] or f"call_{i}", name=c[1], arguments=c[2] or "{}")
                    for i, c in sorted(calls.items())
                ],
            )
        raise AssertionError("adapter streams end with a final chunk or raise")

    async def _claim(self, call: ProviderCall) -> None:
        """Claims a hedged stream before its first text is sent; ``_Cancelled`` when the
        other call of the hedge claimed it first."""
        try:
            won = await self.bus.redis.set(call.claim, self.provider, nx=True, px=_CLAIM_MS)
        except REDIS_DOWN as exc:
            raise _LostStream(self.provider, f"its hedge's claim could not be made: {exc}") from exc
        if not won:
            raise _Cancelled(self.provider, "the other call of its hedge streamed first")

    async def _permit(self) -> Decision:
        known = self.view.get(self.provider)
        if known.state == "closed" and not known.key_invalid and not known.forced:
            return Decision("allow", "closed")
        if known.refuses(self.bus.now_ms()):  # no need to ask Redis
            return Decision("reject", known.state, known.open_until_ms, known.reason)
        decision = await self.store.acquire(self.provider)
        if decision.transition:
            state = BreakerState(
                provider=self.provider,
                state=decision.state,
                open_until_ms=decision.open_until_ms,
                reason=decision.reason,
            )
            await self._moved(state, decision.transition)
        return decision

    async def _moved(self, state: BreakerState, transition: str, **details: Any) -> None:
        """A move of this breaker: this process's view learns it at once, and every
        process hears of it (``breaker.*`` on the events stream)."""
        self.view.learn(state)
        await self.store.announce(
            self.provider, transition, reason=state.reason, open_until_ms=state.open_until_ms,
            key_invalid=state.key_invalid, forced=state.forced, **details,
        )  # fmt: skip

    async def _command(self, command: BreakerCommand) -> BreakerReport:
        """An operator's command: report the state, close the breaker or force it open."""
        transition = ""
        if command.action == "reset":
            transition = await self.store.reset(self.provider)
        elif command.action == "open":
            transition = await self.store.force_open(self.provider)
        (state,) = (await self.store.read([self.provider])).values()
        if command.action != "status":
            await self._moved(state, transition)
        return BreakerReport(**state.public())

    def _record(self, error: ProviderError | None, latency_ms: float, trial: bool) -> None:
        # Off the reply's path: the outcome goes to Redis while the reply goes out.
        task = asyncio.create_task(self._store_outcome(error, latency_ms, trial))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _store_outcome(
        self, error: ProviderError | None, latency_ms: float, trial: bool
    ) -> None:
        if error is None:
            outcome, kind = "ok", ""
        elif isinstance(error, AuthenticationFailed):
            outcome, kind = "fail", "authentication"
        elif isinstance(error, RateLimited):
            outcome, kind = "fail", "rate_limited"
        else:
            outcome = "fail" if error.counts_for_breaker else "neutral"
            kind = ""
        slow = latency_ms >= self.store.config.slow_call_ms
        try:
            moved = await self.store.record(
                self.provider,
                outcome,
                slow=slow,
                trial=trial,
                kind=kind,
                retry_after=getattr(error, "retry_after", None),
            )
        except REDIS_DOWN as exc:
            self.log.warning("breaker.outcome_lost", error=repr(exc))
            return
        if moved.moved:
            state = BreakerState(
                provider=self.provider,
                state=moved.state,
                open_until_ms=moved.open_until_ms,
                key_invalid=kind == "authentication",
                reason=moved.reason,
            )
            await self._moved(state, moved.moved, failure_rate=moved.failure_rate,
                              slow_call_rate=moved.slow_call_rate, calls=moved.calls)  # fmt: skip


class GrantSource(Protocol):
    """A deployment's own limits (``actors.limits.Grants``): a grant before each call,
    settled to what it used."""

    async def take(self, tokens: int) -> tuple[str, Any]: ...

    async def settle(self, call_id: str, tokens: int, *, made: bool = True) -> None: ...


# How long a hedged stream's claim is kept (longer than any request).
_CLAIM_MS = 3_600_000

# Breaker refusals: the call was never made, so no grant is used.
_NOT_MADE = frozenset({"breaker_open", "key_invalid"})


class _Cutoff:
    """An attempt's time limits, held by one timeout scope: by ``first`` the whole answer
    (a stream: its first text), then, for a stream, the rest by the ask's deadline;
    ``cancel()`` ends it now, for a caller who went away."""

    def __init__(self, bus: Bus, call: ProviderCall, delivery: Delivery) -> None:
        loop = asyncio.get_running_loop()
        now, now_ms = loop.time(), bus.now_ms()

        def at(redis_ms: int | None) -> float | None:
            return None if redis_ms is None else now + (redis_ms - now_ms) / 1000

        self.end = at(delivery.deadline_ms)
        first = at(call.attempt_deadline_ms)
        self.first = first if self.end is None or first is None else min(first, self.end)
        if self.first is None:
            self.first = self.end
        self.budget_s = None if self.first is None else max(0.0, self.first - now)
        # How much of the budget the router granted went by in this breaker's queue.
        self.queued_share = 0.0
        if call.attempt_deadline_ms is not None:
            added = added_ms(delivery.entry_id.encode())
            granted = call.attempt_deadline_ms - added
            self.queued_share = (now_ms - added) / granted if granted > 0 else 1.0
        self.stream = call.stream_to is not None
        self.scope: asyncio.Timeout | None = None
        self.cancelled = False
        self._texting = False

    def first_text(self) -> None:
        if not self._texting and not self.cancelled and self.scope is not None:
            self._texting = True
            self._move(self.end)

    def cancel(self) -> None:
        self.cancelled = True
        self._move(asyncio.get_running_loop().time())

    def _move(self, when: float | None) -> None:
        if self.scope is not None and not self.scope.expired():
            with contextlib.suppress(RuntimeError):  # it is firing already
                self.scope.reschedule(when)

    def error(self, provider: str) -> ProviderError:
        """What the scope's firing means: the caller left, or the budget ran out."""
        if self.cancelled:
            return _Cancelled(provider, "its caller went away; the call was cancelled")
        if self._texting:
            return ProviderTimeout(provider, "the stream did not end before the deadline")
        what = "first text" if self.stream else "answer"
        message = f"no {what} within the attempt's {self.budget_s:.1f}s"
        if self.queued_share > 0.5:
            # Most of the budget went by in this breaker's queue: not the provider's
            # fault, so not held against it.
            return _Squeezed(provider, f"{message} (most of its budget went by in the queue)")
        return ProviderTimeout(provider, message)


class _Squeezed(ProviderTimeout):
    """A timeout of a call whose budget mostly went by before it started."""

    counts_for_breaker = False


def _spent(bus: Bus, call: ProviderCall) -> bool:
    """Whether the call's attempt budget is already over."""
    return call.attempt_deadline_ms is not None and bus.now_ms() >= call.attempt_deadline_ms


class _Cancelled(ProviderError):
    """The call was cancelled because its caller went away: no fault of the provider."""

    kind = "cancelled"


class _LostStream(ProviderError):
    """The stream's text could not be passed on (the bus failed under it)."""

    kind = "unavailable"
    retryable = True


class _DeltaSender:
    """Passes a stream's text to its reader, coalescing pieces while a send is out."""

    def __init__(self, bus: Bus, to: str | None, corr: str | None, model: str = "") -> None:
        self._bus = bus
        self._model = model  # named on the first piece
        self._to = to
        self._corr = corr
        self._buffer: list[str] = []
        self._tools: list[ToolCallDelta] = []
        self._scores: list[TokenLogprob] = []
        self._task: asyncio.Task[None] | None = None
        self.started = False

    def push(self, text: str, logprobs: list[TokenLogprob] | None = None) -> None:
        if not text:
            return
        self._buffer.append(text)
        if logprobs:
            self._scores.extend(logprobs)
        self._wake()

    def push_tool(self, piece: ToolCallDelta) -> None:
        self._tools.append(piece)
        self._wake()

    def _wake(self) -> None:
        self.started = True
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        assert self._to is not None
        while self._buffer or self._tools:
            text = "".join(self._buffer)
            tools, self._tools = _merged(self._tools), []
            scores, self._scores = self._scores, []
            self._buffer.clear()
            delta = StreamDelta(text=text, model=self._model, tool_calls=tools, logprobs=scores)
            self._model = ""
            await self._bus.reply(self._to, self._corr, delta)

    async def flush(self) -> None:
        """Send everything pushed so far; raises ``BusUnavailable``."""
        if self._task is not None:
            await self._task
        if self._buffer or self._tools:
            await self._drain()

    async def settle(self) -> None:
        """Let a send in flight finish, drop the rest: the stream is failing anyway."""
        self._buffer.clear()
        self._tools.clear()
        if self._task is not None:
            with contextlib.suppress(BusUnavailable):
                await self._task


def _merged(pieces: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Pieces gathered while a send was out, one per call in a row: a client that reads
    one chunk's pieces as separate calls (LangChain does) sees each call once."""
    out: list[ToolCallDelta] = []
    for piece in pieces:
        last = out[-1] if out else None
        if last is not None and last.index == piece.index:
            out[-1] = ToolCallDelta(index=last.index, id=last.id or piece.id,
                                    name=last.name or piece.name,
                                    arguments=last.arguments + piece.arguments)  # fmt: skip
        else:
            out.append(piece)
    return out
