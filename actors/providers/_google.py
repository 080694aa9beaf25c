"""Google Gemini through ``google-genai`` (``Client(...).aio``), on its aiohttp transport.

The request body and the answer are built and read here, and sent through the SDK's
API client (its transport, authentication, base URL, timeouts and errors). The SDK's
own ``generate_content`` validates every message into pydantic models and converts
them back to a dict field by field: about 0.6 ms of event-loop time per message, a
minute for a 100,000-message request, during which the process answers nobody. The
body here costs about a microsecond a message (``benchmarks/providers.py``).
"""

from __future__ import annotations

import asyncio
import mimetypes
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import numpy as np
from google import genai
from google.genai import errors, types

from ._adapter import Adapter, Raw, RawChunk, Scored, error_for_status, parse_retry_after
from ._catalog import Catalog
from ._config import ProviderConfig
from ._errors import ContentFiltered, ContextTooLong, ProviderError, ProviderTimeout, Unavailable
from ._tokens import estimate_tokens
from ._types import (
    ChatMessage,
    FinishReason,
    ImagePart,
    NamedTool,
    ProviderRequest,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    TopLogprob,
    Usage,
)

__all__ = ["GoogleAdapter"]

_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "MODEL_ARMOR",
}
# Gemini 3 and later sign their function calls (``thoughtSignature``) and want each
# signature back with the call: it travels in the call's id after this separator. A
# replayed call with none (another model's, or a client's own) gets Google's
# documented sentinel that skips the check.
_SIGNED = ".sig."
_UNSIGNED = "skip_thought_signature_validator"
_SIGNING = re.compile(r"^(models/)?gemini-([3-9]|[1-9][0-9])")
_TOO_LONG = re.compile(r"exceeds the maximum number of tokens|input token count", re.IGNORECASE)
# Streams are bounded per chunk by the adapter; the SDK's aiohttp timeout is a
# total deadline that would cut a long, healthy stream.
_STREAM_DEADLINE_MS = 24 * 3600 * 1000
_BATCH = 100  # inputs a batchEmbedContents call takes


