"""OpenAI's ``POST /v1/embeddings``: inputs to embed go to the router as a request like
any other (admission, limits, quotas, cost, fallback across the providers that serve
the model), and the vectors come back in OpenAI's shape, as floats or as base64.

The vectors travel as little-endian float32 bytes from the provider's answer to the
caller: asked as base64 (the OpenAI SDK's default), they are never parsed as floats.
"""

from __future__ import annotations

import base64
import struct
import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from aiohttp import web

from bus import BusError

from ..client import GenerateError
from ..messages import GenerateRequest, GenerateResponse, UserId
from ..providers import Dimensions, EmbedInputs
from ._bodies import BadInput, bus_failure, decode, json_response, limit_headers
from ._callers import Refused
from ._openai import failure_args, openai_error, route_headers, wait_on_limit

if TYPE_CHECKING:
    from ._app import Gateway

__all__ = ["EmbeddingsApi", "EmbeddingsBody"]


class EmbeddingsBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """OpenAI's embeddings request: ``input`` a text, texts, token ids or lists of them."""

    model: str
    input: str | list[Any]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Dimensions | None = None
    user: UserId | None = None

    def inputs(self) -> EmbedInputs:
        """The inputs as a list (one text or one list of token ids is one input)."""
        given = self.input
        if isinstance(given, str):
            return [given]
        if not given:
            raise ValueError("input: give at least one text (or list of token ids)")
        if all(isinstance(item, int) for item in given):
            given = [given]
        try:
            return msgspec.convert(given, EmbedInputs)
        except msgspec.ValidationError as exc:
            raise ValueError(
                f"input: each input is a text or a list of token ids, at most 2048 of them ({exc})"
            ) from None


class EmbeddingsApi:
    """The route; the gateway's own parts (client, callers, bounds) do the work."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/embeddings", self.embeddings)]

    async def embeddings(self, request: web.Request) -> web.Response:
        gateway = self.gateway
        try:
            body: EmbeddingsBody = decode(await request.read(), EmbeddingsBody)
            gateway.check_model(body.model)
            user_id, tier = await gateway.callers.end_user(request, body.user)
            ask = gateway.bounded(GenerateRequest(
                request_id=gateway.new_request_id(request),
                embed=body.inputs(),
                dimensions=body.dimensions,
                user_id=user_id,
                tier=tier,
                model=body.model,
                wait_on_limit=wait_on_limit(request),
                timeout_ms=gateway.client.timeout_ms,
            ))  # fmt: skip
        except Refused as exc:
            return openai_error(exc.status, "invalid_api_key" if exc.status == 401 else exc.kind,
                                exc.message)  # fmt: skip
        except BadInput as exc:
            return openai_error(exc.status, exc.kind, str(exc))
        except ValueError as exc:
            return openai_error(400, "invalid_request", str(exc))
        started = time.perf_counter()
        try:
            answer = await gateway.client.generate(ask)
        except GenerateError as exc:
            return openai_error(*failure_args(exc.failed))
        except BusError as exc:
            return openai_error(*bus_failure(exc), ask.request_id)
        gateway.observe_overhead(started, answer)
        headers = route_headers(answer) | limit_headers(answer.limits)
        return json_response(embeddings_body(answer, body.encoding_format), headers=headers)


def embeddings_body(answer: GenerateResponse, encoding: str) -> dict[str, Any]:
    """OpenAI's embeddings answer."""
    data = [
        {"object": "embedding", "index": index, "embedding": _encoded(vector, encoding)}
        for index, vector in enumerate(answer.embeddings)
    ]
    tokens = answer.usage.input_tokens
    return {
        "object": "list",
        "data": data,
        "model": answer.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoded(vector: bytes, encoding: str) -> str | list[float]:
    if encoding == "base64":
        return base64.b64encode(vector).decode()
    return list(struct.unpack(f"<{len(vector) // 4}f", vector))  # float32, little-endian
