"""Every error the gateway answers is JSON: ``{"error": {"type", "message"}}``, and
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` under ``/v1``, and
Anthropic's ``{"type": "error", "error": {"type", "message"}}`` under ``/v1/messages``.

Two places would answer in aiohttp's plain text otherwise: its router and body
reader (404, 405, 413, raised as ``HTTPException``), which ``json_errors`` catches,
and its HTTP parser (a header or request line too long, bytes that are not HTTP),
which answers before any middleware runs and which ``Runner`` reaches.
"""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.typedefs import Handler, Middleware
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

from ._anthropic_api import anthropic_error
from ._bodies import error_response, json_response
from ._openai import openai_error

__all__ = ["Runner", "json_errors", "refuse"]

log = structlog.get_logger("gateway")

# The error type of an aiohttp refusal, by status; others are named after their reason.
_KINDS = {
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}
_KEPT_HEADERS = ("Allow", "WWW-Authenticate")


def refuse(
    request: web.Request,
    status: int,
    kind: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """An error in the shape of the route's API: Anthropic's under ``/v1/messages``,
    OpenAI's under the rest of ``/v1``, else ours."""
    if request.path == "/v1/messages" or request.path.startswith("/v1/messages/"):
        response = anthropic_error(status, message)
    elif request.path == "/v1" or request.path.startswith("/v1/"):
        response = openai_error(status, kind, message)
    else:
        response = error_response(status, kind, message)
    response.headers.update(headers or {})
    return response


def _message(request: web.Request, exc: web.HTTPException, max_body_bytes: int) -> str:
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        return f"{request.method} is not allowed on {request.path} (allowed: {allowed})"
    if exc.status == 404:
        return f"no such endpoint: {request.method} {request.path} (see /openapi.json)"
    if exc.status == 413:
        return f"the body is larger than {max_body_bytes} bytes (gateway.max_body_bytes)"
    return exc.text or exc.reason


def json_errors(max_body_bytes: int) -> Middleware:
    """The outermost middleware: aiohttp's refusals and unexpected failures as JSON."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            kind = _KINDS.get(exc.status) or exc.reason.lower().replace(" ", "_")
            kept = {name: exc.headers[name] for name in _KEPT_HEADERS if name in exc.headers}
            return refuse(request, exc.status, kind, _message(request, exc, max_body_bytes), kept)
        except Exception:
            if request.writer.output_size > 0:
                raise  # the answer has started: nothing else can be sent
            log.exception("gateway.failed", method=request.method, path=request.path)
            return refuse(
                request, 500, "internal", "the gateway failed on this request; its log says why"
            )

    return middleware


class _Connection(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser refuses in JSON.

    The parser's refusals are answered by ``handle_error`` before any middleware runs;
    aiohttp has no hook for them (aio-libs/aiohttp#3287), hence this subclass. The path
    is not known there, so the body has the keys of both shapes: ours (``type``,
    ``message``) and OpenAI's (those and ``param``, ``code``). What was sent is not
    echoed: a line too long may be a credential.
    """

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0 or not isinstance(exc, BadHttpMessage):
            # A handler's failure past the middleware, or an answer already started:
            # aiohttp's own handling (which raises when the answer has started).
            return super().handle_error(request, status, exc, message)
        if isinstance(exc, LineTooLong):
            code = "header_too_large"
            text = f"a header or the request line is longer than {exc.args[1]} bytes"
        else:
            code, text = "bad_http_request", f"not a valid HTTP request ({type(exc).__name__})"
        log.info("gateway.unreadable_request", remote=request.remote, status=status, code=code)
        error = {"type": "invalid_request", "message": text, "param": None, "code": code}
        response = json_response({"error": error}, status)
        response.force_close()
        return response


class _Server(Server):
    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections are ``_Connection``s."""

    async def _make_server(self) -> Server:
        plain = await super()._make_server()  # runs the app's startup; nothing is served yet
        return _Server(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            loop=plain._loop,
            **plain._kwargs,
        )
