"""OpenAI's chat completions, models and embeddings; Azure OpenAI's deployment paths."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import web

from ._api import Api, Call, json_response, sse
from ._text import Answer, input_tokens, instance_of
from ._vectors import DIMENSIONS, embedding

__all__ = ["AzureApi", "OpenAIApi"]

_decoder = msgspec.json.Decoder()
_PARAMS = ("seed", "presence_penalty", "frequency_penalty", "logit_bias", "reasoning_effort",
           "response_format", "user")  # fmt: skip

_OPENAI_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-3.5-turbo", "gpt-4")


class OpenAIApi(Api):
    provider = "openai"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat),
            web.post("/v1/embeddings", self.embeddings),
        ]

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "").startswith("Bearer ") and len(
            request.headers["Authorization"]
        ) > len("Bearer ")

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self.serve(request, await self._parse(request, None))

    async def _parse(self, request: web.Request, deployment: str | None) -> Call | web.Response:
        if not self._authorized(request):
            return self.error(401, "invalid_request_error", "missing or malformed credentials")
        try:
            body = _decoder.decode(await request.read())
            messages = body["messages"]
            texts = [_text_of(m.get("content")) for m in messages]
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError) as exc:
            return self.error(400, "invalid_request_error", f"malformed request: {exc}")
        model = deployment or body.get("model") or ""
        if not model:
            return self.error(400, "invalid_request_error", "you must provide a model parameter")
        too_long = _long_call_id(messages)
        if too_long is not None:  # as OpenAI refuses it
            return self.error(400, "invalid_request_error", f"Invalid '{too_long}': string too "
                              "long. Expected a string with maximum length 40.")  # fmt: skip
        max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
        options = body.get("stream_options") or {}
        extra: dict[str, Any] = {"include_usage": bool(options.get("include_usage"))}
        # OpenAI's further parameters, kept as they came (tests read them back).
        extra["params"] = {k: body[k] for k in _PARAMS if k in body}
        extra["images"] = [  # each image it was shown (tests read them back)
            (p.get("image_url") or {}).get("url", "")[:40]
            for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if isinstance(p, dict) and p.get("type") == "image_url"
        ]  # fmt: skip
        if body.get("logprobs"):
            extra["logprobs"] = int(body.get("top_logprobs") or 0)
        calls = _tool_calls(body, model)
        if calls:
            extra["calls"] = calls
        form = body.get("response_format") or {}
        if form.get("type") == "json_object":
            extra["shape"] = {}
        elif form.get("type") == "json_schema":
            extra["shape"] = (form.get("json_schema") or {}).get("schema") or {}
        return Call(
            provider=self.provider,
            model=model,
            texts=texts,
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            extra=extra,
        )

    def error(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        if status == 429:
            body["error"]["code"] = "rate_limit_exceeded"
        return json_response(body, status, headers)

    def context_error(self, call: Call, tokens: int, window: int) -> web.Response:
        message = (
            f"This model's maximum context length is {window} tokens. However, your messages "
            f"resulted in {tokens} tokens. Please reduce the length of the messages."
        )
        body = {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
        return json_response(body, 400)

    def blocked(self, call: Call) -> web.Response:
        body = {
            "error": {
                "message": "The response was filtered due to the prompt triggering the "
                "content management policy (simulated).",
                "type": None,
                "param": "prompt",
                "code": "content_filter",
            }
        }
        return json_response(body, 400)

    def _head(self, call: Call) -> dict[str, Any]:
        digest = hashlib.sha256("\x00".join(call.texts).encode()).hexdigest()[:24]
        return {"id": f"chatcmpl-{digest}", "created": int(time.time()), "model": call.model}

    def complete(self, call: Call, result: Answer) -> web.Response:
        message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
        finish: str = result.finish
        calls = call.extra.get("calls")
        if calls:
            message["content"] = None
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in calls
            ]
            finish = "tool_calls"
        scores = _scores(result.pieces, call.extra.get("logprobs"))
        body = self._head(call) | {
            "object": "chat.completion",
            "choices": [
                {"index": 0, "message": message, "logprobs": scores, "finish_reason": finish}
            ],
            "usage": _usage(result),
            "system_fingerprint": "fp_simulated",
        }
        return json_response(body)

    def events(self, call: Call, result: Answer) -> Iterator[bytes]:
        head = self._head(call) | {"object": "chat.completion.chunk"}

        def chunk(delta: dict[str, Any], finish: str | None, scores: Any = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": scores, "finish_reason": finish}
            return sse(head | {"choices": [choice]})

        calls = call.extra.get("calls")
        if calls:  # each call: its id and name, then its arguments in two pieces
            yield chunk({"role": "assistant", "content": None}, None)
            for index, (call_id, name, arguments) in enumerate(calls):
                first = {"index": index, "id": call_id, "type": "function",
                         "function": {"name": name, "arguments": ""}}  # fmt: skip
                yield chunk({"tool_calls": [first]}, None)
                half = len(arguments) // 2
                for part in (arguments[:half], arguments[half:]):
                    more = {"index": index, "function": {"arguments": part}}
                    yield chunk({"tool_calls": [more]}, None)
            yield chunk({}, "tool_calls")
        else:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in result.pieces:
                yield chunk({"content": piece}, None, _scores([piece], call.extra.get("logprobs")))
            yield chunk({}, result.finish)
        if call.extra.get("include_usage"):
            yield sse(head | {"choices": [], "usage": _usage(result)})
        yield sse(b"[DONE]")

    async def models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error(401, "invalid_request_error", "missing or malformed credentials")
        refusal = await self.gate(request)
        if refusal is not None:
            return refusal
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "system"} for m in _OPENAI_MODELS
        ]
        return json_response({"object": "list", "data": data})

    async def embeddings(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self.error(401, "invalid_request_error", "missing or malformed credentials")
        refusal = await self.gate(request)
        if refusal is not None:
            return refusal
        body = _decoder.decode(await request.read())
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if texts and all(isinstance(t, int) for t in texts):
            texts = [texts]  # one input of token ids
        if not texts or not all(_embeddable(t) for t in texts):
            return self.error(400, "invalid_request_error", "'$.input' is invalid: give "
                              "non-empty strings or arrays of token ids")  # fmt: skip
        model = str(body.get("model", ""))
        if body.get("dimensions") is not None and model == "text-embedding-ada-002":
            return self.error(400, "invalid_request_error",
                              "This model does not support specifying dimensions.")  # fmt: skip
        dimensions = int(body.get("dimensions") or DIMENSIONS.get(model, 1536))
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embedding(text, dimensions)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        words = [t for t in texts if isinstance(t, str)]
        tokens = (input_tokens(words) - 3 - 3 * len(words) if words else 0) + sum(
            len(t) for t in texts if isinstance(t, list)
        )
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return json_response(
            {"object": "list", "data": data, "model": body.get("model", ""), "usage": usage}
        )


def _embeddable(item: Any) -> bool:
    if isinstance(item, str):
        return bool(item)
    return isinstance(item, list) and bool(item) and all(isinstance(t, int) for t in item)


class AzureApi(OpenAIApi):
    provider = "azure"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/openai/deployments/{deployment}/chat/completions", self.azure_chat),
            web.post("/openai/deployments/{deployment}/embeddings", self.azure_embeddings),
            web.get("/openai/models", self.azure_models),
        ]

    def _authorized(self, request: web.Request) -> bool:
        return bool(request.headers.get("api-key")) or super()._authorized(request)

    def _version_error(self, request: web.Request) -> web.Response | None:
        if not request.query.get("api-version"):
            return self.error(404, "404", "Resource not found: the api-version query is required")
        return None

    async def azure_chat(self, request: web.Request) -> web.StreamResponse:
        refused = self._version_error(request)
        if refused is not None:
            return refused
        return await self.serve(
            request, await self._parse(request, request.match_info["deployment"])
        )

    async def azure_embeddings(self, request: web.Request) -> web.Response:
        return self._version_error(request) or await self.embeddings(request)

    async def azure_models(self, request: web.Request) -> web.Response:
        return self._version_error(request) or await self.models(request)


def _usage(result: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": result.input_tokens,
        "completion_tokens": result.output_tokens,
        "total_tokens": result.input_tokens + result.output_tokens,
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if content is None:
        return ""
    raise TypeError("message content must be a string or a list of parts")


def _tool_calls(body: dict[str, Any], model: str) -> list[tuple[str, str, str]]:
    """The calls a model with tools makes: when the last turn is not a tool's result and
    tool_choice allows, the named tool, or the first tool (the first two with parallel
    calls allowed), with arguments that follow each tool's parameters."""
    tools = [t.get("function") or {} for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice", "auto")
    messages = body.get("messages") or [{}]
    if not tools or choice == "none" or messages[-1].get("role") == "tool":
        return []
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        chosen = [t for t in tools if t.get("name") == wanted]
    elif body.get("parallel_tool_calls", True) is not False and len(tools) > 1:
        chosen = tools[:2]
    else:
        chosen = tools[:1]
    seed = model + json.dumps(messages, sort_keys=True)
    out = []
    for index, tool in enumerate(chosen):
        arguments = instance_of(tool.get("parameters") or {}, f"{seed}{index}")
        call_id = "call_" + hashlib.sha256(f"{seed}{index}".encode()).hexdigest()[:20]
        out.append((call_id, str(tool.get("name", "")), json.dumps(arguments)))
    return out


def _long_call_id(messages: list[Any]) -> str | None:
    """Where a tool call id is longer than OpenAI's 40 characters, or None."""
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        for k, call in enumerate(message.get("tool_calls") or []):
            if isinstance(call, dict) and len(str(call.get("id", ""))) > 40:
                return f"messages[{n}].tool_calls[{k}].id"
        if len(str(message.get("tool_call_id", ""))) > 40:
            return f"messages[{n}].tool_call_id"
    return None


def _scores(pieces: list[str], top: int | None) -> dict[str, Any] | None:
    """Log probabilities of the answer's pieces, one token each (as asked: ``top``
    alternatives each), made up but the same for the same piece."""
    if top is None:
        return None
    content = []
    for piece in pieces:
        logprob = -(len(piece) % 7) / 10 - 0.01
        alternatives = [{"token": piece, "logprob": logprob, "bytes": None}]
        alternatives += [{"token": f"{piece}{n}", "logprob": logprob - n, "bytes": None}
                         for n in range(1, top)]  # fmt: skip
        content.append({"token": piece, "logprob": logprob, "bytes": None,
                        "top_logprobs": alternatives[:top]})  # fmt: skip
    return {"content": content, "refusal": None}
