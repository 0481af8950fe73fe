"""Headless Chromium (Debian's ``/usr/bin/chromium``, driven by Playwright; no browser is
downloaded) and a page per test that is screenshot into ``tests/artifacts/inspector/``."""

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("RUNSTEP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "inspector"


def _require_browser() -> Any:
    """Playwright's sync API and Chromium; skipped where missing, except in CI, where
    scripts/test installs both and their absence is a failure."""
    missing = None
    try:
        from playwright import sync_api
    except ImportError:
        missing = "the playwright package (pip install -e '.[test]')"
    if missing is None and not shutil.which(CHROMIUM):
        missing = f"{CHROMIUM} (apt-get install chromium chromium-driver)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests need {missing}")
        pytest.skip(f"browser tests need {missing}")
    return sync_api


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one test module. Not longer: while Playwright's sync API is started it
    holds an event loop running on this thread, and the async tests that follow would fail."""
    sync_api = _require_browser()
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (so a fresh session storage); JavaScript errors fail the test,
    and the page is saved as ``<test name>.png`` at the end."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^\w.-]+", "_", request.node.name)
    try:
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    # Answers such as 401 for a wrong key or 404 for another project's run are logged too.
    unexpected = [e for e in errors if not e.startswith("Failed to load resource")]
    assert not unexpected, unexpected


def shot(tab: Any, name: str) -> None:
    """Save a screenshot in the middle of a test."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
