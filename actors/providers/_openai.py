"""OpenAI through ``openai.AsyncOpenAI``, on the SDK's aiohttp transport.

Answers are decoded with msgspec: the SDK's typed ``create()`` spends more CPU
transforming parameters and building pydantic models than the whole call costs
otherwise. A whole-answer call (a chat completion, embeddings) goes out on aiohttp
directly, with the headers the SDK sends: even its low-level ``post`` (pydantic
request options, httpx URL parsing, header merging) took a third of the serving
process's CPU under load (cProfile of ``serve`` under wrk; the before and after are in
docs/performance.md). Streams and Azure's calls still go through the SDK's ``post``
(which then does the URL, auth, headers, timeout and error mapping), probes through
its ``models.list()``.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx2
import msgspec
import openai
import structlog

from ._adapter import Adapter, Raw, RawChunk, Scored, error_for_status, parse_retry_after
from ._catalog import Catalog
from ._config import ProviderConfig
from ._errors import ContentFiltered, ContextTooLong, ProviderError, ProviderTimeout, Unavailable
from ._raw import read_error, sse_events
from ._types import (
    ChatMessage,
    FinishReason,
    ProviderRequest,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
    portable_id,
)

__all__ = ["OpenAIAdapter"]

log = structlog.get_logger("providers")

_FINISH: dict[str | None, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
# Connection failures that the SDK's aiohttp transport reports as timeouts.
_REFUSED = (ConnectionRefusedError, aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError)


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: _Function | None = None


class _Text(msgspec.Struct):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Top(msgspec.Struct):
    token: str = ""
    logprob: float = 0.0


class _Scored(msgspec.Struct):
    token: str = ""
    logprob: float = 0.0
    top_logprobs: list[_Top] = []


class _Logprobs(msgspec.Struct):
    content: list[_Scored] | None = None


class _Choice(msgspec.Struct):
    message: _Text | None = None
    delta: _Text | None = None
    finish_reason: str | None = None
    logprobs: _Logprobs | None = None


class _Error(msgspec.Struct):
    message: str = ""
    type: str | None = None
    code: str | None = None


class _Answer(msgspec.Struct):
    """A chat completion, or one chunk of a streamed one."""

    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: _Error | None = None


_decode = msgspec.json.Decoder(_Answer).decode


class _Vector(msgspec.Struct):
    index: int = 0
    embedding: str = ""  # base64 of little-endian float32 (asked as base64)


class _Embeddings(msgspec.Struct):
    data: list[_Vector] = []
    usage: _Usage | None = None
    error: _Error | None = None


_decode_embeddings = msgspec.json.Decoder(_Embeddings).decode
_PASSED = ("seed", "presence_penalty", "frequency_penalty", "logit_bias", "reasoning_effort",
           "logprobs", "top_logprobs")  # fmt: skip


class OpenAIAdapter(Adapter):
    """OpenAI's chat completions API; ``model`` is the model id."""

    name = "openai"
    # Whole answers on aiohttp directly (see the module's docstring); Azure's URLs,
    # auth and API versions stay the SDK's.
    direct = True

    def __init__(self, config: ProviderConfig, catalog: Catalog, default_model: str) -> None:
        super().__init__(config, catalog, default_model)
        self.client = self._client()
        self._session: aiohttp.ClientSession | None = None
        self._proxy: str | None = None
        self._url = str(self.client.base_url).rstrip("/")
        sdk_headers = {k: v for k, v in self.client.default_headers.items() if isinstance(v, str)}
        self._headers = sdk_headers | {"Authorization": f"Bearer {self.config.api_key}"}

    def _client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            api_key=str(self.config.api_key),
            base_url=self.config.base_url or None,
            timeout=self.timeout,
            max_retries=0,  # the breaker owns retries and counts every attempt
            http_client=openai.DefaultAioHttpClient(),
        )

    async def close(self) -> None:
        await self.client.close()
        if self._session is not None:
            await self._session.close()

    async def _post(self, path: str, body: dict[str, Any]) -> bytes:
        """The answer's body to a JSON POST; a ``ProviderError`` for a refusal or a failure."""
        if not self.direct:
            sent = await self.client.post(path, body=body, cast_to=httpx2.Response)
            return sent.content
        if self._session is None:
            # As the SDK's client: a pool of 1000 connections kept 5 s, its timeout on
            # getting a connection and on each read (not on the whole answer), and the
            # HTTP(S)_PROXY of the environment, read once (aiohttp's trust_env would read
            # ~/.netrc on every request, and clash with the Authorization header).
            t = self.timeout
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, keepalive_timeout=5),
                timeout=aiohttp.ClientTimeout(connect=t, sock_connect=t, sock_read=t),
            )
            self._proxy = _proxy_for(self._url)
        try:
            async with self._session.post(
                self._url + path,
                data=msgspec.json.encode(body),
                headers=self._headers,
                proxy=self._proxy,
            ) as response:
                content = await response.read()
        except TimeoutError:  # aiohttp's socket timeouts are TimeoutErrors too
            raise ProviderTimeout(self.name, f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise Unavailable(self.name, self.redact(_describe(exc))) from exc
        if response.status >= 400:
            refused = self._refusal(response.status, content, response.headers)
            # What the SDK's own debug lines said of a refusal (as provider.sdk_error).
            log.debug("provider.refused", provider=self.name, status=response.status,
                      error=refused.message)  # fmt: skip
            raise refused
        return content

    def _refusal(self, status: int, content: bytes, headers: Mapping[str, str]) -> ProviderError:
        """The error for a refusal read off the wire, as the SDK would describe it."""
        text = content.decode(errors="replace").strip()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        error = body.get("error", body) if isinstance(body, dict) else {}
        error = error if isinstance(error, dict) else {}
        code, message = error.get("code"), error.get("message")
        if not isinstance(message, str):
            # JSON of another shape as the SDK words it; not JSON (a proxy's HTML page,
            # nothing): the status alone.
            message = f"Error code: {status}" + (f" - {body}" if body is not None else "")
        code = code if isinstance(code, str) else None
        return self._classified(status, code, self.redact(message[:_MESSAGE_MAX]), headers)

    def _target(self, model: str) -> str:
        """The name the API wants for ``model`` (Azure: its deployment)."""
        return model

    def _body(self, request: ProviderRequest, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._target(model),
            "messages": [_turn(m) for m in request.chat()],
        }
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            if request.tool_choice is not None:
                choice = request.tool_choice
                body["tool_choice"] = (
                    choice if isinstance(choice, str)
                    else {"type": "function", "function": {"name": choice.name}}
                )  # fmt: skip
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.max_tokens is not None:
            body["max_completion_tokens"] = request.max_tokens
        if request.stop:
            body["stop"] = request.stop
        if request.user:
            body["user"] = request.user
        for name in _PASSED:  # OpenAI's own parameters, as they came
            value = getattr(request, name)
            if value is not None:
                body[name] = value
        if request.response_format is not None:
            body["response_format"] = request.response_format.as_openai()
        return body

    async def _generate(self, request: ProviderRequest, model: str) -> Raw:
        answer = _decode(await self._post("/chat/completions", self._body(request, model)))
        if answer.error is not None:
            raise self._error_event(answer.error)
        if not answer.choices or answer.choices[0].message is None:
            raise Unavailable(self.name, "the answer has no choices")
        choice = answer.choices[0]
        message = choice.message
        text = message.content if message else None
        calls = [
            ToolCall(id=c.id or f"call_{n}", name=c.function.name or "",
                     arguments=c.function.arguments or "{}")
            for n, c in enumerate((message.tool_calls if message else None) or [])
            if c.function is not None
        ]  # fmt: skip
        finish = _FINISH.get(choice.finish_reason, "other")
        return Raw(text or "", finish, _usage(answer.usage), calls, _scores(choice.logprobs))

    async def _embed(self, request: ProviderRequest, model: str) -> tuple[list[bytes], Usage]:
        # Asked as base64, the vectors stay bytes from the API to the caller: no float is
        # parsed or printed on the way (the OpenAI SDK asks base64 by default too).
        body: dict[str, Any] = {
            "model": self._target(model),
            "input": request.embed,
            "encoding_format": "base64",
        }
        if request.dimensions is not None:
            body["dimensions"] = request.dimensions
        if request.user:
            body["user"] = request.user
        answer = _decode_embeddings(await self._post("/embeddings", body))
        if answer.error is not None:
            raise self._error_event(answer.error)
        vectors = sorted(answer.data, key=lambda v: v.index)
        usage = answer.usage or _Usage()
        return (
            [base64.b64decode(v.embedding) for v in vectors],
            Usage(input_tokens=usage.prompt_tokens, total_tokens=usage.prompt_tokens),
        )

    async def _stream(self, request: ProviderRequest, model: str) -> AsyncIterator[RawChunk]:
        body = self._body(request, model) | {
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        response = await self.client.post(
            "/chat/completions", body=body, cast_to=httpx2.Response, stream=True
        )
        finish: FinishReason | None = None
        final: tuple[FinishReason, Usage] | None = None
        try:
            async for _event, data in sse_events(response.aiter_lines()):
                if data.startswith("[DONE]"):
                    break
                chunk = _decode(data)
                if chunk.error is not None:
                    raise self._error_event(chunk.error)
                if chunk.choices:
                    choice = chunk.choices[0]
                    if choice.delta is not None and choice.delta.content:
                        scores = _scores(choice.logprobs)
                        yield (
                            Scored(choice.delta.content, scores) if scores else choice.delta.content
                        )
                    if choice.delta is not None and choice.delta.tool_calls:
                        for call in choice.delta.tool_calls:
                            function = call.function or _Function()
                            yield ToolCallDelta(index=call.index, id=call.id or "",
                                                name=function.name or "",
                                                arguments=function.arguments or "")  # fmt: skip
                    if choice.finish_reason is not None:
                        finish = _FINISH.get(choice.finish_reason, "other")
                if chunk.usage is not None and finish is not None:
                    final = finish, _usage(chunk.usage)  # the usage chunk comes last
            # Read on to [DONE] so the connection goes back to the pool whole.
            if final is not None:
                yield final  # without it the caller sees no final event: an error
        finally:
            await response.aclose()

    async def _probe(self) -> str:
        page = await self.client.models.list()
        return f"{len(page.data)} models"

    def _translate(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc)
        if isinstance(exc, openai.APITimeoutError):
            if _caused_by(exc, _REFUSED):
                return Unavailable(self.name, _describe(exc))
            return ProviderTimeout(self.name, f"no answer within {self.timeout:g}s")
        if isinstance(exc, openai.APIConnectionError):
            return Unavailable(self.name, _describe(exc))
        return read_error(self.name, self.timeout, exc)

    def _status_error(self, exc: openai.APIStatusError) -> ProviderError:
        return self._classified(exc.status_code, exc.code, _message(exc), exc.response.headers)

    def _classified(
        self, status: int, code: str | None, message: str, headers: Mapping[str, str]
    ) -> ProviderError:
        if code == "context_length_exceeded":
            return ContextTooLong(self.name, message, status=status)
        if code == "content_filter":
            return ContentFiltered(self.name, message, status=status)
        return error_for_status(self.name, status, message, parse_retry_after(headers))

    def _error_event(self, error: _Error) -> ProviderError:
        """An error inside a 200 answer (a stream's error event)."""
        if error.code == "context_length_exceeded":
            return ContextTooLong(self.name, error.message)
        status = 429 if error.code == "rate_limit_exceeded" else 500
        return error_for_status(self.name, status, error.message or str(error.type))


_MESSAGE_MAX = 1000  # of a refusal's message carried on


def _proxy_for(url: str) -> str | None:
    """The environment's proxy for ``url`` (HTTP(S)_PROXY, NO_PROXY), as httpx reads it."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def _usage(usage: _Usage | None) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )


def _message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.message


def _caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: BaseException) -> str:
    root: BaseException = exc
    while root.__cause__ is not None:
        root = root.__cause__
    return f"{type(root).__name__}: {root}" if root is not exc else str(exc)


def _turn(message: ChatMessage) -> dict[str, Any]:
    """One turn in OpenAI's words (an assistant's tool calls, a tool's result)."""
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}]
        for image in message.images:
            url: dict[str, Any] = {"url": image.url}
            if image.detail is not None:
                url["detail"] = image.detail
            parts.append({"type": "image_url", "image_url": url})
        out["content"] = parts
    if message.tool_calls:
        out["content"] = message.content or None
        out["tool_calls"] = [
            {
                "id": portable_id(c.id),
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in message.tool_calls
        ]
    if message.role == "tool":
        out["tool_call_id"] = portable_id(message.tool_call_id)
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    # A tool with no parameters still has an object schema (OpenAI wants one).
    parameters = tool.parameters or {"type": "object", "properties": {}}
    function: dict[str, Any] = {"name": tool.name, "parameters": parameters}
    if tool.description is not None:
        function["description"] = tool.description
    if tool.strict is not None:
        function["strict"] = tool.strict
    return {"type": "function", "function": function}


def _scores(given: _Logprobs | None) -> list[TokenLogprob]:
    if given is None or not given.content:
        return []
    return [
        TokenLogprob(token=t.token, logprob=t.logprob,
                     top_logprobs=[TopLogprob(token=a.token, logprob=a.logprob)
                                   for a in t.top_logprobs])
        for t in given.content
    ]  # fmt: skip
