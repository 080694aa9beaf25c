"""``GET /openapi.json``: every endpoint of the gateway, with schemas from the bodies."""

from __future__ import annotations

from typing import Any

import msgspec

from ..messages import CacheReport, UserId
from ..runtime.config import LimitChanges, QuotaChanges
from ._anthropic_api import MessagesBody
from ._bodies import ErrorBody, GenerateBody, ResponseBody
from ._cache_api import ClearBody, WarmBody
from ._embeddings_api import EmbeddingsBody
from ._keys_api import NewKeyBody
from ._openai import ChatCompletionBody
from ._responses_api import ResponsesBody

__all__ = ["openapi_document"]


def _json(ref: str, description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }


_ERRORS = {
    "400": _json("ErrorBody", "Invalid JSON, a field of the wrong type or out of range (the "
                 "message names the field), or too long for every candidate"),
    "404": _json("ErrorBody", "An unknown model (model_not_found)"),
    "429": _json("ErrorBody", "A rate limit or quota refused the request: Retry-After (seconds) "
                 "and X-RateLimit-Limit-*/-Remaining-*/-Reset-* per limit"),
    "503": _json("ErrorBody", "No provider could answer (Retry-After when known), or limits "
                 "could not be checked and the admission policy is fail_closed"),
    "504": _json("ErrorBody", "The request's deadline passed"),
}  # fmt: skip


def _generate(summary: str, description: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": description,
            "parameters": [
                {
                    "name": "X-Request-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},
                    "description": "Your id for the request (default: a new one)",
                }
            ],
            "requestBody": {"required": True, **_json("GenerateBody", "The request")},
            "responses": {"200": _json("ResponseBody", "The answer"), **_ERRORS},
        }
    }


_SECURITY_SCHEMES = {
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin token: AIO_ADMIN_TOKEN or gateway.admin_token; `run.py "
        "serve` makes one and prints it at start when none is set",
    }
}


def _management(paths: dict[str, Any]) -> dict[str, Any]:
    """The management endpoints: the admin token, and a JSON body type for a change."""
    for operations in paths.values():
        for method, operation in operations.items():
            operation["security"] = [{"adminToken": []}]
            operation["responses"]["401"] = _json(
                "ErrorBody", "No admin token, or a wrong one (WWW-Authenticate: Bearer)"
            )
            if method != "get":
                operation["responses"]["415"] = _json(
                    "ErrorBody", "Not `Content-Type: application/json` (the body may be empty "
                    "where the endpoint takes none)"
                )  # fmt: skip
    return paths


def _breaker_move(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": "provider", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "The breaker's state after the move"},
                "404": _json("ErrorBody", "No such provider"),
            },
        }
    }


_USER_ID = msgspec.json.schema(UserId)


def _user_path(summary: str, method: str, body: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [
            {"name": "user_id", "in": "path", "required": True, "schema": _USER_ID}
        ],
        "responses": {
            "200": {"description": "The user's limits, usage and remaining amounts"},
            "400": _json("ErrorBody", "A bad user id, or a limit that is not a number, "
                         "negative, over its maximum or (a count) not whole; the message names "
                         "the field"),
            "503": _json("ErrorBody", "Redis cannot be reached"),
        },
    }  # fmt: skip
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            **_json(body, "Only the limits named change; null means unlimited; costs in USD"),
        }
    return {method: operation}


def _limit_paths() -> dict[str, Any]:
    quotas, limits = "/ai-orchestration/quotas/{user_id}", "/ai-orchestration/rate-limits/{user_id}"
    return {
        quotas: _user_path("A user's quotas: limit, used, remaining, reset time", "get"),
        quotas + "/config": _user_path(
            "Override some of a user's quotas (kept in Redis)", "put", "QuotaChanges"
        ),
        quotas + "/reset": _user_path("Forget a user's usage this period (overrides stay)", "post"),
        limits: _user_path("A user's rate limits: limit, used, remaining, reset in", "get"),
        limits + "/config": _user_path(
            "Override some of a user's rate limits", "put", "LimitChanges"
        ),
        limits + "/reset": _user_path("Forget a user's recent requests (overrides stay)", "post"),
    }