class GoogleAdapter(Adapter):
    """Gemini's generateContent: roles ``user``/``model``, a separate system instruction."""

    name = "google"

    def __init__(self, config: ProviderConfig, catalog: Catalog, default_model: str) -> None:
        super().__init__(config, catalog, default_model)
        options = types.HttpOptions(
            base_url=config.base_url or None,
            api_version="v1beta",
            timeout=config.timeout_ms,
            # One attempt, which also turns off the SDK's implicit retry on
            # connection errors: the breaker owns retries.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self.client = genai.Client(api_key=str(config.api_key), http_options=options).aio
        self._stream_options = options.model_copy(update={"timeout": _STREAM_DEADLINE_MS})

    async def close(self) -> None:
        await self.client.aclose()

    def _body(self, request: ProviderRequest, model: str = "") -> dict[str, Any]:
        """The generateContent body (the Gemini API's JSON, as the SDK would send it)."""
        system, turns = request.split_system()
        body: dict[str, Any] = {"contents": _contents(turns, _SIGNING.match(model) is not None)}
        if request.tools:
            body["tools"] = [{"functionDeclarations": [_declaration(t) for t in request.tools]}]
            if request.tool_choice is not None:
                body["toolConfig"] = {"functionCallingConfig": _calling(request.tool_choice)}
        if system is not None:
            body["systemInstruction"] = {"role": "user", "parts": [{"text": system}]}
        generation: dict[str, Any] = {}
        if request.temperature is not None:
            generation["temperature"] = request.temperature
        if request.top_p is not None:
            generation["topP"] = request.top_p
        if request.max_tokens is not None:
            generation["maxOutputTokens"] = request.max_tokens
        if request.stop:
            generation["stopSequences"] = list(request.stop)
        if request.seed is not None:
            generation["seed"] = request.seed
        if request.presence_penalty is not None:
            generation["presencePenalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            generation["frequencyPenalty"] = request.frequency_penalty
        if request.logprobs:
            generation["responseLogprobs"] = True
            if request.top_logprobs:
                generation["logprobs"] = request.top_logprobs
        form = request.response_format
        if form is not None and form.type != "text":
            generation["responseMimeType"] = "application/json"
            if form.json_schema is not None:  # JSON Schema as such (not the OpenAPI subset)
                generation["responseJsonSchema"] = form.json_schema.schema
        if generation:
            body["generationConfig"] = generation
        return body

    async def _generate(self, request: ProviderRequest, model: str) -> Raw:
        api = self.client._api_client
        response = await api.async_request(
            "post", f"{_model_path(model)}:generateContent", self._body(request, model)
        )
        answer = _decoder.decode(response.body or "{}")
        text, finish = self._read(answer)
        calls = [ToolCall(id=d.id, name=d.name, arguments=d.arguments) for d in _calls(answer)]
        if calls and finish == "stop":
            finish = "tool_calls"
        scores = _scores(answer)
        return Raw(text, finish or "other", _usage(answer.usage_metadata), calls, scores)

    async def _embed(self, request: ProviderRequest, model: str) -> tuple[list[bytes], Usage]:
        path = _model_path(model)
        one: dict[str, Any] = {"model": path}
        if request.dimensions is not None:
            one["outputDimensionality"] = request.dimensions
        api = self.client._api_client

        async def batch(texts: list[Any]) -> list[_Values]:
            body: dict[str, object] = {
                "requests": [one | {"content": {"parts": [{"text": t}]}} for t in texts]
            }
            response = await api.async_request("post", f"{path}:batchEmbedContents", body)
            return _embeddings(response.body or "{}").embeddings

        # The Gemini API takes at most 100 inputs a batch: larger requests go as several
        # batches at once, joined in order.
        texts = request.embed
        batches = await asyncio.gather(
            *(batch(texts[at : at + _BATCH]) for at in range(0, len(texts), _BATCH))
        )
        vectors = [np.asarray(v.values, dtype="<f4") for found in batches for v in found]
        if request.dimensions is not None:  # shortened vectors come unnormalized
            vectors = [v / (np.linalg.norm(v) or 1.0) for v in vectors]
        # The Gemini API counts no tokens for embeddings: the estimate is what is charged.
        tokens = sum(estimate_tokens(text) for text in texts if isinstance(text, str))
        return (
            [v.astype("<f4").tobytes() for v in vectors],
            Usage(input_tokens=tokens, total_tokens=tokens),
        )

    async def _stream(self, request: ProviderRequest, model: str) -> AsyncIterator[RawChunk]:
        api = self.client._api_client
        stream = await api.async_request_streamed(
            "post",
            f"{_model_path(model)}:streamGenerateContent?alt=sse",
            self._body(request, model),
            self._stream_options,
        )
        usage = Usage()
        called = 0  # Gemini sends each call whole: one delta each
        async for event in stream:
            chunk = _decoder.decode(event.body or "{}")
            text, finish = self._read(chunk)
            if chunk.usage_metadata is not None:
                usage = _usage(chunk.usage_metadata)
            if text:
                scores = _scores(chunk)
                yield Scored(text, scores) if scores else text
            for call in _calls(chunk, called):
                called += 1
                yield call
            if finish is not None:
                yield ("tool_calls" if called and finish == "stop" else finish), usage
                return

    def _read(self, response: _Response) -> tuple[str, FinishReason | None]:
        """Text and finish reason of a response (or chunk); a blocked prompt raises."""
        if not response.candidates:
            feedback = response.prompt_feedback
            if feedback is not None and feedback.block_reason is not None:
                raise ContentFiltered(
                    self.name, f"the prompt was blocked ({feedback.block_reason})"
                )
            return "", None
        candidate = response.candidates[0]
        parts = candidate.content.parts if candidate.content is not None else []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        reason = candidate.finish_reason
        if reason is None:
            return text, None
        finish: FinishReason = (
            "stop"
            if reason == "STOP"
            else "length"
            if reason == "MAX_TOKENS"
            else "content_filter"
            if reason in _FILTERED
            else "other"
        )
        return text, finish

    async def _probe(self) -> str:
        pager = await self.client.models.list(config={"page_size": 1})
        return f"models answer ({len(pager.page)} listed)"

    def _translate(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, errors.APIError):
            return self._api_error(exc)
        if isinstance(exc, errors.UnknownApiResponseError):
            return Unavailable(self.name, f"the stream broke mid-event: {exc}")
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(self.name, f"no answer within {self.timeout:g}s")
        if isinstance(exc, aiohttp.ClientError):
            return Unavailable(self.name, f"{type(exc).__name__}: {exc}")
        return None

    def _api_error(self, exc: errors.APIError) -> ProviderError:
        status = exc.code or 500
        message = exc.message or str(exc.status or "")
        if status == 400 and _TOO_LONG.search(message):
            return ContextTooLong(self.name, message, status=status)
        retry_after = _retry_delay(exc.details)
        if retry_after is None and exc.response is not None:
            retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        return error_for_status(self.name, status, message, retry_after)


def _model_path(model: str) -> str:
    """``models/{model}``, as the SDK names a model in a URL (tuned models as they are)."""
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


class _FunctionCall(msgspec.Struct):
    name: str = ""
    args: dict[str, Any] | None = None
    id: str | None = None


class _Part(msgspec.Struct, rename="camel"):
    text: str | None = None
    thought: bool | None = None
    function_call: _FunctionCall | None = None
    thought_signature: str | None = None


class _Content(msgspec.Struct):
    parts: list[_Part] = []


class _Scored(msgspec.Struct, rename="camel"):
    token: str = ""
    log_probability: float = 0.0


class _Top(msgspec.Struct):
    candidates: list[_Scored] = []


class _Logprobs(msgspec.Struct, rename="camel"):
    chosen_candidates: list[_Scored] = []
    top_candidates: list[_Top] = []


class _Candidate(msgspec.Struct, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    logprobs_result: _Logprobs | None = None


class _Feedback(msgspec.Struct, rename="camel"):
    block_reason: str | None = None


class _UsageMetadata(msgspec.Struct, rename="camel"):
    prompt_token_count: int | None = None
    candidates_token_count: int | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None


class _Response(msgspec.Struct, rename="camel"):
    """What we read of a GenerateContentResponse (or a stream chunk of one)."""

    candidates: list[_Candidate] = []
    usage_metadata: _UsageMetadata | None = None
    prompt_feedback: _Feedback | None = None


_decoder = msgspec.json.Decoder(_Response)


class _Values(msgspec.Struct):
    values: list[float] = []


class _Embeddings(msgspec.Struct):
    embeddings: list[_Values] = []


_embeddings = msgspec.json.Decoder(_Embeddings).decode


def _scores(response: _Response) -> list[TokenLogprob]:
    """The chosen tokens' log probabilities (and the likeliest alternatives), as OpenAI
    gives them."""
    found = response.candidates[0].logprobs_result if response.candidates else None
    if found is None:
        return []
    tops = found.top_candidates
    return [
        TokenLogprob(
            token=chosen.token,
            logprob=chosen.log_probability,
            top_logprobs=[TopLogprob(token=t.token, logprob=t.log_probability)
                          for t in (tops[i].candidates if i < len(tops) else [])],
        )
        for i, chosen in enumerate(found.chosen_candidates)
    ]  # fmt: skip


def _usage(metadata: _UsageMetadata | None) -> Usage:
    if metadata is None:
        return Usage()
    prompt = metadata.prompt_token_count or 0
    output = (metadata.candidates_token_count or 0) + (metadata.thoughts_token_count or 0)
    return Usage(
        input_tokens=prompt,
        output_tokens=output,
        total_tokens=metadata.total_token_count or prompt + output,
    )


def _retry_delay(details: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail ("retryDelay": "7s")."""
    error = details.get("error") if isinstance(details, dict) else None
    for detail in (error or {}).get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay", ""))
            try:
                return float(delay.removesuffix("s"))
            except ValueError:
                return None
    return None


def _contents(turns: list[ChatMessage], signatures: bool = False) -> list[dict[str, Any]]:
    """The turns as Gemini's contents: an assistant's tool calls as ``functionCall``
    parts, tool results as ``functionResponse`` parts of one user turn (the results of
    parallel calls together), each named by the function its call named."""
    names = {c.id: c.name for m in turns for c in m.tool_calls}
    contents: list[dict[str, Any]] = []
    for message in turns:
        if message.role == "tool":
            part = {"functionResponse": {"name": names.get(message.tool_call_id, ""),
                                         "response": _response(message.content)}}  # fmt: skip
            last = contents[-1] if contents else None
            if (
                last is not None
                and last["role"] == "user"
                and "functionResponse" in last["parts"][-1]
            ):
                last["parts"].append(part)
            else:
                contents.append({"role": "user", "parts": [part]})
            continue
        parts: list[dict[str, Any]] = [{"text": message.content}] if message.content else []
        parts += [_image(i) for i in message.images]
        for n, call in enumerate(message.tool_calls):
            function = {"name": call.name, "args": call.arguments_object()}
            called: dict[str, Any] = {"functionCall": function}
            signature = call.id.partition(_SIGNED)[2]
            if signature:
                called["thoughtSignature"] = signature
            elif n == 0 and signatures:  # a turn the model did not sign (another's)
                called["thoughtSignature"] = _UNSIGNED
            parts.append(called)
        role = "model" if message.role == "assistant" else "user"
        contents.append({"role": role, "parts": parts or [{"text": ""}]})
    return contents


def _response(content: str) -> dict[str, Any]:
    """A tool's result as Gemini wants it: a JSON object (a JSON object result as it is,
    anything else under ``result``)."""
    try:
        value = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return {"result": content}
    return value if isinstance(value, dict) else {"result": value}


def _declaration(tool: Tool) -> dict[str, Any]:
    """A tool as a function declaration; its parameters as JSON Schema, as they came."""
    out: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        out["description"] = tool.description
    if tool.parameters:
        out["parametersJsonSchema"] = tool.parameters
    return out


def _calling(choice: ToolChoice) -> dict[str, Any]:
    if isinstance(choice, NamedTool):
        return {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    return {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}


def _calls(response: _Response, start: int = 0) -> list[ToolCallDelta]:
    """The function calls of a response (or chunk), whole, numbered from ``start``."""
    if not response.candidates or response.candidates[0].content is None:
        return []
    found = [p for p in response.candidates[0].content.parts if p.function_call is not None]
    out = []
    for n, part in enumerate(found):
        call = part.function_call
        assert call is not None
        call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"  # unique across turns
        if part.thought_signature:  # carried in the id, the one field every client keeps
            call_id += _SIGNED + part.thought_signature
        arguments = msgspec.json.encode(call.args or {}).decode()
        out.append(ToolCallDelta(index=start + n, id=call_id, name=call.name, arguments=arguments))
    return out


def _image(image: ImagePart) -> dict[str, Any]:
    """An image as Gemini takes it: inline data, or a file URI (an https URL) with its
    media type guessed from its name (JPEG when it says nothing)."""
    data = image.data()
    if data is not None:
        return {"inlineData": {"mimeType": data[0], "data": data[1]}}
    guessed = mimetypes.guess_type(image.url.partition("?")[0])[0] or "image/jpeg"
    return {"fileData": {"fileUri": image.url, "mimeType": guessed}}
