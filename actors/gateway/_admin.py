"""The admin guard: the management endpoints need ``Authorization: Bearer <token>``.

Every route needs the token but those declared public (``exempt``), so an endpoint
added later is a management one until it is declared otherwise. Loopback is no
protection (a web page in the operator's browser can POST to 127.0.0.1), so besides
the token, which a cross-site request cannot send without a CORS preflight, a state
change (anything but GET and HEAD) needs a JSON content type, which a form cannot
send either; and no route answers a preflight or sends an ``Access-Control-*`` header.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractResource, AbstractRoute

from ._errors import refuse

__all__ = ["AdminGuard"]

_SEND = "send `Authorization: Bearer <token>` with the admin token"
_SET = "set AIO_ADMIN_TOKEN or gateway.admin_token"
_REALM = 'Bearer realm="aio-admin"'


class AdminGuard:
    """A middleware that refuses a management request without the admin token (401) or,
    for a state change, without ``Content-Type: application/json`` (415)."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")  # bytes: what hmac.compare_digest compares
        self._public: set[AbstractResource] = set()

    def __repr__(self) -> str:
        return f"AdminGuard(public={len(self._public)} resources)"

    def exempt(self, routes: Iterable[AbstractRoute]) -> None:
        """Declare these routes public: no token needed."""
        self._public.update(route.resource for route in routes if route.resource is not None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        if resource is None or resource in self._public:  # a 404 or 405, or public
            return await handler(request)
        refusal = self._refusal(request.headers.get("Authorization", ""))
        if refusal is not None:
            return refuse(
                request, 401, "unauthorized", refusal[0], {"WWW-Authenticate": refusal[1]}
            )
        if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
            return refuse(
                request, 415, "unsupported_media_type",
                f"{request.method} {request.path} takes `Content-Type: application/json` "
                "(the body may be empty where the endpoint takes none)",
            )  # fmt: skip
        return await handler(request)

    def _refusal(self, header: str) -> tuple[str, str] | None:
        """Why ``header`` does not authorize (message, WWW-Authenticate), or None."""
        if not self._token:
            return (
                f"this gateway has no admin token, so its management endpoints are off: {_SET}",
                _REALM,
            )
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return f"this endpoint needs the admin token: {_SEND} ({_SET})", _REALM
        # surrogateescape: a header's undecodable bytes come back as they were sent.
        if not hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), self._token):
            return f"the admin token is wrong: {_SEND}", f'{_REALM}, error="invalid_token"'
        return None
