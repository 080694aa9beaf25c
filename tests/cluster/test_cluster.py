"""The whole system on a Redis Cluster: the request path, exact limits across two
processes, the dashboard's reads, keys spread over the primaries, and a primary failed
over under load."""

from __future__ import annotations

import asyncio
import collections

import pytest

from actors.client import Client, GenerateRequest
from actors.limits._keys import limits_key, quotas_key
from actors.messages import GenerateResponse
from tests._cluster import LocalCluster
from tests.cache.test_exact import (  # noqa: F401  (run here, on the cluster)
    test_an_answer_is_served_to_its_user_only_unless_shared,
    test_identical_requests_in_flight_call_the_provider_once,
    test_warm_then_hit_clear_by_user_and_model_and_stats,
)
from tests.conftest import PATIENCE, eventually
from tests.limits.conftest import limits, quotas, user
from tests.limits.test_exactness import (  # noqa: F401  (run here, on the cluster)
    _counted,
    test_a_redelivered_request_is_charged_once,
    test_two_processes_admit_exactly_the_limit,
)
from tests.metrics.test_monitor_api import (  # noqa: F401  (run here, on the cluster)
    test_the_bus_view_shows_groups_pending_and_dead_letters,
    test_the_timeline_counts_each_step_and_refuses_a_bad_window,
    test_users_are_paged_by_each_measure,
)
from tests.request_path.conftest import MakeNode
from tests.request_path.test_gateway import (  # noqa: F401  (run here, on the cluster)
    test_generate_answers_in_the_documented_shape,
)
from tests.request_path.test_openai_compat import (  # noqa: F401  (run here, on the cluster)
    test_non_streaming,
    test_streaming_with_usage,
)
from tests.request_path.test_workers import (  # noqa: F401  (run here, on the cluster)
    gateway,
    spawn_worker,
    test_a_killed_worker_does_not_lose_its_request,
)

pytestmark = pytest.mark.timeout(300)


async def test_keys_spread_over_the_primaries(make_node: MakeNode, cluster: LocalCluster) -> None:
    """Streams, and each user's limits and quotas, live where their slots say: on a
    cluster the system's keys are spread over every primary, not kept on one."""
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=1000),
                           quota=quotas(daily_request_limit=1000))  # fmt: skip
    client, names = Client(node.bus), node.bus.names
    users = [user() for _ in range(12)]
    for uid in users:
        answer = await client.generate(GenerateRequest(prompt="hello", user_id=uid))
        assert isinstance(answer, GenerateResponse)
    keys = [names.requests, *(limits_key(names, uid, "requests") for uid in users),
            *(quotas_key(names, uid, "sessions") for uid in users)]  # fmt: skip
    assert len({cluster.primary_of(key) for key in keys}) == 3


async def test_a_primary_fails_over_under_load(make_node: MakeNode, cluster: LocalCluster) -> None:
    """``CLUSTER FAILOVER`` of the primary that holds the request stream, then of the
    one that holds the user's quotas, while requests flow: every request gets an
    answer, the service goes on, and each request admitted is charged once."""
    node = await make_node(providers=("openai",), limits=limits(requests_per_minute=10_000),
                           quota=quotas(daily_request_limit=10_000))  # fmt: skip
    client, names, uid = Client(node.bus), node.bus.names, user()
    outcomes: collections.Counter[str] = collections.Counter()
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            try:
                answer = await client.generate(GenerateRequest(prompt="hi", user_id=uid))
                outcomes["answered" if isinstance(answer, GenerateResponse) else "other"] += 1
            except Exception as exc:  # a refusal while a slot has no owner
                outcomes[type(exc).__name__] += 1

    loaders = [asyncio.create_task(load()) for _ in range(8)]
    try:
        await eventually(lambda: outcomes["answered"] >= 20)
        for key in (names.requests, quotas_key(names, uid, "sessions")):
            await asyncio.to_thread(cluster.fail_over, key)
            before = outcomes["answered"]
            await eventually(lambda b=before: outcomes["answered"] >= b + 20)  # type: ignore[misc]
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*loaders), PATIENCE)
    assert outcomes["other"] == 0, outcomes
    answered = outcomes["answered"]

    async def charged_once() -> bool:
        minute, daily = await _counted(node, uid)
        return minute == daily == answered

    await eventually(charged_once)
