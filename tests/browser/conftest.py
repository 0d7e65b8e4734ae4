"""A real browser for the page tests: Debian's chromium driven by Playwright, against the real
app over HTTP, with axe-core (from tests/browser/node_modules) for the accessibility check."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)
from sqlalchemy import Engine, select

from service.config import DEFAULT_CONFIG_PATH, AppConfig, parse_config
from service.crypto import PayloadCipher
from service.models import submissions
from service.settings import PROJECT_ROOT, Settings
from tests.support.stack import LiveServer

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = Path("/usr/bin/chromium")
# A closed network: no update checks, no sync, nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = PROJECT_ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "browser"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# What axe checks: WCAG 2.0, 2.1 and 2.2 at levels A and AA, and its best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def _missing(what: str) -> None:
    message = f"{what} is missing: run `bash scripts/bootstrap.sh test` (make test does)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        _missing(str(CHROMIUM))
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        _missing("axe-core (tests/browser/node_modules)")
    return AXE.read_text(encoding="utf-8")


def browser_config() -> AppConfig:
    """The built-in configuration, with the time trap required but no minimum fill time: a
    scripted person is fast, yet every post must carry the page's valid token."""
    raw = tomllib.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["forms"]["contact"].update(require_time_token=True, min_fill_seconds=0)
    return parse_config(raw)


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite only: the endpoint's tests cover PostgreSQL; these cover the pages."""
    from service.db import migrate

    url = f"sqlite:///{tmp_path / 'intake.db'}"
    migrate(url)
    return url


@pytest.fixture
def site(settings: Settings) -> Iterator[LiveServer]:
    live = LiveServer(settings.with_overrides(dev_mode=True), browser_config()).start()
    yield live
    live.stop()


class Tab:
    """One page in a fresh browser context, collecting console errors (CSP violations show
    there), our scripts' uncaught errors and missing static files."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page: Page = context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        # A 422 or a cut network is an answer the page handles, not an error of the page.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _response(self, response: Response) -> None:
        if response.status == 404 and "/static/" in response.url:
            self.errors.append(f"404 {response.url}")

    def goto(self, path: str) -> Page:
        self.page.goto(self.base_url + path)
        return self.page

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def open_tab(browser: Browser, site: LiveServer) -> Iterator[Any]:
    """open_tab(viewport=DESKTOP, javascript=True) -> Tab; contexts are closed afterwards."""
    contexts: list[BrowserContext] = []

    def factory(viewport: dict[str, int] = DESKTOP, javascript: bool = True) -> Tab:
        context = browser.new_context(viewport=viewport, java_script_enabled=javascript)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return Tab(context, site.url)

    yield factory
    for context in contexts:
        context.close()


def stored(engine: Engine) -> list[dict[str, Any]]:
    """Every stored submission, its personal fields opened (the test settings do not encrypt)."""
    with engine.connect() as connection:
        rows = connection.execute(select(submissions)).mappings().all()
    cipher = PayloadCipher("")
    return [dict(row) | {"person": cipher.open(row["payload"])["person"]} for row in rows]


def serious_violations(page: Page, axe_source: str) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now, one line each."""
    page.evaluate(axe_source)
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> "
        + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"])
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
