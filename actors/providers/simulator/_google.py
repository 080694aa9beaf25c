"""Gemini's generateContent / streamGenerateContent and models list."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import web

from ._api import Api, Call, json_response, sse
from ._text import Answer, instance_of
from ._vectors import DIMENSIONS, embedding

__all__ = ["GoogleApi"]

_decoder = msgspec.json.Decoder()

_MODELS = (
    "gemini-1.5-flash",
    "gemini-1.5-pro",
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "gemini-2.5-pro",
)
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS"}
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


class GoogleApi(Api):
    provider = "google"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/{version}/models/{model}:generateContent", self.generate),
            web.post("/{version}/models/{model}:streamGenerateContent", self.generate),
            web.post("/{version}/models/{model}:batchEmbedContents", self.embed),
            web.get("/{version}/models", self.models),
        ]

    def _refused(self, request: web.Request) -> web.Response | None:
        if not (request.headers.get("x-goog-api-key") or request.query.get("key")):
            return self.error(401, "", "API key not valid. Please pass a valid API key.")
        return None

    async def generate(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        stream = request.path.endswith(":streamGenerateContent")
        if stream and request.query.get("alt") != "sse":
            return self.error(400, "", "the simulator streams only with alt=sse")
        try:
            body = _decoder.decode(await request.read())
            system = body.get("systemInstruction") or body.get("system_instruction")
            roles = {c.get("role", "user") for c in body["contents"]}
            if not roles <= {"user", "model"}:
                raise TypeError(f"contents: roles must be user or model, not {roles}")
            texts = ([_parts_text(system)] if system else []) + [
                _parts_text(c) for c in body["contents"]
            ]
            config = body.get("generationConfig") or body.get("generation_config") or {}
            max_tokens = config.get("maxOutputTokens") or config.get("max_output_tokens")
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError) as exc:
            return self.error(400, "", f"Invalid JSON payload received: {exc!r}")
        model = request.match_info["model"]
        if _SIGNING.match(model) and _unsigned(body["contents"]):
            return self.error(400, "", "Function call is missing a thought_signature in "
                              "functionCall parts.")  # fmt: skip
        extra: dict[str, Any] = {"params": dict(config)}  # tests read them back
        extra["images"] = [  # each image it was shown, by how it came
            "inlineData" if "inlineData" in p else "fileData"
            for c in body["contents"] for p in c.get("parts") or []
            if isinstance(p, dict) and ("inlineData" in p or "fileData" in p)
        ]  # fmt: skip
        calls = _function_calls(body, model)
        if calls:
            extra["calls"] = calls
        if config.get("responseLogprobs"):
            extra["logprobs"] = int(config.get("logprobs") or 0)
        elif "logprobs" in config:
            return self.error(400, "", "logprobs is only valid with responseLogprobs")
        if config.get("responseMimeType") == "application/json":
            extra["shape"] = config.get("responseJsonSchema") or config.get("responseSchema") or {}
        call = Call(self.provider, model, texts, max_tokens, stream, extra)
        return await self.serve(request, call)

    def error(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": _STATUS.get(status, "UNKNOWN"),
        }
        if status == 429 and headers and "Retry-After" in headers:
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{headers['Retry-After']}s",
                }
            ]
        return json_response({"error": error}, status, headers)

    def context_error(self, call: Call, tokens: int, window: int) -> web.Response:
        message = (
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({window})."
        )
        return self.error(400, "", message)

    def blocked(self, call: Call) -> web.Response:
        body = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 0, "totalTokenCount": 0},
            "modelVersion": call.model,
        }
        return json_response(body)

    def _response(
        self, call: Call, text: str, finish: str | None, usage: Answer | None,
        pieces: list[str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        parts: list[dict[str, Any]] = [{"text": text}]
        if call.extra.get("calls"):
            parts = [{"functionCall": {"name": n, "args": a}} for n, a in call.extra["calls"]]
            if _SIGNING.match(call.model):  # Gemini 3 signs the first call of a turn
                parts[0]["thoughtSignature"] = "c2ltdWxhdGVkLXNpZ25hdHVyZQ=="
        candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        if "logprobs" in call.extra and text:
            candidate["logprobsResult"] = _scores(pieces or [text], call.extra["logprobs"])
        if finish:
            candidate["finishReason"] = finish
        body: dict[str, Any] = {
            "candidates": [candidate],
            "modelVersion": call.model,
            "responseId": hashlib.sha256("\x00".join(call.texts).encode()).hexdigest()[:22],
        }
        if usage is not None:
            body["usageMetadata"] = {
                "promptTokenCount": usage.input_tokens,
                "candidatesTokenCount": usage.output_tokens,
                "totalTokenCount": usage.input_tokens + usage.output_tokens,
            }
        return body

    def complete(self, call: Call, result: Answer) -> web.Response:
        return json_response(
            self._response(call, result.text, _FINISH[result.finish], result, result.pieces)
        )

    def events(self, call: Call, result: Answer) -> Iterator[bytes]:
        if call.extra.get("calls"):  # Gemini streams each call whole
            yield sse(self._response(call, "", "STOP", result))
            return
        pieces = result.pieces
        for piece in pieces[:-1]:
            yield sse(self._response(call, piece, None, None))
        yield sse(
            self._response(call, pieces[-1] if pieces else "", _FINISH[result.finish], result)
        )

    async def embed(self, request: web.Request) -> web.Response:
        """batchEmbedContents: one vector per request's text (no token counts: the
        Gemini API gives none for embeddings)."""
        refused = self._refused(request)
        if refused is not None:
            return refused
        refusal = await self.gate(request)
        if refusal is not None:
            return refusal
        model = request.match_info["model"]
        vectors = []
        asked = _decoder.decode(await request.read()).get("requests") or []
        if len(asked) > 100:
            return self.error(400, "", "BatchEmbedContentsRequest.requests: at most 100 "
                              "requests can be in one batch")  # fmt: skip
        for index, one in enumerate(asked):
            if one.get("model") != f"models/{model}":
                return self.error(400, "", f"requests[{index}].model must be models/{model}")
            text = _parts_text(one.get("content"))
            if not text:
                return self.error(400, "", f"requests[{index}].content has no text")
            dimensions = int(one.get("outputDimensionality") or DIMENSIONS.get(model, 768))
            vectors.append({"values": embedding(text, dimensions)})
        if not vectors:
            return self.error(400, "", "requests: at least one is needed")
        return json_response({"embeddings": vectors})

    async def models(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        if refused is not None:
            return refused
        refusal = await self.gate(request)
        if refusal is not None:
            return refusal
        models = [
            {
                "name": f"models/{m}",
                "displayName": m,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
                "inputTokenLimit": self._windows.get(m, 1_048_576),
                "outputTokenLimit": 8192,
            }
            for m in _MODELS
        ]
        return json_response({"models": models})


def _scores(pieces: list[str], top: int) -> dict[str, Any]:
    """Gemini's logprobsResult for the answer's pieces, one token each (made up, the
    same for the same piece), with ``top`` alternatives each."""
    scores = [-(len(p) % 7) / 10 - 0.01 for p in pieces]
    chosen = [{"token": p, "logProbability": v} for p, v in zip(pieces, scores, strict=True)]
    tops = [
        {"candidates": [{"token": p if n == 0 else f"{p}{n}", "logProbability": v - n}
                        for n in range(top)]}
        for p, v in zip(pieces, scores, strict=True)
    ]  # fmt: skip
    return {"chosenCandidates": chosen, "topCandidates": tops}


def _parts_text(content: Any) -> str:
    parts = content.get("parts") if isinstance(content, dict) else None
    if not isinstance(parts, list):
        raise TypeError("content needs a list of parts")
    return "".join(p.get("text", "") for p in parts if isinstance(p, dict))


def _function_calls(body: dict[str, Any], model: str) -> list[tuple[str, Any]]:
    """The calls a model with function declarations makes (as the OpenAI API's do):
    none after a function's result or with mode NONE; the allowed one with ANY and
    allowedFunctionNames; else the first declaration (the first two when there are
    more), with arguments that follow its parameters."""
    declared = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
    config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    contents = body.get("contents") or [{}]
    answered = any("functionResponse" in p for p in contents[-1].get("parts") or [])
    if not declared or config.get("mode") == "NONE" or answered:
        return []
    allowed = config.get("allowedFunctionNames")
    chosen = [d for d in declared if d.get("name") in allowed] if allowed else declared[:2]
    seed = model + repr(contents)
    return [
        (str(d.get("name", "")),
         instance_of(d.get("parametersJsonSchema") or d.get("parameters") or {}, f"{seed}{n}"))
        for n, d in enumerate(chosen)
    ]  # fmt: skip


# Gemini 3 and later sign function calls and refuse a replayed model turn whose first
# call carries no signature (Google's sentinel skip_thought_signature_validator passes).
_SIGNING = re.compile(r"^gemini-([3-9]|[1-9][0-9])")


def _unsigned(contents: list[Any]) -> bool:
    for content in contents:
        if not isinstance(content, dict) or content.get("role") != "model":
            continue
        calls = [
            p for p in content.get("parts") or [] if isinstance(p, dict) and "functionCall" in p
        ]
        if calls and not calls[0].get("thoughtSignature"):
            return True
    return False
