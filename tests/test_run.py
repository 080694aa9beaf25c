"""The command line: schema, demo, help, config errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from actors.providers.simulator import Simulator
from bus import sync_client

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_schema_prints_every_message() -> None:
    result = _run("schema")
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert {"ping", "pong", "bus.failure"} <= set(schema["messages"])
    assert schema["properties"]["type"]["enum"]
    for ref in schema["messages"].values():
        assert ref["$ref"].removeprefix("#/$defs/") in schema["$defs"]


@pytest.mark.parametrize("command", ["schema", "demo", "probe", "serve", "simulate"])
def test_each_command_has_help(command: str) -> None:
    result = _run(command, "--help")
    assert result.returncode == 0
    assert "usage: run.py " + command in result.stdout


def test_demo_runs_on_the_embedded_redis() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    started = time.monotonic()
    result = _run("demo", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert time.monotonic() - started < 120  # a minute on a fast machine, twice on a slow one
    out = result.stdout
    assert "the embedded Redis" in out
    for strategy in ("performance", "cost", "round_robin", "weighted"):
        assert f"strategy={strategy}" in out
    assert "from the cache (l1)" in out or "from the cache (l2)" in out
    assert "semantic hit" in out and "not served from the cache (the guard: miss)" in out
    assert "one provider call" in out and "'coalesced'" in out
    assert "answered by" in out and "openai down" in out and "openai breaker: open" in out
    assert "provider.unhealthy openai" in out and "provider.recovered openai" in out
    assert "from dave -> [200, 200, 200, 200, 200, 429, 429]" in out
    assert "2 more requests -> [200, 429]: daily_requests" in out
    assert "rate-limit.exceeded dave" in out and "quota.exceeded dave" in out
    assert "probe_once() -> " in out and "stats" in out
    assert "Traceback" not in out + result.stderr
    assert '"event"' not in out  # no log line in the story
    assert "stopped cleanly" in out


def test_demo_in_json_lines() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    result = _run("demo", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [json.loads(line)["step"] for line in result.stdout.splitlines()]
    assert steps[0] == "start" and steps[-1] == "end"
    assert {"route", "cache", "failure", "health", "limits", "quota", "alert", "stats"} <= set(
        steps
    )


def test_a_bad_config_stops_the_start_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[bus]\nclaim_idle_ms = -5\n")
    result = _run("demo", "--config", str(config))
    assert result.returncode == 2
    assert "bus.claim_idle_ms" in result.stderr


def test_probe_checks_each_configured_provider(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    result = _run("probe", env=env)
    assert result.returncode == 2  # nothing to ask: down
    assert "no provider is configured" in result.stdout
    # One provider, pointed at nothing that answers.
    env |= {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    result = _run("probe", env=env)
    assert result.returncode == 2
    assert "openai     down" in result.stdout and "unavailable" in result.stdout
    assert "anthropic  disabled" in result.stdout
    assert "sk-x" not in result.stdout + result.stderr


async def test_probe_exit_codes_and_json(tmp_path: Path) -> None:
    """0 healthy, 1 degraded, 2 down: for cron, Nagios-style checks, Kubernetes."""
    async with Simulator() as simulator:
        env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
        env |= {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": f"{simulator.url}/v1",
                "ANTHROPIC_API_KEY": "sk-y", "ANTHROPIC_BASE_URL": simulator.url}  # fmt: skip
        config = tmp_path / "c.toml"
        config.write_text("[health]\nslow_ms = 200\n")

        async def probe(*extra: str) -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "run.py", "probe", "--config", str(config), *extra, cwd=ROOT,
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _err = await asyncio.wait_for(process.communicate(), 120)
            return process.returncode or 0, out.decode()

        code, out = await probe("--json")
        assert code == 0, out
        report = json.loads(out)
        assert report["status"] == "healthy"
        assert {p["provider"] for p in report["providers"]} == {"openai", "anthropic"}
        simulator.state.update("anthropic", {"latency_ms": 400})
        code, out = await probe()
        assert code == 1 and "anthropic  degraded" in out, out
        code, out = await probe("--provider", "openai")  # only the one asked for
        assert code == 0 and "anthropic" not in out, out
        simulator.state.update("openai", {"auth_failure": True})
        code, out = await probe("--json")
        assert code == 2 and json.loads(out)["status"] == "down"
        assert "sk-x" not in out


def test_key_hash_reads_the_key_from_stdin() -> None:
    result = subprocess.run([sys.executable, "run.py", "key-hash"], cwd=ROOT, input="k-ann\n",
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0
    assert result.stdout.strip() == hashlib.sha256(b"k-ann").hexdigest()


def _env_without_token() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "AIO_ADMIN_TOKEN"}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "example.org", "10.1.2.3"])
def test_serve_off_loopback_without_a_token_refuses_to_start(host: str) -> None:
    result = _run("serve", "--host", host, "--port", "0", env=_env_without_token())
    assert result.returncode == 2
    assert "AIO_ADMIN_TOKEN" in result.stderr and "admin_token" in result.stderr
    assert "serving" not in result.stdout


def _admin_status(base: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{base}/ai-orchestration/circuit-breakers", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _forget(env: dict[str, str], namespace: str) -> None:
    """Delete what a serve on ``REDIS_URL`` left there (its embedded Redis goes with it)."""
    if "REDIS_URL" not in env:
        return
    client = sync_client(env["REDIS_URL"])
    try:
        for key in list(client.scan_iter(match=f"{namespace}:*")):
            client.delete(key)
    finally:
        client.close()


@pytest.mark.parametrize("chosen", [None, "my-chosen-token"])
def test_serve_requires_the_admin_token_it_makes_or_is_given(
    tmp_path: Path, chosen: str | None
) -> None:
    config = tmp_path / "serve.toml"
    namespace = f"run{uuid.uuid4().hex[:8]}"
    config.write_text(f'[bus]\nnamespace = "{namespace}"\n')
    env = _env_without_token() | ({} if chosen is None else {"AIO_ADMIN_TOKEN": chosen})
    server = subprocess.Popen(
        [sys.executable, "run.py", "serve", "--port", "0", "--config", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    seen = []
    try:
        assert server.stdout is not None and server.stderr is not None
        made = None
        if chosen is None:
            seen.append(line := server.stderr.readline())
            assert line.startswith("admin token (made for this run"), line
            made = line.rsplit(" ", 1)[1].strip()
            assert len(made) >= 32
        while "serving as" not in (line := server.stdout.readline()):
            assert line, "serve ended before serving"
            seen.append(line)
        seen.append(line)
        base = line.split(" on ", 1)[1].split(";", 1)[0]
        token = made or chosen
        assert _admin_status(base, None) == 401
        assert _admin_status(base, "not-the-token") == 401
        assert _admin_status(base, token) == 200
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
        _forget(env, namespace)
    assert server.returncode == 0, err
    printed = "".join(seen) + out + err
    assert token is not None and printed.count(token) == (1 if chosen is None else 0)


def test_serve_waits_for_redis_then_says_why_it_gave_up() -> None:
    """No Redis where it is told to look: it keeps trying for --wait-for-redis seconds,
    then exits 2 with one line that says so (no traceback)."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = os.environ | {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    result = _run("serve", "--port", "0", "--wait-for-redis", "0.5", env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Redis is unreachable" in result.stderr and "Traceback" not in result.stderr