def _cache_paths() -> dict[str, Any]:
    stats = _json("CacheReport", "Hits by level, misses, hit rate, entries, bytes, evictions, "
                  "coalesced requests; with what the command did (cleared, warmed)")  # fmt: skip
    failed = _json("ErrorBody", "The cache did not answer in time (no cache actor running)")
    return {
        "/ai-orchestration/cache/stats": {
            "get": {
                "summary": "The cache's counts, over every process",
                "responses": {"200": stats, "503": failed, "504": failed},
            }
        },
        "/ai-orchestration/cache/clear": {
            "post": {
                "summary": "Forget cached answers: all, one user's or one model's",
                "requestBody": {"required": False, **_json("ClearBody", "What to forget")},
                "responses": {
                    "200": stats,
                    "400": _json("ErrorBody", "An unknown model"),
                    "503": failed,
                    "504": failed,
                },
            }
        },
        "/ai-orchestration/cache/warm": {
            "post": {
                "summary": "Store answers ahead of time (all or none)",
                "requestBody": {"required": True, **_json("WarmBody", "The entries")},
                "responses": {
                    "200": stats,
                    "400": _json(
                        "ErrorBody",
                        "An entry that is wrong, named with its field; "
                        "nothing of the batch is stored",
                    ),
                    "503": failed,
                    "504": failed,
                },
            }
        },
    }


def _query(name: str, low: int, high: int, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "integer", "minimum": low, "maximum": high}}  # fmt: skip


def _monitor_paths() -> dict[str, Any]:
    """What the dashboard reads beside the stats (management: they name users)."""
    bad = _json("ErrorBody", "A query parameter out of range, or unknown")
    return {
        "/ai-orchestration/users": {
            "get": {
                "summary": "One page of this day's or month's users: requests, tokens, cost "
                "and rejections, by any of them",
                "parameters": [
                    {
                        "name": "period",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["daily", "monthly"]},
                    },
                    {
                        "name": "sort",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["cost", "tokens", "requests", "rejections"]},
                    },
                    _query("offset", 0, 1_000_000, "Users to skip (default 0)"),
                    _query("limit", 1, 200, "Users in the page (default 20)"),
                    {
                        "name": "limits",
                        "in": "query",
                        "required": False,
                        "description": "true: each user's rate limits and quotas too",
                        "schema": {"enum": ["true", "false"]},
                    },
                ],
                "responses": {"200": {"description": "total, and the page"}, "400": bad},
            }
        },
        "/ai-orchestration/alerts": {
            "get": {
                "summary": "The alerts on {ns}:alerts after an entry id, oldest first "
                "(without one: the latest)",
                "parameters": [
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                    },
                    _query("limit", 1, 500, "Alerts at most (default 50)"),
                ],
                "responses": {"200": {"description": "alerts, and last_id"}, "400": bad},
            }
        },
        "/ai-orchestration/bus": {
            "get": {
                "summary": "The bus: each stream's length, its groups' consumers, pending "
                "entries and lag; the dead letters (how many, the latest ten)",
                "responses": {"200": {"description": "streams and dead_letters"}},
            }
        },
    }


def _stats_path() -> dict[str, Any]:
    return {
        "get": {
            "summary": "The whole deployment's numbers as JSON: requests, cache hit rate, "
            "per-provider calls, error rate and latency p50/p95/p99, rejections, breakers, "
            "health, tokens, cost, pending entries, dead letters",
            "responses": {
                "200": {"description": "The stats"},
                "503": _json("ErrorBody", "No metrics actor answered"),
                "504": _json("ErrorBody", "No metrics actor answered in time"),
            },
        }
    }


