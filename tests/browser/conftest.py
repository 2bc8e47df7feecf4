"""The page in a real browser: Debian's chromium driven by Playwright (its async API: the suite
runs in an event loop), pointed at a real ``ranker serve`` on the suite's Redis and PostgreSQL.

The browser is ``RANKER_CHROMIUM`` if set, else ``/usr/bin/chromium`` (``playwright install``
is not needed). Without one the tests fail when ``CI`` is set and skip with the reason
otherwise, as the servers of the integration tests do. When a test fails, a screenshot and the
console log of each of its pages go to ``.artifacts/browser/`` (gitignored), and the paths are
printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright

from ranker.settings import Settings
from tests.fixtures.ranker import ROOT, WRITE_KEY, Processes, auth_headers, wait_for

CHROMIUM_ENV = "RANKER_CHROMIUM"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / ".artifacts" / "browser"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: /tmp instead of /dev/shm, which containers often make too small for a renderer.
CHROMIUM_ARGS = ["--disable-dev-shm-usage"]

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so that teardown knows whether the test failed."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def no_browser(reason: str) -> NoReturn:
    message = f"no chromium for the browser tests: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def chromium_path() -> Path:
    """The chromium to drive: ``RANKER_CHROMIUM`` if set, else Debian's."""
    configured = os.environ.get(CHROMIUM_ENV)
    path = Path(configured) if configured else DEFAULT_CHROMIUM
    if not path.is_file():
        where = f"{CHROMIUM_ENV}={configured}" if configured else str(DEFAULT_CHROMIUM)
        no_browser(f"{where} does not exist (apt-get install chromium, or set {CHROMIUM_ENV})")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    path = chromium_path()
    async with async_playwright() as playwright:
        # Without chromium's sandbox (Playwright's default, said here on purpose): chromium
        # refuses to start as root with it, and containers often lack the user namespaces it
        # needs as anyone else. The pages it opens are the service's own.
        launched = await playwright.chromium.launch(
            executable_path=str(path), chromium_sandbox=False, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@dataclass
class Opened:
    """A page the test opened, with what its console said."""

    context: BrowserContext
    page: Page
    console: list[str] = field(default_factory=list)


@dataclass
class Pages:
    """Opens pages of the service, each in a context of its own (its own sessionStorage, as
    another browser would have); ``save`` writes a screenshot and the console of each."""

    browser: Browser
    opened: list[Opened] = field(default_factory=list)

    async def open(self, url: str, viewport: ViewportSize | None = None) -> Page:
        """A new page at ``url``, in a context of its own (English, UTC)."""
        context = await self.browser.new_context(
            viewport=viewport or DESKTOP, locale="en-US", timezone_id="UTC"
        )
        page = await context.new_page()
        record = Opened(context, page)
        page.on("console", lambda msg: record.console.append(f"{msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: record.console.append(f"uncaught: {exc}"))
        self.opened.append(record)
        await page.goto(url)
        return page

    async def save(self, name: str) -> list[Path]:
        """A full-page screenshot and the console log of each page, named after ``name``."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        saved = []
        for number, record in enumerate(self.opened):
            stem = ARTIFACTS / f"{name}-{number}"
            if not record.page.is_closed():
                await record.page.screenshot(path=f"{stem}.png", full_page=True)
                saved.append(stem.with_suffix(".png"))
            stem.with_suffix(".log").write_text("\n".join(record.console) + "\n")
            saved.append(stem.with_suffix(".log"))
        return saved

    def uncaught(self) -> list[str]:
        """The script errors no handler caught, on any page."""
        return [line for o in self.opened for line in o.console if line.startswith("uncaught")]


@pytest.fixture
async def pages(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Pages]:
    """Pages of the service; on failure their screenshots and console logs are saved."""
    opened = Pages(browser)
    yield opened
    report = request.node.stash.get(_reports, {}).get("call")
    if report is not None and report.failed:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        for path in await opened.save(name):
            print(f"browser artifact: {path}")
    for record in opened.opened:
        await record.context.close()
    # A script error the test did not notice is still a failure of the page.
    assert not opened.uncaught(), opened.uncaught()


@dataclass
class Service:
    """A running ``ranker serve`` and an HTTP client on it (with the write key)."""

    url: str
    port: int
    process: Any
    http: httpx.AsyncClient
    settings: Settings

    async def submit(
        self, user_id: int, score: int, username: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"user_id": user_id, "score": score, **fields}
        if username is not None:
            body["username"] = username
        response = await self.http.post("/api/leaderboard/submit", json=body)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer


async def ready(url: str) -> None:
    """Wait until ``ranker serve`` at ``url`` reads its boards (``/readyz``)."""

    async def answers() -> bool:
        async with httpx.AsyncClient(base_url=url) as http:
            try:
                return (await http.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

    await wait_for(answers, 30, "ranker serve to be ready")


@pytest.fixture
async def serve(
    processes: Processes, settings: Settings
) -> AsyncIterator[Callable[..., Awaitable[Service]]]:
    """Starts ``ranker serve`` of the test's settings, or of ``settings`` (on ``port``: again
    on the port of one stopped) and waits until it is ready."""
    clients: list[httpx.AsyncClient] = []

    async def start(port: int | None = None, settings: Settings = settings) -> Service:
        url, process = await processes.serve(settings=settings, port=port)
        await ready(url)
        http = httpx.AsyncClient(base_url=url, headers=auth_headers(WRITE_KEY))
        clients.append(http)
        return Service(url, int(url.rsplit(":", 1)[1]), process, http, settings)

    yield start
    for client in clients:
        await client.aclose()


@pytest.fixture
async def service(serve: Callable[..., Awaitable[Service]]) -> Service:
    """One ``ranker serve`` of the test's settings, ready."""
    return await serve()
