"""The dashboard as an operator uses it: in Chromium, against ``run.py serve`` and the
simulator, driven through the page only (clicks, typing); the traffic through the
OpenAI SDK; the provider failed through the simulator's knobs."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
import openai
import pytest
from playwright.async_api import Page, expect

from actors.providers.simulator import Simulator
from tests._serve import Served
from tests.conftest import PATIENCE
from tests.dashboard.conftest import TOKEN, artifacts

WAIT_MS = PATIENCE * 1000  # a bound on a condition, never a pause
HOSTILE = '<img src=x onerror="document.title=1">'


async def _ask(client: openai.AsyncOpenAI, user: str, text: str) -> str:
    try:
        answer = await client.chat.completions.create(
            model="gpt-4o-mini", user=user, temperature=0,
            messages=[{"role": "user", "content": text}],
        )  # fmt: skip
    except openai.APIStatusError as exc:
        return f"{exc.status_code}"
    return "200" if answer.choices[0].message.content else "empty"


async def _traffic(served: Served) -> list[str]:
    """Answers, a cache hit, a refusal for a rate limit (an alert), several users."""
    async with openai.AsyncOpenAI(api_key="k", base_url=f"{served.url}/v1",
                                  max_retries=0) as client:  # fmt: skip
        made = [await _ask(client, user, f"hello from {user}") for user in ("ann", "bob", HOSTILE)]
        made.append(await _ask(client, "ann", "hello from ann"))  # from the cache
        made += [await _ask(client, "cyd", f"question {n}") for n in range(4)]  # 3 a minute
    return made


async def _log_in(page: Page, served: Served, token: str = TOKEN) -> None:
    await page.goto(f"{served.url}/dashboard")
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token", token)
    await page.click("#login button[type=submit]")


async def _confirm(page: Page, button: str, *, answer: bool, names: str) -> None:
    await page.click(button)
    dialog = page.locator("dialog#confirm")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#confirm-text")).to_contain_text(names)
    await page.click("#confirm-yes" if answer else "#confirm-no")
    await expect(dialog).to_be_hidden()


async def _breaker(served: Served, provider: str) -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{served.url}/ai-orchestration/circuit-breakers",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response,
    ):
        found = await response.json()
    return next(b["state"] for b in found["circuit_breakers"] if b["provider"] == provider)


async def test_an_operator_sees_every_section_fails_a_provider_and_resets_its_breaker(
    browser: Any, served: Served, simulator: Simulator
) -> None:
    made = await _traffic(served)
    assert made == ["200"] * 7 + ["429"], made
    page = await browser.new_page(viewport={"width": 1280, "height": 1000})
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    await _log_in(page, served)
    await expect(page.locator("#app")).to_be_visible()
    await page.wait_for_selector("body[data-loaded='1']", timeout=WAIT_MS)
    await _every_section_filled(page)
    await _a_failing_provider_seen_open(page, served, simulator)
    await _reset_from_the_page(page, served, simulator)
    await page.screenshot(path=artifacts() / "dashboard.png", full_page=True)
    assert problems == [], problems


async def _every_section_filled(page: Page) -> None:
    openai_row = page.locator("tr[data-provider='openai']")
    await expect(openai_row.locator(".breaker")).to_have_text("closed", timeout=WAIT_MS)
    await expect(openai_row.locator(".health")).to_have_text("healthy", timeout=WAIT_MS)
    await expect(openai_row.locator(".p50")).to_have_text(re.compile(r"^\d"), timeout=WAIT_MS)
    await expect(openai_row.locator(".calls")).to_have_text(re.compile(r"^[1-9]"))
    await expect(page.locator("#requests-total")).to_have_text("8", timeout=WAIT_MS)
    await expect(page.locator("#chart-rps canvas").first).to_be_attached()
    await expect(page.locator("#chart-rps")).to_have_attribute("data-requests", "8")
    await expect(page.locator("#chart-latency")).to_have_attribute(
        "data-points", re.compile("^[1-9]")
    )
    await expect(page.locator("#models")).to_contain_text("gpt-4o-mini")
    await expect(page.locator("#cost-total")).to_have_text(re.compile(r"^\$0\.0*[1-9]"))
    await expect(page.locator("#cache-hit-rate")).to_have_text("12.5%")  # 1 of 8
    await expect(page.locator("#cache-saved")).to_have_text(re.compile(r"^\$0\.0*[1-9]"))
    users = page.locator("#users-table tr[data-user]")
    await expect(users).to_have_count(4, timeout=WAIT_MS)
    cyd = page.locator("#users-table tr[data-user='cyd']")
    await expect(cyd.locator(".limit-use")).to_contain_text("100% requests_per_minute",
                                                            timeout=WAIT_MS)  # fmt: skip
    await expect(cyd.locator(".quota-use")).to_contain_text("daily_requests")
    # A user id is text on the page, never markup.
    await expect(page.locator("#users-table")).to_contain_text(HOSTILE)
    assert await page.locator("#users-table img").count() == 0
    await page.select_option("#users-sort", "rejections")
    await expect(users.first).to_have_attribute("data-user", "cyd", timeout=WAIT_MS)
    await expect(page.locator("#rejections")).to_contain_text("requests_per_minute")
    limited = page.locator("#alerts-feed li[data-type='rate-limit.exceeded']")
    await expect(limited).to_contain_text("cyd", timeout=WAIT_MS)
    bus = page.locator("#bus-streams")
    await expect(bus).to_contain_text(":requests")
    await expect(bus).to_contain_text("router")
    await expect(page.locator("#dead-count")).to_have_text(re.compile(r"\d"))


async def _a_failing_provider_seen_open(page: Page, served: Served, simulator: Simulator) -> None:
    await _knobs(simulator, error_rate=1)
    async with openai.AsyncOpenAI(api_key="k", base_url=f"{served.url}/v1",
                                  max_retries=0) as client:  # fmt: skip
        failed = await asyncio.gather(*(_ask(client, f"f{n}", f"fail {n}") for n in range(4)))
    assert all(code.startswith("5") for code in failed), failed
    openai_row = page.locator("tr[data-provider='openai']")
    await expect(openai_row.locator(".breaker")).to_have_text("open", timeout=WAIT_MS)
    await expect(openai_row.locator(".why")).to_contain_text("failure rate")
    # The last five minutes' error rate: the failures show now, not diluted by the past.
    await expect(openai_row.locator(".error-rate")).not_to_have_text(re.compile(r"^(0\.0%|—)$"))
    opened = page.locator("#alerts-feed li[data-type='breaker.opened']")
    await expect(opened).to_contain_text("openai", timeout=WAIT_MS)
    await page.screenshot(path=artifacts() / "dashboard-breaker-open.png", full_page=True)


async def _reset_from_the_page(page: Page, served: Served, simulator: Simulator) -> None:
    # Asked first: "no" changes nothing.
    reset = "tr[data-provider='openai'] button[data-action='breaker-reset']"
    await _confirm(page, reset, answer=False, names="openai")
    assert await _breaker(served, "openai") == "open"
    await _knobs(simulator, error_rate=0)
    await _confirm(page, reset, answer=True, names="openai")
    openai_row = page.locator("tr[data-provider='openai']")
    await expect(openai_row.locator(".breaker")).to_have_text("closed", timeout=WAIT_MS)
    await expect(page.locator("#action-result")).to_contain_text("openai")
    assert await _breaker(served, "openai") == "closed"
    # A user's limits, then the cache: each asked, each done.
    cyd = page.locator("#users-table tr[data-user='cyd']")
    await _confirm(page, "#users-table tr[data-user='cyd'] button[data-action='limits-reset']",
                   answer=True, names="cyd")  # fmt: skip
    await expect(cyd.locator(".limit-use")).to_contain_text("0%", timeout=WAIT_MS)
    await _confirm(page, "button[data-action='cache-clear']", answer=True, names="cache")
    await expect(page.locator("#action-result")).to_contain_text("Cache cleared")


async def _knobs(simulator: Simulator, **knobs: Any) -> None:
    """Turn the simulator's knobs of openai, over HTTP as an operator would."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{simulator.url}/_sim/knobs/openai", json=knobs) as response,
    ):
        assert response.status == 200


