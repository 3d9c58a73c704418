"""A real server with the page mounted at /ui, and Debian's Chromium driven by Playwright.

Chromium comes from the Debian package (`.ci/run` installs it); Playwright's own browser download
is never used. Without gradio, Playwright or /usr/bin/chromium these tests skip, saying why, unless
FRAMEPACK_REQUIRE_BROWSER=1 (set by .ci/run), where a missing piece is an error.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.server import Server, png_bytes

CHROMIUM = Path(os.environ.get("FRAMEPACK_CHROMIUM", "/usr/bin/chromium"))
# Flags that work on a closed network: without the background-networking ones Chromium's own
# connections are refused and slow everything down.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"


def _missing() -> str | None:
    for module in ("gradio", "playwright"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[dev,ui]')"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install -y chromium)"
    return None


_MISSING = _missing()
if _MISSING and os.environ.get("FRAMEPACK_REQUIRE_BROWSER") == "1":
    raise RuntimeError(f"browser tests required but {_MISSING}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if _MISSING:
        pytest.skip(_MISSING)
    srv = Server(tmp_path_factory.mktemp("ui-serve")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if _MISSING:
        pytest.skip(_MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(f"{server.url}/ui/")
    page.wait_for_selector("#vid-submit")
    yield page
    context.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Any:
    """shot(page, "name"): a full-page screenshot in test-artifacts/ui/<test>-<name>.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = ARTIFACTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(scope="session")
def start_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "start.png"
    path.write_bytes(png_bytes((160, 120)))
    return path
