"""Client keys: who calls is the key's user, with its tier's limits; keys made and
revoked at run time; the rule for requests that name no user."""

from __future__ import annotations

import hashlib
from typing import Any

import aiohttp
import openai
import pytest

from actors.runtime.config import AuthConfig, KeyConfig, LimitChanges, TierConfig
from tests._audit import secret
from tests.conftest import eventually
from tests.request_path.conftest import ADMIN, MakeNode


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _post(http: aiohttp.ClientSession, url: str, body: Any,
                key: str | None = None) -> tuple[int, Any]:  # fmt: skip
    headers = {"X-API-Key": key} if key else {}
    async with http.post(f"{url}/ai-orchestration/generate", json=body, headers=headers) as r:
        return r.status, await r.json()


ANN = secret("k-ann")  # ann's client key
AUTH = AuthConfig(
    keys={_sha(ANN): KeyConfig(user_id="ann", tier="pro")},
    tiers={"pro": TierConfig(limits=LimitChanges(requests_per_minute=3))},
)


async def test_a_key_says_who_calls_and_cannot_act_as_another(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), auth=AUTH)
    assert node.gateway is not None
    url = node.gateway.url
    status, body = await _post(http, url, {"prompt": "hi"})
    assert status == 401 and "client key" in body["error"]["message"]
    status, _ = await _post(http, url, {"prompt": "hi"}, key="k-wrong")
    assert status == 401
    status, body = await _post(http, url, {"prompt": "hi", "user_id": "bob"}, key=ANN)
    assert status == 403 and body["error"]["type"] == "forbidden"
    status, _ = await _post(http, url, {"prompt": "hi"}, key=ANN)
    assert status == 200
    # The OpenAI SDK's key is the client key; its user is the key's.
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=ANN, max_retries=0)
    answer = await client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user="someone-else"
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.AuthenticationError):
        await openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0
                                 ).chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    # Both counted against ann, under the tier's limit of 3 a minute (the defaults of
    # these tests have none).
    status, _ = await _post(http, url, {"prompt": "third"}, key=ANN)
    assert status == 200
    status, body = await _post(http, url, {"prompt": "fourth"}, key=ANN)
    assert status == 429 and "requests_per_minute" in body["error"]["message"]
    await client.close()


async def test_keys_made_and_revoked_at_run_time(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), auth=AuthConfig(require_keys=True))
    assert node.gateway is not None
    url = node.gateway.url
    async with http.post(f"{url}/ai-orchestration/keys", json={"user_id": "carl"},
                         headers=ADMIN) as r:  # fmt: skip
        made = await r.json()
        assert r.status == 200, made
    key = made["key"]
    assert key.startswith("aio-") and made["user_id"] == "carl"
    status, _ = await _post(http, url, {"prompt": "hi"}, key=key)
    assert status == 200
    async with http.get(f"{url}/ai-orchestration/keys", headers=ADMIN) as r:
        listed = (await r.json())["keys"]
    assert [k["id"] for k in listed] == [made["id"]] and key not in str(listed)
    stored = await node.bus.redis.hgetall(f"{node.bus.names.ns}:auth:keys")
    assert key.encode() not in b"".join(list(stored) + list(stored.values()))  # hashed
    async with http.post(f"{url}/ai-orchestration/keys/{made['id']}/revoke", json={},
                         headers=ADMIN) as r:  # fmt: skip
        assert (await r.json())["revoked"] == 1
    await eventually(lambda: _refused(http, url, key))  # within 5 s everywhere
    async with http.post(f"{url}/ai-orchestration/keys", json={"user_id": "d", "tier": "gold"},
                         headers=ADMIN) as r:  # fmt: skip
        assert r.status == 400 and "tier" in (await r.json())["error"]["message"]


async def test_admin_reports_show_the_limits_of_the_users_tier(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    """ann's key is configured in tier pro; erin's is made at run time in tier pro; a
    user with no key gets the defaults; ``?tier=`` shows another tier's view."""
    node = await make_node(providers=("openai",), auth=AUTH)
    assert node.gateway is not None
    url = node.gateway.url

    async def rpm(user: str, query: str = "") -> tuple[Any, float | None]:
        async with http.get(f"{url}/ai-orchestration/rate-limits/{user}{query}",
                            headers=ADMIN) as r:  # fmt: skip
            body = await r.json()
            assert r.status == 200, body
        return body["tier"], body["config"]["requests_per_minute"]

    assert await rpm("ann") == ("pro", 3)
    default = (await rpm("nobody"))[1]
    assert default != 3
    async with http.post(f"{url}/ai-orchestration/keys", json={"user_id": "erin", "tier": "pro"},
                         headers=ADMIN) as r:  # fmt: skip
        assert r.status == 200
    assert await rpm("erin") == ("pro", 3)
    assert await rpm("ann", "?tier=") == (None, default)
    async with http.get(f"{url}/ai-orchestration/quotas/ann", headers=ADMIN) as r:
        assert (await r.json())["tier"] == "pro"
    async with http.get(f"{url}/ai-orchestration/quotas/ann?tier=gold", headers=ADMIN) as r:
        body = await r.json()
        assert r.status == 400 and "gold" in body["error"]["message"], body


async def _refused(http: aiohttp.ClientSession, url: str, key: str) -> bool:
    status, _ = await _post(http, url, {"prompt": "hi"}, key=key)
    return status == 401


async def test_requests_naming_no_user_follow_the_configured_rule(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), auth=AuthConfig(anonymous="refuse"))
    assert node.gateway is not None
    status, body = await _post(http, node.gateway.url, {"prompt": "hi"})
    assert status == 400 and "user_id" in body["error"]["message"]
    status, _ = await _post(http, node.gateway.url, {"prompt": "hi", "user_id": "eve"})
    assert status == 200