def _schemas() -> dict[str, Any]:
    """The bodies' schemas, generated from their Structs, with the rules a body declares
    beside its ``__post_init__`` (``SCHEMA_RULES``)."""
    bodies = [GenerateBody, ResponseBody, ErrorBody, ChatCompletionBody, QuotaChanges,
              LimitChanges, ClearBody, WarmBody, CacheReport, NewKeyBody, EmbeddingsBody,
              ResponsesBody, MessagesBody]  # fmt: skip
    _refs, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    for body in bodies:
        if hasattr(body, "SCHEMA_RULES"):
            components[body.__name__]["allOf"] = [body.SCHEMA_RULES]
    # A warm entry, like a generate body: a prompt or messages with a turn, not both.
    components["WarmEntry"]["allOf"] = [GenerateBody.SCHEMA_RULES]
    return components


def _edge(summary: str, description: str, body: str) -> dict[str, Any]:
    """A provider-compatible POST route: its body, a JSON answer (or SSE), the errors."""
    answer = {"application/json": {"schema": {"type": "object"}},
              "text/event-stream": {"schema": {"type": "string"}}}  # fmt: skip
    return {
        "post": {
            "summary": summary,
            "description": description,
            "requestBody": {"required": True, **_json(body, "The request")},
            "responses": {"200": {"description": "The answer", "content": answer}, **_ERRORS},
        }
    }


