"""Accessibility: axe-core 4.14 in Debian chromium reports no serious or critical violation on any tab.

axe-core comes from npm into `.axe/` (`npm install --prefix .axe axe-core@4.14`, as .ci/run does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.vocabulary.messages import t
from tests.app_server import RunningApp, app_server_fixture
from tests.browser import browser_fixture

pytestmark = pytest.mark.slow

AXE = Path(__file__).resolve().parent.parent / ".axe" / "node_modules" / "axe-core" / "axe.min.js"
TABS = ["chat", "compare", "retrieval", "structured", "status"]

live_app = app_server_fixture()
browser = browser_fixture()


def open_tab(page: Any, name: str) -> None:
    """A tab by its name; on a phone most tabs sit behind the tab bar's overflow button."""
    tab = page.get_by_role("tab", name=name, exact=True)
    if tab.count() and tab.first.is_visible():
        tab.first.click()
        return
    page.locator(".overflow-menu > button").first.click()
    page.locator(".overflow-dropdown button", has_text=name).first.click()


def serious(results: dict[str, Any]) -> list[str]:
    out = []
    for v in results["violations"]:
        if v["impact"] in ("serious", "critical"):
            targets = [" ".join(map(str, n["target"])) for n in v["nodes"][:5]]
            out.append(f"{v['id']} ({v['impact']}): {v['help']} — {targets}")
    return out


@pytest.fixture
def page(live_app: RunningApp, browser: Any, request: Any) -> Iterator[Any]:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: npm install --prefix .axe axe-core@4.14")
    lang, width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height}, locale="de-DE")
    page = context.new_page()
    page.goto(f"{live_app.url}/?lang={lang}")
    page.locator("#chat-input textarea").wait_for()
    time.sleep(1.5)
    page.add_script_tag(path=str(AXE))
    yield page, lang
    context.close()


@pytest.mark.parametrize(
    "page", [("de", 1400, 1000), ("en", 1400, 1000), ("de", 390, 844)], indirect=True, ids=["de", "en", "de-phone"]
)
def test_no_serious_or_critical_violation_on_any_tab(page: Any) -> None:
    page, lang = page
    found: dict[str, list[str]] = {}
    for tab in TABS:
        open_tab(page, t(f"tab_{tab}", lang))
        time.sleep(1.0)
        results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
        problems = serious(results)
        if problems:
            found[tab] = problems
    assert found == {}, json.dumps(found, indent=1, ensure_ascii=False)
