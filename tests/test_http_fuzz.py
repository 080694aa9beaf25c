"""Bad input through HTTP: schemathesis, driven by the gateway's own /openapi.json,
sends valid and malformed bodies, headers and paths to every endpoint of a real
``run.py serve`` (against ``run.py simulate``): no answer is a 500, and every error is
JSON in the error shape. Bounded: a fixed number of examples per endpoint, derandomized
so that a run is the same run each time."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from actors.gateway._openapi import openapi_document
from tests._audit import secret

ROOT = Path(__file__).resolve().parent.parent
ADMIN = secret("admin")
EXAMPLES = 12  # per endpoint and mode

schema = schemathesis.openapi.from_dict(openapi_document())
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
    max_examples=EXAMPLES,
    deterministic=True,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(args: list[str], env: dict[str, str], ready: str) -> tuple[subprocess.Popen[str], str]:
    """``run.py`` with ``args``, once it printed a line starting with ``ready``."""
    process = subprocess.Popen(
        [sys.executable, "run.py", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    seen = []
    while True:
        line = process.stdout.readline()
        assert line, "".join(seen)
        seen.append(line)
        if line.startswith(ready):
            break
    threading.Thread(target=process.stdout.read, daemon=True).start()  # never a full pipe
    return process, line


@dataclass(frozen=True)
class Gateway:
    url: str
    ns: str
    redis: redis.Redis


@pytest.fixture(scope="module")
def gateway(server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_BASE_URL"))}
    env |= {"PYTHONUNBUFFERED": "1"}
    sim_port = _free_port()
    simulator, _line = _start(["simulate", "--port", str(sim_port), "--log-level", "error"],
                              env, "")  # fmt: skip
    ns = f"fz{uuid.uuid4().hex[:10]}"
    config = tmp_path_factory.mktemp("fuzz") / "aio.toml"
    config.write_text(
        f'redis_url = "{server_url}"\n[bus]\nnamespace = "{ns}"\n'
        "[gateway]\nport = 0\n[health]\nenabled = false\n"
    )
    sim = f"http://127.0.0.1:{sim_port}"
    serve_env = env | {"OPENAI_API_KEY": secret("sk-o"), "OPENAI_BASE_URL": f"{sim}/v1",
                       "ANTHROPIC_API_KEY": secret("sk-a"), "ANTHROPIC_BASE_URL": sim,
                       "AIO_ADMIN_TOKEN": ADMIN}  # fmt: skip
    try:
        server, line = _start(["serve", "--workers", "1", "--config", str(config),
                               "--log-level", "error"], serve_env, "serving as")  # fmt: skip
    except BaseException:
        simulator.terminate()
        raise
    client = redis.Redis.from_url(server_url)
    try:
        yield Gateway(line.split(" on ")[1].split(";")[0].strip(), ns, client)
    finally:
        for process in (server, simulator):
            process.terminate()
        for process in (server, simulator):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        keys = list(client.scan_iter(match=f"{ns}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck), max_examples=EXAMPLES)
def test_no_input_breaks_the_gateway(case: schemathesis.Case, gateway: Gateway) -> None:
    before = _settings(gateway)
    response = case.call(base_url=gateway.url, headers={"Authorization": f"Bearer {ADMIN}"},
                         timeout=60)  # fmt: skip
    assert response.status_code != 500, (case.method, case.path, response.text[:500])
    if 400 <= response.status_code < 500:
        # Refused, so nothing changed: no setting written in part. (A 503 "interrupted"
        # or a 504 says the request may have run: not a refusal.)
        assert _settings(gateway) == before, (case.method, case.path, response.text[:300])
    if response.status_code >= 400:
        content_type = (response.headers.get("content-type") or [""])[0]  # lists, by name
        assert content_type.startswith("application/json"), (
            case.method, case.path, response.status_code, response.text[:300],
        )  # fmt: skip
        body = json.loads(response.text)
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
        assert body["error"].get("message"), body  # it names the problem


def _settings(gateway: Gateway) -> dict[bytes, bytes]:
    """What management requests set and nothing else changes meanwhile: every key of the
    namespace without an expiry, each as its DUMP, but streams and counters (metrics,
    the cache's lookups: a refused request's lookup counts, as docs/features.md says)
    and the cache's bookkeeping (its index and meta change when an earlier answer is
    stored, after its response, or when a sweep drops an expired entry)."""
    client = gateway.redis
    found = {}
    for key in client.scan_iter(match=f"{gateway.ns}:*", count=1000):
        if key.endswith((b":cache:stats", b":cache:meta", b":cache:index")) or b":metrics" in key:
            continue
        if client.type(key) == b"stream" or client.pttl(key) != -1:
            continue
        dumped = client.dump(key)
        if dumped is not None:
            found[key] = dumped
    return found
