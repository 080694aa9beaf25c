"""The simulator's HTTP server: the four provider APIs and a small control endpoint."""

from __future__ import annotations

import msgspec
from aiohttp import web

from .._catalog import Catalog
from ._anthropic import AnthropicApi
from ._api import json_response
from ._google import GoogleApi
from ._openai import AzureApi, OpenAIApi
from ._state import Knobs, SimulatorState

__all__ = ["Simulator"]

_decoder = msgspec.json.Decoder()


class Simulator:
    """OpenAI, Azure OpenAI, Anthropic and Gemini HTTP APIs on one local port.

    ``GET /_sim/knobs`` shows every provider's knobs, ``POST /_sim/knobs/{provider}``
    changes some (a partial JSON body), ``POST /_sim/reset`` restores the defaults
    and ``GET /_sim/calls`` counts the calls each provider answered.
    """

    def __init__(
        self,
        knobs: dict[str, Knobs] | None = None,
        *,
        context_windows: dict[str, int] | None = None,
        seed: int | None = None,
    ) -> None:
        self.state = SimulatorState(knobs, seed)
        # The models' context windows as the catalog has them, unless given.
        windows = context_windows or {
            name: m.context_window for name, m in Catalog().models.items()
        }
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self._openai = OpenAIApi(self.state, windows)
        self._anthropic = AnthropicApi(self.state, windows)
        for api in (self._openai, AzureApi(self.state, windows), self._anthropic):
            self.app.add_routes(api.routes())
        # OpenAI and Anthropic share this path; Anthropic's SDK says who it is.
        self.app.add_routes([web.get("/v1/models", self._models)])
        self.app.add_routes(GoogleApi(self.state, windows).routes())
        self.app.add_routes(
            [
                web.get("/_sim/knobs", self._knobs),
                web.post("/_sim/knobs/{provider}", self._set_knobs),
                web.post("/_sim/reset", self._reset),
                web.get("/_sim/calls", self._calls),
            ]
        )
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0: any free port); returns the base URL."""
        # A client that disconnects cancels its handler, as real servers notice.
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, handler_cancellation=True
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://{host}:{bound}"
        return self.url

    async def stop(self) -> None:
        self.state.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        if "anthropic-version" in request.headers:
            return await self._anthropic.models(request)
        return await self._openai.models(request)

    async def _knobs(self, _request: web.Request) -> web.Response:
        return json_response(self.state.knobs)

    async def _set_knobs(self, request: web.Request) -> web.Response:
        try:
            changes = _decoder.decode(await request.read())
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object of knobs")
            knobs = self.state.update(request.match_info["provider"], changes)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            return json_response({"error": {"type": "bad_request", "message": str(exc)}}, 400)
        return json_response(knobs)

    async def _reset(self, _request: web.Request) -> web.Response:
        self.state.reset()
        return json_response(self.state.knobs)

    async def _calls(self, _request: web.Request) -> web.Response:
        return json_response(self.state.calls)
