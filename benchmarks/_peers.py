"""Peer gateways run beside ours against the same simulator: LiteLLM's proxy and Portkey's
AI gateway, each at a pinned version, installed on first use under benchmarks/.peers/
(a venv, an npm prefix) and reused afterwards.

    peer = start_peer("litellm", "http://127.0.0.1:PORT/v1", port)
    ... POST peer.url with peer.headers; CPU and RSS from /proc/<peer.pid> ...
    peer.stop()
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LITELLM_VERSION = "1.108.7"
PORTKEY_VERSION = "1.15.2"
PEERS = Path(__file__).resolve().parent / ".peers"
READY_DEADLINE_S = 120.0
_MASTER_KEY = "sk-bench-peer"  # LiteLLM's proxy key, as a production deployment has one
_BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode()
# Written last by an install: a folder without it is a broken install, redone from scratch.
_DONE = ".installed"


@dataclass
class Peer:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    headers: dict[str, str]
    ready_s: float = 0.0
    _tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    _cleanup: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        """The serving process itself: both peers are started with no wrapper in between."""
        return self.process.pid

    def output(self) -> str:
        return "".join(self._tail)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self._cleanup:
            path.unlink(missing_ok=True)


def _install(folder: Path, what: str, steps: list[list[str]]) -> None:
    if (folder / _DONE).exists():
        return
    print(f"installing {what} into {folder} (once)", file=sys.stderr, flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for step in steps:
        done = subprocess.run(step, cwd=folder, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    (folder / _DONE).write_text(what + "\n")


def _env() -> dict[str, str]:
    """This machine's environment without anything a peer would pick up on its own: a
    database or a Redis (LiteLLM turns REDIS_HOST into a shared cache by itself), provider
    keys and base URLs, the peers' own settings."""
    drop = ("REDIS", "DATABASE_URL", "DIRECT_URL", "LITELLM_", "PORTKEY_", "OPENAI_")
    return {k: v for k, v in os.environ.items()
            if not k.startswith(drop) and not k.endswith(("_API_KEY", "_BASE_URL"))}  # fmt: skip


def _litellm(simulator_v1_url: str, port: int) -> Peer:
    folder = PEERS / f"litellm-{LITELLM_VERSION}"
    python = folder / "bin" / "python"
    _install(folder, f"litellm[proxy]=={LITELLM_VERSION}", [
        [sys.executable, "-m", "venv", "."],
        [str(python), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
    ])  # fmt: skip
    # No database_url: no Postgres, so no spend logs, no key table, no Prisma migrations at
    # start; the master key is checked in memory. The disable_* flags say the same in case a
    # DATABASE_URL ever leaks in. No callbacks (no logging integrations) is the default.
    config = (
        "model_list:\n"
        "  - model_name: gpt-4o\n"
        "    litellm_params:\n"
        "      model: openai/gpt-4o\n"
        f"      api_base: {json.dumps(simulator_v1_url)}\n"
        "      api_key: sk-bench\n"
        "general_settings:\n"
        f"  master_key: {_MASTER_KEY}\n"
        "  disable_spend_logs: true\n"
        "  disable_error_logs: true\n"
        "litellm_settings:\n"
        "  callbacks: []\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        file.write(config)
    env = _env() | {
        "LITELLM_LOG": "ERROR",  # its loggers and uvicorn's (so no access log)
        "LITELLM_MODE": "PRODUCTION",  # DEV (the default) loads a .env from the cwd
        # Otherwise every start fetches the price list from GitHub, 3 tries with back-off.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY_DISABLED": "true",  # off by default in this version; the veto
        "DISABLE_ADMIN_UI": "True",
        "PYTHONUNBUFFERED": "1",
    }
    # `python -m` rather than bin/litellm: same process, no console-script shim needed.
    # One uvicorn worker runs inside this very process (uvicorn.run with workers=1).
    args = [str(python), "-m", "litellm.proxy.proxy_cli", "--config", file.name,
            "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]  # fmt: skip
    peer = _spawn(f"litellm {LITELLM_VERSION}", args, folder, env,
                  f"http://127.0.0.1:{port}/v1/chat/completions",
                  {"Authorization": f"Bearer {_MASTER_KEY}"})  # fmt: skip
    peer._cleanup.append(Path(file.name))
    return peer


def _portkey(simulator_v1_url: str, port: int) -> Peer:
    folder = PEERS / f"portkey-{PORTKEY_VERSION}"
    package = f"@portkey-ai/gateway@{PORTKEY_VERSION}"
    # --ignore-scripts: its only install script is `patch-package`, and the published
    # package has no patches/ folder, so it does nothing (npm 11 would only warn about it).
    _install(folder, package, [
        ["npm", "init", "-y"],
        ["npm", "install", "--save-exact", "--omit=dev", "--ignore-scripts", "--no-audit",
         "--no-fund", package],
    ])  # fmt: skip
    server = folder / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    # The port comes only as `--port=N` (no PORT env, no separate value); it listens on all
    # interfaces, with no way to choose. --headless and NODE_ENV=production: no web console
    # and no /log/stream route. 127.0.0.1 is in its default TRUSTED_CUSTOM_HOSTS, so the
    # custom host passes its SSRF check.
    env = _env() | {"NODE_ENV": "production"}
    args = ["node", str(server), f"--port={port}", "--headless"]
    headers = {
        "Authorization": "Bearer sk-bench",  # forwarded to the provider as its key
        "x-portkey-provider": "openai",
        "x-portkey-custom-host": simulator_v1_url,  # with /v1, as Portkey's docs say
    }
    return _spawn(f"portkey {PORTKEY_VERSION}", args, folder, env,
                  f"http://127.0.0.1:{port}/v1/chat/completions", headers)  # fmt: skip


def _spawn(name: str, args: list[str], cwd: Path, env: dict[str, str], url: str,
           headers: dict[str, str]) -> Peer:  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    peer = Peer(name, process, url, headers | {"Content-Type": "application/json"})
    assert process.stdout is not None
    stdout = process.stdout

    def drain() -> None:  # keep the pipe from filling, keep the last lines for errors
        for line in iter(stdout.readline, b""):
            peer._tail.append(line.decode(errors="replace"))

    threading.Thread(target=drain, daemon=True).start()
    deadline = started + READY_DEADLINE_S
    last = ""
    while time.perf_counter() < deadline and process.poll() is None:
        request = urllib.request.Request(url, data=_BODY, headers=peer.headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                body = response.read()
            if response.status == 200 and b'"chat.completion"' in body:
                peer.ready_s = time.perf_counter() - started
                return peer
            last = f"HTTP {response.status}: {body[:300]!r}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}: {error.read()[:300]!r}"
        except OSError as error:  # not listening yet
            last = str(error)
        time.sleep(0.1)
    peer.stop()
    raise RuntimeError(f"{name} not ready within {READY_DEADLINE_S:g} s (exit code "
                       f"{process.returncode}; last answer: {last}):\n{peer.output()}")  # fmt: skip


def start_peer(which: str, simulator_v1_url: str, port: int) -> Peer:
    """Install `which` ("litellm" or "portkey") if needed, start it on 127.0.0.1:`port` in
    front of the simulator, and return once a real chat completion through it has come back."""
    starters = {"litellm": _litellm, "portkey": _portkey}
    if which not in starters:
        raise ValueError(f"unknown peer {which!r}: one of {sorted(starters)}")
    return starters[which](simulator_v1_url.rstrip("/"), port)
