"""Waiting instead of a 429: a request refused only by a rate limit waits for room
within its deadline when it asks to (or its tier or the config says so), its user's
waiting requests in order; it still gets the 429 when the deadline would pass first,
and a quota never waits."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp

from actors.routing import Router
from actors.runtime.config import AdmissionConfig, AuthConfig, KeyConfig, TierConfig
from tests.conftest import eventually
from tests.limits.conftest import limits, quotas, user
from tests.request_path.conftest import MakeNode

# One request a second per user: the second of two at once is refused, or waits.
ONE_A_SECOND = limits(burst_limit=1, burst_window_ms=1_000)


async def _generate(
    http: aiohttp.ClientSession, node: Any, headers: dict[str, str] | None = None, **body: Any
) -> tuple[int, Any]:
    url = f"{node.gateway.url}/ai-orchestration/generate"
    async with http.post(url, json=body, headers=headers or {}) as response:
        return response.status, await response.json()


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _waited(body: Any) -> list[Any]:
    found = body.get("orchestration", body.get("error", {})).get("attempts", [])
    return [a for a in found if a["outcome"] == "waited"]


async def test_a_request_that_asks_waits_for_room(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), limits=ONE_A_SECOND)
    uid = user()
    answers = await asyncio.gather(*(
        _generate(http, node, prompt=f"q{n}", user_id=uid, wait_on_limit=True)
        for n in range(3)
    ))  # fmt: skip
    assert [status for status, _body in answers] == [200, 200, 200], answers
    waited = [_waited(body) for _status, body in answers]
    assert sum(1 for w in waited if w) == 2  # the first went at once
    assert all(w[0]["provider"] == "admission" for w in waited if w)
    # Without asking: the 429.
    await _generate(http, node, prompt="x", user_id=uid, wait_on_limit=True)
    status, body = await _generate(http, node, prompt="y", user_id=uid)
    assert status == 429 and body["error"]["type"] == "rate_limited"


async def test_the_429_stands_when_the_deadline_would_pass_first(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",),
                           limits=limits(burst_limit=1, burst_window_ms=60_000))  # fmt: skip
    uid = user()
    status, _body = await _generate(http, node, prompt="first", user_id=uid)
    assert status == 200
    status, body = await _generate(
        http, node, {"X-Wait-On-Limit": "true"}, prompt="second", user_id=uid, timeout_ms=2_000
    )
    assert status == 429 and body["error"]["type"] == "rate_limited", body
    assert _waited(body) and "deadline" in _waited(body)[0]["message"]


async def test_a_quota_never_waits(make_node: MakeNode, http: aiohttp.ClientSession) -> None:
    admission = AdmissionConfig(timeout_ms=10_000, wait_on_limit=True)
    node = await make_node(providers=("openai",), quota=quotas(daily_request_limit=1),
                           admission=admission)  # fmt: skip
    uid = user()
    assert (await _generate(http, node, prompt="first", user_id=uid))[0] == 200
    status, body = await _generate(http, node, prompt="second", user_id=uid)
    assert status == 429 and body["error"]["type"] == "quota_exceeded"
    assert not _waited(body)


async def test_a_tier_may_wait_for_its_users(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    auth = AuthConfig(
        keys={digest("patient-key"): KeyConfig(user_id=user(), tier="patient"),
              digest("hasty-key"): KeyConfig(user_id=user())},
        tiers={"patient": TierConfig(wait_on_limit=True)},
    )  # fmt: skip
    node = await make_node(providers=("openai",), limits=ONE_A_SECOND, auth=auth)
    for key, expected in (("patient-key", [200, 200]), ("hasty-key", [200, 429])):
        headers = {"Authorization": f"Bearer {key}"}
        first = await _generate(http, node, headers, prompt="a")
        second = await _generate(http, node, headers, prompt="b")
        assert [first[0], second[0]] == expected, (key, second)


async def test_a_waiter_in_the_queue_keeps_its_own_deadline(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    """Queued behind a request of the same user that waits long, a request with a short
    deadline gets its 429 when its own deadline would pass, not after the other's wait."""
    node = await make_node(providers=("openai",),
                           limits=limits(burst_limit=1, burst_window_ms=5_000))  # fmt: skip
    uid = user()
    assert (await _generate(http, node, prompt="first", user_id=uid))[0] == 200
    patient = asyncio.create_task(_generate(http, node, prompt="patient", user_id=uid,
                                            wait_on_limit=True, timeout_ms=30_000))  # fmt: skip
    assert node.supervisor is not None
    (router,) = [a for a in node.supervisor.actors if isinstance(a, Router)]
    await eventually(lambda: uid in router._waiting)  # it waits, holding its user's queue
    hasty = asyncio.create_task(_generate(http, node, prompt="hasty", user_id=uid,
                                          wait_on_limit=True, timeout_ms=1_500))  # fmt: skip
    done, _pending = await asyncio.wait({patient, hasty}, return_when=asyncio.FIRST_COMPLETED)
    assert done == {hasty}, "the hasty one waited behind the patient one"
    status, body = hasty.result()
    assert status == 429 and body["error"]["type"] == "rate_limited"
    status, body = await patient
    assert status == 200 and _waited(body)


async def test_over_a_quota_too_it_never_waits(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), quota=quotas(daily_request_limit=1),
                           limits=limits(burst_limit=1, burst_window_ms=60_000))  # fmt: skip
    uid = user()
    assert (await _generate(http, node, prompt="first", user_id=uid))[0] == 200
    status, body = await _generate(http, node, prompt="second", user_id=uid, wait_on_limit=True)
    assert status == 429 and not _waited(body), body


async def test_an_answer_after_a_wait_keeps_its_quota_headers(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), limits=ONE_A_SECOND,
                           quota=quotas(daily_token_limit=10**6))  # fmt: skip
    uid = user()
    url = f"{node.gateway.url}/ai-orchestration/generate"  # type: ignore[union-attr]
    assert (await _generate(http, node, prompt="first", user_id=uid))[0] == 200
    async with http.post(url, json={"prompt": "second", "user_id": uid,
                                    "wait_on_limit": True}) as response:  # fmt: skip
        assert response.status == 200
        assert _waited(await response.json())
        assert "X-RateLimit-Limit-Daily-Tokens" in response.headers
