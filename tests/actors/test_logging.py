"""Logging: debug lines of ours and of the SDKs when asked, and secrets in none of them.

The end-to-end tests run ``run.py`` in a process of its own (its logging is configured
once, for the process) against the provider simulator in this one, with known fake
keys that the simulator echoes back in its 401s, as real providers do with a part
of a wrong key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
import redis.asyncio
import structlog.testing

from actors.providers import Secret
from actors.providers.simulator import Simulator
from actors.runtime._logging import Redactor, log_waiting_tasks, secrets_of
from actors.runtime.config import load_config
from tests.conftest import _delete_namespace

ROOT = Path(__file__).resolve().parents[2]
OPENAI_KEY = "sk-test-LOGSECRET-openai-0123456789"
ANTHROPIC_KEY = "sk-ant-LOGSECRET-anthropic-0123456789"
CLIENT_KEY = "client-LOGSECRET-42"
ADMIN_TOKEN = "admin-LOGSECRET-77"
SDK_LOGGERS = ("openai", "anthropic", "google_genai", "httpx", "httpcore", "aiohttp")


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    async with Simulator(seed=3) as sim:
        yield sim


def _env(simulator: Simulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    return env | {
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": f"{simulator.url}/v1",
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "ANTHROPIC_BASE_URL": simulator.url,
        "AIO_ADMIN_TOKEN": ADMIN_TOKEN,
        **extra,
    }


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """``run.py`` with these arguments, to its end: exit code, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", *args, cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _everything_in(url: str, ns: str) -> str:
    """Every stream entry, hash, string, list and set of a namespace, as one text."""
    client = redis.asyncio.Redis.from_url(url)
    out: list[str] = []
    try:
        async for key in client.scan_iter(match=f"{ns}:*", count=1000):
            kind = (await client.type(key)).decode()
            if kind == "stream":
                out += [repr(fields) for _id, fields in await client.xrange(key)]
            elif kind == "hash":
                out.append(repr(await client.hgetall(key)))
            elif kind == "string":
                out.append(repr(await client.get(key)))
            elif kind == "list":
                out.append(repr(await client.lrange(key, 0, -1)))
            elif kind in ("set", "zset"):
                members = await (client.smembers(key) if kind == "set"
                                 else client.zrange(key, 0, -1))  # fmt: skip
                out.append(repr(members))
    finally:
        await client.aclose()
    return "\n".join(out)


def _lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _events(lines: list[dict[str, Any]], level: str = "debug") -> set[str]:
    """The events of our own lines (the standard logging's carry a ``logger``)."""
    return {ln["event"] for ln in lines if ln["level"] == level and "logger" not in ln}


def _sdk_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [ln for ln in lines if str(ln.get("logger", "")).startswith(SDK_LOGGERS)]


def _assert_no_secret(output: str) -> None:
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY, ADMIN_TOKEN, "LOGSECRET"):
        assert secret not in output


async def test_probe_logs_ours_and_the_sdks_at_debug_and_never_a_key(
    simulator: Simulator,
) -> None:
    for provider in ("openai", "anthropic"):
        simulator.state.update(provider, {"auth_failure": True})
    code, output = await _run(
        "probe", "--log-level", "debug", "--sdk-log-level", "debug", env=_env(simulator)
    )
    assert code == 2, output  # both keys refused: down
    lines = _lines(output)
    assert "provider.sdk_error" in _events(lines)
    # The SDK's error held the key the simulator echoed; the line says it was there.
    errors = [ln["error"] for ln in lines if ln["event"] == "provider.sdk_error"]
    assert len(errors) == 2 and all("Incorrect API key provided: ***" in e for e in errors)
    sdk = _sdk_lines(lines)
    assert {ln["logger"].partition(".")[0] for ln in sdk if ln["level"] == "debug"} >= {
        "openai",
        "anthropic",
    }
    assert simulator.state.calls["openai"] and simulator.state.calls["anthropic"]
    _assert_no_secret(output)


async def test_probe_keeps_the_sdks_quiet_unless_asked(simulator: Simulator) -> None:
    simulator.state.update("openai", {"auth_failure": True})
    code, output = await _run("probe", "--log-level", "debug", env=_env(simulator))
    assert code == 2, output
    lines = _lines(output)
    assert "provider.sdk_error" in _events(lines)
    assert _sdk_lines(lines) == []
    _assert_no_secret(output)