async def test_without_the_right_token_nothing_is_shown(browser: Any, served: Served) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{served.url}/dashboard") as response:
        assert response.status == 200 and response.content_type == "text/html"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert TOKEN not in await response.text()
    page = await browser.new_page()
    await _log_in(page, served, token="not-the-token")
    await expect(page.locator("#login-error")).to_contain_text("wrong", timeout=WAIT_MS)
    await expect(page.locator("#app")).to_be_hidden()
    # The page's own data calls are refused without the token, whatever the page does.
    for path in ("users", "alerts", "bus", "circuit-breakers"):
        status = await page.evaluate(f"fetch('/ai-orchestration/{path}').then(r => r.status)")
        assert status == 401, path
    # With the right one: in this tab's session only (not another tab's, not a cookie).
    await page.fill("#token", TOKEN)
    await page.click("#login button[type=submit]")
    await expect(page.locator("#app")).to_be_visible(timeout=WAIT_MS)
    assert await page.evaluate("localStorage.length + document.cookie.length") == 0
    await page.reload()
    await expect(page.locator("#app")).to_be_visible(timeout=WAIT_MS)
    other = await browser.new_page()
    await other.goto(f"{served.url}/dashboard")
    await expect(other.locator("#login")).to_be_visible()
    await expect(other.locator("#app")).to_be_hidden()
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


@pytest.mark.timeout(300)
async def test_a_phone_sized_screen_and_thousands_of_users(
    browser: Any, served_by_two: Served
) -> None:
    served = served_by_two
    users = 1200
    gate = asyncio.Semaphore(32)
    async with openai.AsyncOpenAI(api_key="k", base_url=f"{served.url}/v1",
                                  max_retries=0) as client:  # fmt: skip

        async def one(n: int) -> str:
            async with gate:
                return await _ask(client, f"user-{n:05d}", f"q{n}")

        made = await asyncio.gather(*(one(n) for n in range(users)))
    assert made.count("200") == users, {code: made.count(code) for code in set(made)}
    page = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    await _log_in(page, served)
    await page.wait_for_selector("body[data-loaded='1']", timeout=WAIT_MS)
    await expect(page.locator("#users-page")).to_have_text("1\u201320 of 1200", timeout=WAIT_MS)
    await expect(page.locator("#users-table tr[data-user]")).to_have_count(20)
    await page.click("#users-next")
    await expect(page.locator("#users-page")).to_have_text("21\u201340 of 1200", timeout=WAIT_MS)
    await expect(page.locator("#users-table tr[data-user]")).to_have_count(20)
    # Nothing wider than the screen: tables scroll inside their own boxes.
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width
    chart = await page.locator("#chart-rps").bounding_box()
    assert chart is not None and chart["width"] <= 390
    await page.screenshot(path=artifacts() / "dashboard-phone.png", full_page=True)
