"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against
``run.py serve`` and the provider simulator.

Chromium comes from the system (``apt-get install chromium``; CI installs it); without
it these tests are skipped, except under CI, where its absence is a failure."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from actors.providers.simulator import Simulator
from tests._serve import ROOT, Served, serve_env, serving
from tests.conftest import PATIENCE
from tests.request_path.conftest import simulator  # noqa: F401  (a fixture)

TOKEN = "adm-dashboard-7d1f0c"

# Every expectation waits for its condition up to this long (Playwright's default, 5 s,
# is a bet on the machine's speed); a met condition returns at once.
expect.set_options(timeout=PATIENCE * 1000)

# Flags for a headless Chromium on a machine with no network beyond loopback (it
# would otherwise try Google's hosts at every start) and no user namespace (root).
_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _chromium() -> str:
    found = os.environ.get("AIO_CHROMIUM") or shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("no chromium on PATH: .ci/run installs Debian's chromium before the tests")
    pytest.skip("no chromium on PATH (apt-get install chromium, or set AIO_CHROMIUM)")


def artifacts() -> Path:
    """Where screenshots go: $AIO_TEST_ARTIFACTS, else .artifacts/ in the checkout."""
    folder = Path(os.environ.get("AIO_TEST_ARTIFACTS") or ROOT / ".artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    executable = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def served(simulator: Simulator, tmp_path: Path) -> AsyncIterator[Served]:  # noqa: F811
    """``serve`` in one process (see ``_config``)."""
    async with serving(_config(tmp_path), serve_env(simulator, TOKEN)) as running:
        yield running


@pytest.fixture
async def served_by_two(simulator: Simulator, tmp_path: Path) -> AsyncIterator[Served]:  # noqa: F811
    """``serve --workers 2``: the page reads whichever worker answers."""
    async with serving(_config(tmp_path), serve_env(simulator, TOKEN), workers=2) as running:
        yield running


def _config(folder: Path) -> Path:
    """Limits low enough to be hit, a breaker quick to open and slow to close by itself,
    the prober looking every second."""
    config = folder / "aio.toml"
    config.write_text(f"""
[bus]
namespace = "db{uuid.uuid4().hex[:8]}"
[router]
retry_base_ms = 5
retry_max_ms = 20
[breaker]
window_size = 10
minimum_calls = 4
open_ms = 600000
refresh_ms = 200
[limits]
requests_per_minute = 3
burst_limit = 1000
[quota]
daily_request_limit = 40
[health]
interval_ms = 1000
jitter_ms = 100
""")
    return config
