"""``GET /dashboard``: the operators' page, its script and style, and the charting
library (uPlot, vendored: nothing is fetched from elsewhere at run time).

The page and its files are public: they hold no data. Every number on the page comes
from the management API, with the admin token the operator types into the page's
login form (kept in the tab's ``sessionStorage``, sent as ``Authorization: Bearer``).
The files are read once, at start, into memory: only those files are served, so no
path from a request ever reaches the file system.
"""

from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from aiohttp import web

__all__ = ["Dashboard"]

STATIC = Path(__file__).with_name("static")

# No inline script or style, nothing from elsewhere, never in a frame: a value shown
# on the page (a user id, an alert's reason) cannot become code.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidated each time: ETag answers 304
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}


class _File:
    __slots__ = ("body", "content_type", "etag")

    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        guessed = _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
        self.content_type = guessed or "application/octet-stream"
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


class Dashboard:
    """Serves ``/dashboard`` (the page) and ``/dashboard/static/{path}``."""

    def __init__(self, folder: Path = STATIC) -> None:
        self.files = {
            path.relative_to(folder).as_posix(): _File(path)
            for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix in (".html", ".js", ".css")
        }

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/dashboard", self.page),
            web.get("/dashboard/", self.page),
            web.get("/dashboard/static/{path:.+}", self.static),
        ]

    async def page(self, request: web.Request) -> web.Response:
        return self._send(request, self.files["dashboard.html"])

    async def static(self, request: web.Request) -> web.Response:
        found = self.files.get(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound(text="no such file of the dashboard")
        return self._send(request, found)

    @staticmethod
    def _send(request: web.Request, found: _File) -> web.Response:
        headers = _HEADERS | {"ETag": found.etag}
        if request.headers.get("If-None-Match") == found.etag:
            return web.Response(status=304, headers=headers)
        charset = "utf-8" if found.content_type.startswith("text/") else None
        return web.Response(body=found.body, headers=headers, content_type=found.content_type,
                            charset=charset)  # fmt: skip