async def test_serve_at_debug_follows_a_request_through_every_actor(
    simulator: Simulator, server_url: str, tmp_path: Path
) -> None:
    """``log_level`` and ``sdk_log_level`` from the config file; OpenAI refuses its key,
    Anthropic answers; the client sends keys of its own in its headers."""
    simulator.state.update("openai", {"auth_failure": True})
    ns = f"t{uuid.uuid4().hex[:10]}"
    config = tmp_path / "aio.toml"
    client_hash = hashlib.sha256(CLIENT_KEY.encode()).hexdigest()
    config.write_text(
        f'log_level = "debug"\nsdk_log_level = "debug"\nredis_url = "{server_url}"\n'
        f'[bus]\nnamespace = "{ns}"\n[gateway]\nport = 0\n'
        # No prober (its probe latencies would let the performance strategy put
        # Anthropic first) and no exploration (it might too): this test follows
        # OpenAI's refusal, then Anthropic.
        f"[health]\nenabled = false\n[router]\nexplore_share = 0\n"
        f'[auth.keys.{client_hash}]\nuser_id = "carl"\n'
    )
    env = {k: v for k, v in _env(simulator).items() if k != "REDIS_URL"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", "serve", "--workers", "1", "--config", str(config),
        cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[bytes] = []
    try:
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, b"".join(seen).decode()
            seen.append(line)
            if line.startswith(b"serving as"):
                url = line.decode().split(" on ")[1].split(";")[0]
                break
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{url}/ai-orchestration/generate",
                json={"prompt": "hello", "model": "fast", "max_tokens": 16},
                headers={"Authorization": f"Bearer {CLIENT_KEY}", "x-api-key": CLIENT_KEY},
            ) as response,
        ):
            answer = await response.json()
        assert response.status == 200, answer
        assert answer["orchestration"]["provider_selected"] == "anthropic"
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/ai-orchestration/keys", json={"user_id": "dan"},
                                 headers=admin) as response:  # fmt: skip
                made = await response.json()
            responses = [json.dumps(answer), json.dumps(made)]
            for path in ("/ai-orchestration/health", "/ai-orchestration/stats", "/metrics"):
                async with http.get(url + path, headers=admin) as response:
                    responses.append(await response.text())
        stored = await _everything_in(server_url, ns)
        for secret in (OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY, ADMIN_TOKEN, made["key"]):
            assert secret not in stored, "a secret in Redis"
        for secret in (OPENAI_KEY, ANTHROPIC_KEY, CLIENT_KEY, ADMIN_TOKEN):
            assert all(secret not in text for text in responses), "a secret in a response"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        _delete_namespace(server_url, ns)
    output = b"".join(seen).decode() + rest.decode()
    lines = _lines(output)
    ours = _events(lines)
    assert {
        "gateway.request", "gateway.response", "bus.ask", "bus.delivered", "bus.replied",
        "bus.reply", "router.plan", "router.admission", "router.attempt", "router.finished",
        "breaker.call_started", "breaker.call_finished",
    } <= ours, ours  # fmt: skip
    # OpenAI's refusal, in its adapter's words (its whole answers skip the SDK's post).
    assert "provider.refused" in ours or "provider.sdk_error" in ours, ours
    attempts = [ln for ln in lines if ln["event"] == "router.attempt"]
    assert [a["provider"] for a in attempts][:1] == ["openai"] and len(attempts) >= 2
    sdk = _sdk_lines(lines)
    # The SDK that still sends (Anthropic's) speaks at debug; OpenAI's whole answers go
    # out on aiohttp directly, with the adapter's own line on a refusal (above).
    assert any(ln["logger"].startswith("anthropic") and ln["level"] == "debug" for ln in sdk)
    # The SDKs' lines are bound to the request they serve.
    in_calls = [ln for ln in sdk if ln.get("actor") == "breaker"]
    assert in_calls and {ln["request_id"] for ln in in_calls} == {
        answer["orchestration"]["request_id"]
    }
    _assert_no_secret(output)


# -- the redaction itself --------------------------------------------------------------

_FORMATS = r"""
import logging, sys
import structlog
from actors.runtime._logging import configure_logging

configure_logging("debug", sdk_level="debug", secrets=[sys.argv[2], 'we"ird\\key'],
                  json=sys.argv[1] == "json")
log = structlog.get_logger("t")
key = sys.argv[2]
log.debug("ours", key=key, headers={"Authorization": "Bearer tok.en", "x-api-key": "HDR1"})
log.info("quoted", weird='we"ird\\key', text="api-key: HDR2, x-goog-api-key=HDR3")
try:
    try:
        raise ValueError(f"Incorrect API key provided: {key}")
    except ValueError as exc:
        raise RuntimeError(f"wrapped {exc!r}") from exc
except RuntimeError:
    log.exception("ours.failed")
    logging.getLogger("openai._base_client").exception("theirs %s", key)
logging.getLogger("httpcore.http11").debug(
    "send_request_headers headers=%r", [(b"Authorization", b"Basic dXNlcjpw"), (b"x", b"y")]
)
logging.getLogger("httpx").info("bad format %s %s", key)
"""


