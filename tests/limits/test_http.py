"""Limits over HTTP: 429 with Retry-After and X-RateLimit-*, the admin API, /metrics."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
from yarl import URL

from tests.limits.conftest import limits, quotas, user
from tests.request_path.conftest import ADMIN, MakeNode


async def _call(
    http: aiohttp.ClientSession, method: str, url: str | URL, body: Any = None
) -> tuple[int, Any, Any]:
    """A request with the admin token, and a JSON content type when it sends a body (or
    changes something)."""
    headers = ADMIN | ({"Content-Type": "application/json"} if method != "GET" else {})
    data = None if body is None else aiohttp.JsonPayload(body)
    async with http.request(method, url, data=data, headers=headers) as response:
        return response.status, await response.json(), response.headers


@pytest.mark.parametrize("path", ["generate", "generate-with-fallback"])
async def test_a_refusal_is_a_429_with_when_to_retry(
    make_node: MakeNode, http: aiohttp.ClientSession, path: str
) -> None:
    node = await make_node(
        providers=("openai",), limits=limits(requests_per_minute=1, tokens_per_hour=10_000)
    )
    assert node.gateway is not None
    url, uid = f"{node.gateway.url}/ai-orchestration/{path}", user()
    status, body, headers = await _call(http, "POST", url, {"prompt": "hi", "user_id": uid,
                                                            "max_tokens": 10})  # fmt: skip
    assert status == 200, body
    assert headers["X-RateLimit-Limit-Requests-Per-Minute"] == "1"
    assert headers["X-RateLimit-Remaining-Requests-Per-Minute"] == "0"
    assert 59 <= int(headers["X-RateLimit-Reset-Requests-Per-Minute"]) <= 60
    assert headers["X-RateLimit-Limit-Tokens-Per-Hour"] == "10000"
    status, body, headers = await _call(http, "POST", url, {"prompt": "hi", "user_id": uid})
    assert status == 429, body  # with fallback too: a limit is not papered over
    assert body["error"]["type"] == "rate_limited"
    assert "requests_per_minute" in body["error"]["message"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["X-RateLimit-Remaining-Requests-Per-Minute"] == "0"


async def test_the_openai_edge_refuses_as_openai_does(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",), quota=quotas(daily_token_limit=100))
    assert node.gateway is not None
    sdk = openai.AsyncOpenAI(api_key="any", base_url=f"{node.gateway.url}/v1", max_retries=0)
    uid = user()
    with pytest.raises(openai.RateLimitError) as caught:
        await sdk.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user=uid,
            max_tokens=200,  # 200 tokens reserved cannot fit in 100 a day
        )  # fmt: skip
    error = caught.value
    assert error.status_code == 429 and error.code == "quota_exceeded"
    assert "daily_tokens" in error.message
    assert error.response.headers["X-RateLimit-Limit-Daily-Tokens"] == "100"
    assert "Retry-After" in error.response.headers  # until midnight
    answer = await sdk.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user=uid, max_tokens=20
    )
    assert int(answer.headers["X-RateLimit-Remaining-Daily-Tokens"]) < 100
    await sdk.close()


async def test_quotas_can_be_read_changed_and_reset(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), quota=quotas(daily_request_limit=5))
    assert node.gateway is not None
    base, uid = f"{node.gateway.url}/ai-orchestration/quotas", user()
    await _call(http, "POST", f"{node.gateway.url}/ai-orchestration/generate",
                {"prompt": "hi", "user_id": uid})  # fmt: skip
    status, body, _h = await _call(http, "GET", f"{base}/{uid}")
    assert status == 200, body
    rows = {row["quota_type"]: row for row in body["quotas"]}
    assert rows["daily_requests"]["used"] == 1 and rows["daily_requests"]["remaining"] == 4
    assert rows["daily_requests"]["resets_at"].endswith("T00:00:00+00:00")
    assert rows["monthly_cost"]["limit"] is None

    changes = {"daily_request_limit": 1, "monthly_cost_limit": 25.5, "daily_token_limit": None}
    status, body, _h = await _call(http, "PUT", f"{base}/{uid}/config", changes)
    assert status == 200, body
    assert body["config"]["daily_request_limit"] == 1
    assert body["config"]["monthly_cost_limit"] == 25.5
    assert body["config"]["daily_token_limit"] is None
    assert body["config"]["per_session_request_limit"] is None  # untouched
    status, body, _h = await _call(http, "POST", f"{node.gateway.url}/ai-orchestration/generate",
                                   {"prompt": "hi", "user_id": uid})  # fmt: skip
    assert status == 429 and body["error"]["type"] == "quota_exceeded"

    status, body, _h = await _call(http, "POST", f"{base}/{uid}/reset")
    assert status == 200
    rows = {row["quota_type"]: row for row in body["quotas"]}
    assert rows["daily_requests"]["used"] == 0 and body["config"]["daily_request_limit"] == 1


async def test_rate_limits_can_be_read_changed_and_reset(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=20))
    assert node.gateway is not None
    base, uid = f"{node.gateway.url}/ai-orchestration/rate-limits", user()
    status, body, _h = await _call(http, "PUT", f"{base}/{uid}/config",
                                   {"requests_per_minute": 1, "cost_per_hour": 2.5})  # fmt: skip
    assert status == 200, body
    assert body["config"]["requests_per_minute"] == 1 and body["config"]["cost_per_hour"] == 2.5
    await _call(http, "POST", f"{node.gateway.url}/ai-orchestration/generate",
                {"prompt": "hi", "user_id": uid})  # fmt: skip
    status, body, _h = await _call(http, "GET", f"{base}/{uid}")
    rows = {row["limit_type"]: row for row in body["limits"]}
    assert rows["requests_per_minute"] | {"reset_s": 0} == {
        "limit_type": "requests_per_minute", "limit": 1, "used": 1, "remaining": 0,
        "reset_s": 0,
    }  # fmt: skip
    assert rows["cost_per_hour"]["limit"] == 2.5 and rows["cost_per_hour"]["used"] > 0
    status, body, _h = await _call(http, "POST", f"{base}/{uid}/reset")
    rows = {row["limit_type"]: row for row in body["limits"]}
    assert rows["requests_per_minute"]["used"] == 0


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        ("quotas", {"daily_cost_limit": -1}, "daily_cost_limit"),
        ("quotas", {"monthly_request_limit": "1000"}, "monthly_request_limit"),
        ("quotas", {"daily_token_limit": 5, "weekly_token_limit": 5}, "weekly_token_limit"),
        ("quotas", [1, 2], "object"),
        ("quotas", {"daily_cost_limit": 1e300}, "daily_cost_limit"),
        ("quotas", {"monthly_cost_limit": 1_000_000_001}, "monthly_cost_limit"),
        ("quotas", {"daily_request_limit": 2.5}, "daily_request_limit"),
        ("quotas", {"monthly_token_limit": 10**12 + 1}, "monthly_token_limit"),
        ("rate-limits", {"tokens_per_minute": -5}, "tokens_per_minute"),
        ("rate-limits", {"burst_window_ms": 0}, "burst_window_ms"),
        ("rate-limits", {"burst_window_ms": 1.5}, "burst_window_ms"),
        ("rate-limits", {"requests_per_minute": True}, "requests_per_minute"),
        ("rate-limits", {"requests_per_minute": 0.5}, "requests_per_minute"),
        ("rate-limits", {"requests_per_minute": 1e-300}, "requests_per_minute"),
        ("rate-limits", {"cost_per_minute": 1e308}, "cost_per_minute"),
        ("rate-limits", {"burst_limit": 3, "tokens_per_hour": 0.25}, "tokens_per_hour"),
    ],
)
async def test_bad_limits_are_a_400_that_names_the_field(
    make_node: MakeNode, http: aiohttp.ClientSession, path: str, body: Any, named: str
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    base, uid = f"{node.gateway.url}/ai-orchestration/{path}", user()
    status, answer, _h = await _call(http, "PUT", f"{base}/{uid}/config", body)
    assert status == 400 and named in answer["error"]["message"], answer
    assert [k async for k in node.bus.redis.scan_iter(match=f"*{uid}*")] == []  # nothing written
    status, answer, _h = await _call(http, "GET", f"{base}/{uid}")
    assert status == 200 and all(v is None for v in answer["config"].values())
    status, answer, _h = await _call(http, "POST", f"{node.gateway.url}/ai-orchestration/generate",
                                     {"prompt": "hi", "user_id": uid})  # fmt: skip
    assert status == 200, answer


async def test_the_largest_limits_work(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    admin, uid = f"{node.gateway.url}/ai-orchestration", user()
    counts, dollars = 10**12, 9e6
    status, answer, _h = await _call(http, "PUT", f"{admin}/rate-limits/{uid}/config", {
        "requests_per_minute": counts, "tokens_per_hour": counts, "cost_per_minute": dollars,
        "burst_limit": counts, "burst_window_ms": 3_600_000})  # fmt: skip
    assert status == 200, answer
    status, answer, _h = await _call(http, "PUT", f"{admin}/quotas/{uid}/config", {
        "daily_request_limit": counts, "monthly_token_limit": counts,
        "monthly_cost_limit": dollars})  # fmt: skip
    assert status == 200, answer
    status, answer, headers = await _call(http, "POST", f"{admin}/generate",
                                          {"prompt": "hi", "user_id": uid})  # fmt: skip
    assert status == 200, answer
    assert headers["X-RateLimit-Limit-Requests-Per-Minute"] == str(counts)
    assert headers["X-RateLimit-Limit-Monthly-Cost"] == "9000000"
    for path in ("rate-limits", "quotas"):
        status, answer, _h = await _call(http, "GET", f"{admin}/{path}/{uid}")
        assert status == 200, answer


async def test_metrics_count_admissions(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=1))
    assert node.gateway is not None
    uid = user()
    for _ in range(2):
        await _call(http, "POST", f"{node.gateway.url}/ai-orchestration/generate",
                    {"prompt": "hi", "user_id": uid})  # fmt: skip
    async with http.get(f"{node.gateway.url}/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert 'aio_admissions_total{result="admitted"} 1' in text
    assert 'aio_admissions_total{result="rate_limited"} 1' in text


async def test_the_openapi_document_lists_the_admin_endpoints(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    async with http.get(f"{node.gateway.url}/openapi.json") as response:
        paths = (await response.json())["paths"]
    for path, methods in {
        "/ai-orchestration/quotas/{user_id}": {"get"},
        "/ai-orchestration/quotas/{user_id}/config": {"put"},
        "/ai-orchestration/quotas/{user_id}/reset": {"post"},
        "/ai-orchestration/rate-limits/{user_id}": {"get"},
        "/ai-orchestration/rate-limits/{user_id}/config": {"put"},
        "/ai-orchestration/rate-limits/{user_id}/reset": {"post"},
        "/metrics": {"get"},
    }.items():
        assert set(paths[path]) == methods


@pytest.mark.parametrize("bad", ["ann%00", "a%07b", "ann%0A", "u" * 257])
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "quotas/{}"), ("PUT", "quotas/{}/config"), ("POST", "rate-limits/{}/reset"),
     ("GET", "rate-limits/{}")],
)  # fmt: skip
async def test_an_admin_path_with_a_bad_user_id_is_a_400(
    make_node: MakeNode, http: aiohttp.ClientSession, method: str, path: str, bad: str
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    url = URL(f"{node.gateway.url}/ai-orchestration/{path.format(bad)}", encoded=True)
    body = {"daily_request_limit": 1} if method == "PUT" else None
    status, answer, _h = await _call(http, method, url, body)
    assert status == 400 and "user_id" in answer["error"]["message"], answer