def openapi_document() -> dict[str, Any]:
    components = _schemas()
    sse = {"text/event-stream": {"schema": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI orchestration gateway",
            "version": "0.1.0",
            "description": "One gateway in front of OpenAI, Anthropic, Google Gemini and Azure "
            "OpenAI: provider choice, fallback, circuit breakers.",
        },
        "paths": {
            "/ai-orchestration/generate": _generate(
                "Generate an answer",
                "Fails with 503 when no candidate answers, 504 past the deadline.",
            ),
            "/ai-orchestration/generate-with-fallback": _generate(
                "Generate an answer, or a system answer",
                "Never fails for a provider's sake: when no candidate answers it answers 200 "
                "with a system response, `fallback: true` and the reason.",
            ),
            "/v1/chat/completions": {
                "post": {
                    "summary": "OpenAI-compatible chat completions",
                    "description": "Any OpenAI SDK works unchanged; `model` may be a catalog "
                    "model, an alias, a tier or provider/model; `user` is the user id. With "
                    "`stream: true`, SSE chunks (the usage chunk with "
                    "`stream_options.include_usage`); a failure after the first text ends "
                    "the stream with an error event.",
                    "requestBody": {"required": True, **_json("ChatCompletionBody", "The request")},
                    "responses": {
                        "200": {
                            "description": "A chat.completion, or its chunks as SSE",
                            "content": {"application/json": {"schema": {"type": "object"}}, **sse},
                        },
                        **_ERRORS,
                    },
                }
            },
            "/v1/embeddings": _edge(
                "OpenAI-compatible embeddings",
                "Embedding models of OpenAI, Azure and Gemini; vectors as floats or base64.",
                "EmbeddingsBody",
            ),
            "/v1/responses": _edge(
                "OpenAI's Responses API (not stored)",
                "Text, multi-turn input, instructions, function tools, text.format; with "
                "`stream: true`, the Responses event sequence as SSE.",
                "ResponsesBody",
            ),
            "/v1/messages": _edge(
                "Anthropic's Messages API",
                "Routed to any provider; Anthropic's answer, events and error shape.",
                "MessagesBody",
            ),
            "/v1/models": {
                "get": {
                    "summary": "Models, aliases and tiers one can ask for",
                    "responses": {"200": {"description": "An OpenAI model list"}},
                }
            },
            **_management(
                {
                    "/ai-orchestration/circuit-breakers": {
                        "get": {
                            "summary": "Every provider's circuit breaker",
                            "responses": {"200": {"description": "The breakers' states"}},
                        }
                    },
                    "/ai-orchestration/circuit-breakers/{provider}/reset": _breaker_move(
                        "Close a breaker (and clear a rejected key)"
                    ),
                    "/ai-orchestration/circuit-breakers/{provider}/open": _breaker_move(
                        "Force a breaker open until the next reset"
                    ),
                    **_limit_paths(),
                    **_cache_paths(),
                    "/ai-orchestration/keys": {
                        "post": {
                            "summary": "Make a client key for a user (and tier): the key is "
                            "in the answer, this once; it is kept hashed",
                            "requestBody": {
                                "required": True,
                                **_json("NewKeyBody", "Whose key"),
                            },
                            "responses": {
                                "200": {"description": "key, id, user_id, tier"},
                                "400": _json("ErrorBody", "A bad user id or an unknown tier"),
                            },
                        },
                        "get": {
                            "summary": "The client keys: ids, users, tiers (never the keys)",
                            "responses": {"200": {"description": "The keys"}},
                        },
                    },
                    "/ai-orchestration/keys/{id}/revoke": {
                        "post": {
                            "summary": "Revoke a client key by id (it stops working within "
                            "5 s everywhere)",
                            "parameters": [
                                {
                                    "name": "id",
                                    "in": "path",
                                    "required": True,
                                    "schema": {"type": "string"},
                                }
                            ],
                            "responses": {"200": {"description": "How many were revoked"}},
                        }
                    },
                    "/ai-orchestration/monitoring/reset": {
                        "post": {
                            "summary": "Start the deployment's numbers over (/metrics and stats)",
                            "responses": {"200": {"description": "The stats, now empty"}},
                        }
                    },
                    **_monitor_paths(),
                }
            ),
            "/ai-orchestration/monitoring/timeline": {
                "get": {
                    "summary": "The last hour's traffic in ten-second steps: requests, errors, "
                    "rejections, cache hits, cost, latency p50 and p95",
                    "parameters": [_query("minutes", 1, 60, "The window (default 60)")],
                    "responses": {
                        "200": {"description": "step_s and the points, oldest first"},
                        "400": _json("ErrorBody", "minutes out of range"),
                        "504": _json("ErrorBody", "No metrics actor answered in time"),
                    },
                }
            },
            "/dashboard": {
                "get": {
                    "summary": "The operators' dashboard (a page; its data needs the admin "
                    "token, typed into its login form)",
                    "responses": {"200": {"description": "text/html"}},
                }
            },
            "/ai-orchestration/stats": _stats_path(),
            "/ai-orchestration/monitoring/stats": _stats_path(),
            "/metrics": {
                "get": {
                    "summary": "The deployment's numbers (and this process's own), in the "
                    "Prometheus text format",
                    "responses": {"200": {"description": "text/plain; version=0.0.4"}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
            "/health": {
                "get": {
                    "summary": "Liveness of this gateway process",
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (for Kubernetes): the process serves",
                    "responses": {"200": {"description": "alive"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: Redis answers and this process's actors run",
                    "responses": {
                        "200": {"description": "ready"},
                        "503": _json("ErrorBody", "Not ready (`not_ready`), and why"),
                    },
                }
            },
            "/ai-orchestration/health": {
                "get": {
                    "summary": "Each provider's health: status (healthy, degraded, down), "
                    "probe latency, recent error rate, last check, breaker state, why",
                    "responses": {
                        "200": {"description": "The providers' health and the worst status"},
                        "503": _json("ErrorBody", "No health prober answered"),
                        "504": _json("ErrorBody", "No health prober answered in time"),
                    },
                }
            },
            "/ai-orchestration/healthy-providers": {
                "get": {
                    "summary": "The providers a request may go to now (healthy, breaker closed)",
                    "responses": {
                        "200": {"description": "Their names"},
                        "503": _json("ErrorBody", "No health prober answered"),
                        "504": _json("ErrorBody", "No health prober answered in time"),
                    },
                }
            },
        },
        "components": {"schemas": components, "securitySchemes": _SECURITY_SCHEMES},
    }
