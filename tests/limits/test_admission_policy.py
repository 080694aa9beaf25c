"""When limits cannot be checked: the policy decides, within the admission timeout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from actors.messages import CODEC, GenerateRequest, limiter_stream, quota_stream
from actors.providers import Catalog
from actors.routing import Admission
from actors.routing._planner import Candidate
from actors.runtime._metrics import Metrics
from actors.runtime.config import AdmissionConfig
from bus import Bus, EmbeddedRedis
from tests.request_path.conftest import bus_config

CANDIDATES = [Candidate(provider="openai", model="gpt-4o")]


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as embedded:
        yield embedded


def _admission(bus: Bus, policy: str) -> tuple[Admission, Metrics]:
    metrics = Metrics()
    config = AdmissionConfig(policy=policy, timeout_ms=300)  # type: ignore[arg-type]
    return Admission(bus, config, Catalog(), metrics), metrics


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_redis_stopped(server: EmbeddedRedis, policy: str) -> None:
    async with Bus(server.url, CODEC, bus_config("down")) as bus:
        admission, metrics = _admission(bus, policy)
        server.kill()
        with capture_logs() as logs:
            # Decided, not hung: well within the timeout plus the bus's own fail-fast.
            result = await asyncio.wait_for(
                admission.admit(GenerateRequest(request_id="r1", prompt="hi"), CANDIDATES), 5
            )
        server.start()  # for a clean close
    if policy == "fail_closed":
        assert not result.admitted and result.status == 503
        assert result.kind == "admission_unavailable"
    else:
        assert result.admitted
    assert metrics.value("aio_admissions_total", result=f"unavailable_{policy}") == 1
    (line,) = [entry for entry in logs if entry["event"] == "admission.unavailable"]
    assert line["policy"] == policy and line["request_id"] == "r1"


@pytest.mark.parametrize("policy", ["fail_closed", "fail_open"])
async def test_no_limiter_answers_in_time(server_url: str, policy: str) -> None:
    """Redis is up but no limiter or quota keeper runs: the asks time out."""
    # A namespace of its own: others may run this test on the same Redis at once.
    async with Bus(server_url, CODEC, bus_config(f"nobody-home-{uuid.uuid4().hex[:8]}")) as bus:
        admission, metrics = _admission(bus, policy)
        result = await asyncio.wait_for(
            admission.admit(GenerateRequest(request_id="r2", prompt="hi"), CANDIDATES), 5
        )
        await bus.redis.delete(limiter_stream(bus.names), quota_stream(bus.names))
    assert result.admitted == (policy == "fail_open")
    assert metrics.value("aio_admissions_total", result=f"unavailable_{policy}") == 1