@pytest.mark.parametrize("mode", ["json", "console"])
def test_every_line_is_masked_tracebacks_included(mode: str) -> None:
    key = "sk-LOGSECRET-xyz-0123456789abcdef"
    result = subprocess.run(
        [sys.executable, "-c", _FORMATS, mode, key],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    for secret in (key, "LOGSECRET", "tok.en", "HDR1", "HDR2", "HDR3", "dXNlcjpw", "ird\\"):
        assert secret not in output, secret
    assert "Incorrect API key provided: ***" in output
    assert "RuntimeError" in output and "ValueError" in output  # the tracebacks are there
    assert "theirs ***" in output and "send_request_headers" in output
    assert "bad format" in output  # a line logging could not format, masked too
    if mode == "json":
        lines = _lines(result.stdout)
        assert {ln.get("logger") for ln in lines} >= {"openai._base_client", "httpcore.http11"}
        assert [ln["level"] for ln in lines if ln["event"] == "ours"] == ["debug"]


def test_the_redactor_masks_secrets_headers_and_bearer_tokens() -> None:
    redact = Redactor(["s3cr3t-value", 'q"uote'])
    cases = {
        "key=s3cr3t-value!": "key=***!",
        '{"k":"q\\"uote"}': '{"k":"***"}',
        "url?key=q%22uote&x=1": "url?key=***&x=1",
        "Authorization: Bearer abc.DEF-123": "Authorization: Bearer ***",
        "{'authorization': 'Basic Zm9vOmJhcg=='}": "{'authorization': 'Basic ***'}",
        '"X-Goog-Api-Key":"AIzaXYZ"': '"X-Goog-Api-Key":"***"',
        "(b'api-key', b'abc')": "(b'api-key', b'***')",
        "sent bearer eyJhbGciOi.x.y": "sent bearer ***",
        "nothing to hide here": "nothing to hide here",
    }
    for line, masked in cases.items():
        assert redact(None, "info", line) == masked
        assert redact(None, "info", line.encode()) == masked.encode()
    with pytest.raises(TypeError):
        redact(None, "info", {"event": "not rendered yet"})


def test_a_short_secret_is_masked_where_it_stands_alone_not_inside_words() -> None:
    """A one-letter test key must not garble every line that has that letter."""
    redactor = Redactor(["1", "test", "sk-long-enough-key"])
    line = 'GET http://127.0.0.1:18080/latest key=test "1" a-sk-long-enough-key-b'
    assert redactor.redact(line) == 'GET http://127.0.0.1:18080/latest key=*** "***" a-***-b'
    assert redactor.redact_bytes(b"api key: test, attest") == b"api key: ***, attest"


def test_secrets_come_from_the_config_and_the_environment() -> None:
    config = load_config(
        None, {"OPENAI_API_KEY": "from-env", "REDIS_URL": "redis://:redis-pw@h:6379/0"}
    )

    class Gateway(msgspec.Struct, frozen=True):
        admin_token: str = "adm"
        client_keys: tuple[str, ...] = ("c1", "c2")
        host: str = "127.0.0.1"

    class Future(msgspec.Struct, frozen=True):
        gateway: Gateway = Gateway()
        hidden: Secret = Secret("typed")

    env = {"AIO_ADMIN_TOKEN": "adm-env", "GOOGLE_API_KEY": "g", "HOME": "/root"}
    found = secrets_of(config, env)
    assert {"from-env", "redis-pw", "adm-env", "g"} <= set(found)
    assert "/root" not in found and "aio" not in found
    assert set(secrets_of(Future(), {})) == {"adm", "c1", "c2", "typed"}


async def test_waiting_tasks_are_logged_with_where_they_wait() -> None:
    stuck = asyncio.Event()

    async def waits_for_ever() -> None:
        await stuck.wait()

    task = asyncio.create_task(waits_for_ever(), name="stuck-one")
    await asyncio.sleep(0)  # it runs to its wait
    with structlog.testing.capture_logs() as logs:
        log_waiting_tasks("serve.stop_slow", after_s=20)
    task.cancel()
    (line,) = [entry for entry in logs if entry["event"] == "serve.stop_slow"]
    assert line["log_level"] == "error" and line["after_s"] == 20 and line["tasks"] >= 2
    assert any("waits_for_ever" in stack for stack in line["stacks"])
