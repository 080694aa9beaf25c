"""The HTTP gateway: the ``/ai-orchestration`` API and the OpenAI-compatible edge."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import msgspec
import structlog
from aiohttp import web

from bus import BusError

from ..admin import Admin
from ..client import Client, GenerateError
from ..messages import GenerateRequest, GenerateResponse, StreamDelta
from ..providers import ModelDirectory, UnknownModel, extras_of
from ..runtime import GatewayConfig, Metrics, RouterConfig, annotate, span, tracing_on
from ..runtime.config import AuthConfig
from ._admin import AdminGuard
from ._anthropic_api import MessagesApi
from ._bodies import (
    BadInput,
    GenerateBody,
    bus_failure,
    decode,
    error_response,
    failed_response,
    json_response,
    limit_headers,
    request_id_of,
    response_body,
)
from ._cache_api import CacheApi
from ._callers import Callers, Refused
from ._dashboard import Dashboard
from ._embeddings_api import EmbeddingsApi
from ._errors import Runner, json_errors
from ._health_api import HealthApi
from ._keys_api import KeysApi
from ._limits_api import LimitsApi
from ._metrics_api import MetricsApi
from ._monitor_api import MonitorApi
from ._openai import (
    ChatCompletionBody,
    cache_threshold,
    chat_messages,
    chat_tools,
    completion_body,
    failure_args,
    is_legacy,
    openai_error,
    route_headers,
    stream_chat,
    use_cache,
    wait_on_limit,
)
from ._openapi import openapi_document
from ._responses_api import ResponsesApi

__all__ = ["Gateway"]


log = structlog.get_logger("gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gateway:
    """HTTP in, bus requests out; runs in a process with the ``gateway`` (or ``all``) role.

    It holds no state of its own: requests go to the router through ``client``,
    management to the actors that own the state through ``admin``; ``models`` says
    which models the enabled providers serve, ``bounds`` how large a request may be,
    ``probing`` whether a health prober runs (``health.enabled``).
    """

    def __init__(
        self,
        config: GatewayConfig,
        *,
        client: Client,
        admin: Admin,
        models: ModelDirectory,
        bounds: RouterConfig,
        metrics: Metrics,
        ready: Callable[[], Awaitable[str]] | None = None,
        auth: AuthConfig | None = None,
        probing: bool = True,
    ) -> None:
        self.config = config
        self.client = client
        self.admin = admin
        self.models = models
        self.bounds = bounds
        self._metrics = metrics
        self.callers = Callers(auth or AuthConfig(), admin)
        guard = AdminGuard(self.config.admin_token)
        metrics_api = MetricsApi(admin, metrics)
        monitor_api = MonitorApi(admin, self.callers)
        self.app = web.Application(
            client_max_size=self.config.max_body_bytes,
            middlewares=[json_errors(self.config.max_body_bytes), guard.middleware],
        )
        public = [
            web.post("/ai-orchestration/generate", self.generate),
            web.post("/ai-orchestration/generate-with-fallback", self.generate_with_fallback),
            web.post("/v1/chat/completions", self.chat_completions),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model}", self.get_model),
            *MessagesApi(self).routes(),
            *EmbeddingsApi(self).routes(),
            *ResponsesApi(self).routes(),
            *metrics_api.public(),
            *monitor_api.public(),
            *Dashboard().routes(),  # the page only: its data needs the token
            web.get("/openapi.json", self.openapi),
            web.get("/health", self.health),
            *HealthApi(admin, ready, probing=probing).routes(),
        ]
        guard.exempt(self.app.add_routes(public))
        # Every other route is a management one: it needs the admin token.
        self.app.add_routes(
            [
                web.get("/ai-orchestration/circuit-breakers", self.breakers),
                web.post("/ai-orchestration/circuit-breakers/{provider}/reset", self.reset_breaker),
                web.post("/ai-orchestration/circuit-breakers/{provider}/open", self.open_breaker),
                *LimitsApi(admin, self.callers).routes(),
                *CacheApi(admin).routes(),
                *KeysApi(admin).routes(),
                *metrics_api.management(),
                *monitor_api.management(),
            ]
        )
        self._log = log.bind()
        if self._log.is_enabled_for(logging.DEBUG):  # otherwise it costs nothing
            self.app.middlewares.append(self._debug_lines)
        if tracing_on():  # likewise
            self.app.middlewares.append(_traced)
        self._runner: Runner | None = None
        self.url = ""
        self._openapi = openapi_document()

    async def start(self) -> None:
        # A client that disconnects cancels its handler: its request is cancelled on
        # the bus too (the router stops, the provider call is cancelled).
        self._runner = Runner(
            self.app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.config.host,
            self.config.port,
            reuse_address=True,
            reuse_port=self.config.reuse_port or None,
        )
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.config.host}:{port}"
        log.info("gateway.listening", url=self.url)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, let requests in flight finish for ``timeout`` seconds, then
        close what is left; the runner is cleaned up even when that runs out."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await runner.shutdown()
        except TimeoutError:
            log.warning("gateway.stop_timeout", timeout_s=timeout)
        finally:
            await runner.cleanup()

    @web.middleware
    async def _debug_lines(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """A debug line when a request comes in and one when its answer goes out."""
        started = time.perf_counter()
        self._log.debug("gateway.request", method=request.method, path=request.path,
                        remote=request.remote, length=request.content_length,
                        user_agent=request.headers.get("User-Agent"))  # fmt: skip
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            self._log.debug("gateway.response", method=request.method, path=request.path,
                            status=status,
                            ms=(time.perf_counter() - started) * 1000)  # fmt: skip

    # -- /ai-orchestration ----------------------------------------------------------

    async def generate(self, request: web.Request) -> web.Response:
        return await self._generate(request, fallback=False)

    async def generate_with_fallback(self, request: web.Request) -> web.Response:
        return await self._generate(request, fallback=True)

    async def _generate(self, request: web.Request, *, fallback: bool) -> web.Response:
        started = time.perf_counter()
        try:
            body: GenerateBody = decode(await request.read(), GenerateBody)
            user_id, tier = await self.callers.who(request, body.user_id)
            ask = self._request(request, body, user_id, tier)
        except Refused as exc:
            return error_response(exc.status, exc.kind, exc.message)
        except BadInput as exc:
            return error_response(exc.status, exc.kind, str(exc))
        except ValueError as exc:  # a request the bus message refuses
            return error_response(400, "invalid_request", str(exc))
        try:
            if fallback:
                answer = await self.client.generate_with_fallback(ask)
            else:
                answer = await self.client.generate(ask)
        except GenerateError as exc:
            return failed_response(exc.failed)
        except BusError as exc:
            status, kind, message = bus_failure(exc)
            self._metrics.bus_errors.labels(kind=kind).inc()
            return error_response(status, kind, message, request_id=ask.request_id)
        total_ms = self.observe_overhead(started, answer)
        body_out = response_body(answer, total_ms)
        headers = route_headers(answer) | limit_headers(answer.limits)
        return json_response(body_out, headers=headers)

    def _request(
        self, request: web.Request, body: GenerateBody, user_id: str, tier: str
    ) -> GenerateRequest:
        self.check_model(body.model)
        return self.bounded(GenerateRequest(
            request_id=self.new_request_id(request),
            prompt=body.prompt,
            messages=body.messages,
            user_id=user_id,
            tier=tier,
            session_id=body.session_id,
            model=body.model,
            temperature=body.temperature,
            top_p=body.top_p,
            max_tokens=body.max_tokens,
            stop=body.stops(),
            **extras_of(body),
            strategy=body.strategy,
            fallbacks=body.fallbacks,
            wait_on_limit=wait_on_limit(request, body.wait_on_limit),
            hedge=body.hedge,
            use_cache=body.use_cache,
            cache_threshold=body.cache_threshold,
            timeout_ms=body.timeout_ms or self.client.timeout_ms,
        ))  # fmt: skip

    def observe_overhead(self, started: float, answer: GenerateResponse) -> float:
        """Records what the gateway added to the router's time; the total, in ms."""
        total_ms = (time.perf_counter() - started) * 1000
        self._metrics.gateway_overhead.observe(
            max(0.0, total_ms - answer.processing_time_ms) / 1000
        )
        return total_ms

    @staticmethod
    def new_request_id(request: web.Request) -> str:
        """The caller's ``X-Request-ID``, or a fresh one (``BadInput`` if unusable)."""
        return request_id_of(request) or uuid.uuid4().hex

    def bounded(self, ask: GenerateRequest) -> GenerateRequest:
        """The request, if it is within the size a deployment takes (``BadInput`` if not)."""
        too_large = ask.too_large(self.bounds.max_messages, self.bounds.max_prompt_chars)
        if too_large is not None:  # refused here: it never reaches the bus
            raise BadInput(too_large)
        return ask

    def check_model(self, model: str) -> None:
        """``BadInput`` (404 model_not_found) for a name that is no model, alias or tier."""
        if not model:
            return
        try:
            self.models.resolve(model)
        except UnknownModel as exc:
            raise BadInput(f"model: {exc}", status=404, kind="model_not_found") from None

    # -- OpenAI-compatible -----------------------------------------------------------

    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        try:
            body: ChatCompletionBody = decode(await request.read(), ChatCompletionBody)
            self.check_model(body.model)
            user_id, tier = await self.callers.end_user(
                request, body.user or body.safety_identifier
            )
            ask = self.bounded(GenerateRequest(
                request_id=self.new_request_id(request),
                messages=chat_messages(body),
                user_id=user_id,
                tier=tier,
                model=body.model,
                temperature=body.temperature,
                top_p=body.top_p,
                max_tokens=body.max_completion_tokens or body.max_tokens,
                stop=body.stops(),
                **(extras_of(body) | chat_tools(body)),
                fallbacks=body.fallbacks,
                wait_on_limit=wait_on_limit(request, body.wait_on_limit),
                hedge=body.hedge,
                stream=body.stream,
                use_cache=use_cache(request),
                cache_threshold=cache_threshold(request),
                timeout_ms=self.client.timeout_ms,
            ))  # fmt: skip
        except Refused as exc:
            kind = "invalid_api_key" if exc.status == 401 else exc.kind
            return openai_error(exc.status, kind, exc.message)
        except BadInput as exc:
            return openai_error(exc.status, exc.kind, str(exc))
        except ValueError as exc:  # a request the bus message refuses
            return openai_error(400, "invalid_request", str(exc))
        if not body.stream:
            started = time.perf_counter()
            # n > 1: that many requests of their own (ids -1, -2, ...), never answered
            # from the cache (the choices would be one answer n times).
            asks = [ask] + [
                msgspec.structs.replace(ask, request_id=f"{ask.request_id}-{i}", use_cache=False)
                for i in range(1, body.n or 1)
            ]
            if len(asks) > 1:
                asks[0] = msgspec.structs.replace(ask, use_cache=False)
            try:
                answers = await self._all(asks)
            except GenerateError as exc:
                return self._openai_failure(exc)
            except BusError as exc:
                status, kind, message = bus_failure(exc)
                self._metrics.bus_errors.labels(kind=kind).inc()
                return openai_error(status, kind, message, ask.request_id)
            self.observe_overhead(started, answers[0])
            return completion_body(answers, legacy=is_legacy(body), logprobs=bool(body.logprobs))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await self._stream(request, ask, body.model, include_usage, is_legacy(body))

    async def _all(self, asks: list[GenerateRequest]) -> list[GenerateResponse]:
        """Every request's answer; the first failure is raised and the others cancelled
        (their callers gone, the routers stop them)."""
        if len(asks) == 1:
            return [await self.client.generate(asks[0])]
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(self.client.generate(a)) for a in asks]
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, GenerateError):  # it answers the caller's request id
                first.failed = msgspec.structs.replace(first.failed, request_id=asks[0].request_id)
            raise first from None
        return [task.result() for task in tasks]

    async def _stream(
        self, request: web.Request, ask: GenerateRequest, model: str, include_usage: bool,
        legacy: bool = False,
    ) -> web.StreamResponse:  # fmt: skip
        replies = self.client.stream(ask)
        try:
            # Failures before the first text still get a proper HTTP status.
            first = await anext(replies)
        except GenerateError as exc:
            return self._openai_failure(exc)
        except BusError as exc:
            return openai_error(*bus_failure(exc), ask.request_id)
        except StopAsyncIteration:
            return openai_error(502, "bad_gateway", "the stream ended before any answer")
        if isinstance(first, GenerateResponse):  # an answer with no text at all
            replies = _one(first)
            first = StreamDelta(text="", model=first.model)
        assert isinstance(first, StreamDelta)
        try:
            return await stream_chat(
                request, replies, first, request_id=ask.request_id, model=model,
                include_usage=include_usage, legacy=legacy,
            )  # fmt: skip
        finally:
            await replies.aclose()  # type: ignore[attr-defined]

    def _openai_failure(self, exc: GenerateError) -> web.Response:
        return openai_error(*failure_args(exc.failed))

    async def list_models(self, _request: web.Request) -> web.Response:
        return json_response({"object": "list", "data": self.models.listing()})

    async def get_model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        found = self.models.entry(name)
        if found is None:
            why = f"model: {name!r} is no model an enabled provider serves"
            return openai_error(404, "model_not_found", why)
        return json_response(found)

    # -- circuit breakers ------------------------------------------------------------

    async def breakers(self, _request: web.Request) -> web.Response:
        try:
            reports = await self.admin.breakers()
        except BusError as exc:
            return error_response(*bus_failure(exc))
        states = [msgspec.structs.asdict(r) for r in reports]
        return json_response({"circuit_breakers": states})

    async def reset_breaker(self, request: web.Request) -> web.Response:
        return await self._move_breaker(request, "reset")

    async def open_breaker(self, request: web.Request) -> web.Response:
        return await self._move_breaker(request, "open")

    async def _move_breaker(
        self, request: web.Request, action: Literal["reset", "open"]
    ) -> web.Response:
        provider = request.match_info["provider"]
        if provider not in self.admin.providers:
            known = ", ".join(self.admin.providers) or "none"
            return error_response(404, "not_found", f"no breaker {provider!r} (known: {known})")
        try:
            report = await self.admin.breaker(provider, action)
        except BusError as exc:
            return error_response(*bus_failure(exc))
        return json_response(msgspec.structs.asdict(report))

    # -- the rest --------------------------------------------------------------------

    async def openapi(self, _request: web.Request) -> web.Response:
        return json_response(self._openapi)

    async def health(self, _request: web.Request) -> web.Response:
        return json_response({"status": "ok", "node": self.client.bus.node})


@web.middleware
async def _traced(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A server span for each request: the root of its trace through the actors."""
    route = request.match_info.route.resource
    template = route.canonical if route is not None else request.path
    with span(f"{request.method} {template}", "server", http__request__method=request.method,
              url__path=request.path, http__route=template) as current:  # fmt: skip
        response = await handler(request)
        annotate(current, http__response__status_code=response.status)
        return response


async def _one(answer: GenerateResponse) -> AsyncIterator[GenerateResponse]:
    yield answer
