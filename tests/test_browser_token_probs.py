"""Token probabilities on the page (Debian chromium via playwright, the real app and offline model): the tinted
answer, a token's probability on focus and its alternatives on Enter or a tap, in German and English, on a desktop
and a phone, axe-core clean; and the same per pane in compare."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.vocabulary.messages import t
from tests.app_server import RunningApp, app_server_fixture
from tests.browser import browser_fixture, set_slider
from tests.test_browser_axe import AXE, open_tab, serious

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "bench" / "out"
QUESTION = "Nenne drei Städte in Deutschland."

live_app = app_server_fixture()
browser = browser_fixture()


@pytest.fixture
def page(live_app: RunningApp, browser: Any, request: Any) -> Iterator[tuple[Any, str, str]]:
    lang, width, height = request.param
    context = browser.new_context(viewport={"width": width, "height": height}, locale="de-DE")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{live_app.url}/?lang={lang}")
    page.locator("#chat-input textarea").wait_for()
    yield page, lang, f"{lang}-{width}x{height}"
    context.close()


def settings(page: Any, prefix: str, accordion: str, label: str, **values: float) -> None:
    """Opens a settings box and sets its sliders (elem ids `{prefix}-{name}`)."""
    page.locator(f"#{accordion}").get_by_text(label, exact=True).first.click()
    for name, value in values.items():
        set_slider(page, f"{prefix}-{name.replace('_', '-')}", value)


def axe_problems(page: Any, *selectors: str) -> list[str]:
    """axe-core's serious and critical findings in the elements of `selectors`."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    context = json.dumps({"include": [[s] for s in selectors]})
    return serious(page.evaluate(f"async () => await axe.run({context}, {{resultTypes: ['violations']}})"))


@pytest.mark.parametrize(
    "page",
    [("de", 1400, 1000), ("en", 1400, 1000), ("de", 390, 844), ("en", 390, 844)],
    indirect=True,
    ids=["de", "en", "de-phone", "en-phone"],
)
def test_tinted_answer_with_alternatives_by_keyboard_and_tap(page: Any) -> None:
    page, lang, name = page
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: npm install --prefix .axe axe-core@4.14")
    settings(page, "chat", "chat-settings", t("settings", lang), temperature=0, max_new_tokens=16, top_tokens=3)
    box = page.locator("#chat-input textarea")
    box.fill(QUESTION)
    box.press("Enter")
    tokens = page.locator("#chat-probs .tp")
    tokens.first.wait_for(timeout=120_000)
    time.sleep(0.5)
    count = tokens.count()
    assert 3 <= count <= 16
    # the tokens are the answer's text, inline (not one per line)
    answer = page.locator("#chat-bot [data-testid=bot]").last.inner_text()
    first, last = tokens.first.bounding_box(), tokens.nth(1).bounding_box()
    assert first and last and abs(first["y"] - last["y"]) < 4, (first, last)
    # the stats line under the answer sums them up
    summary = t("stats_probs", lang, mean="X", ppl="Y", low="Z").split("X")[0].strip(" ·")
    assert summary in answer
    # each token carries its probability as title, and with its alternatives as accessible name
    title = tokens.first.get_attribute("title") or ""
    assert re.search(r"\d+([,.]\d)? %$", title), title
    assert ("„" in title) == (lang == "de")
    spoken = tokens.first.locator(".tp-sr").inner_text()
    assert title.split(": ")[-1] in spoken and t("probs_alternatives", lang) in spoken
    assert not page.locator("#chat-probs .tp-alts").first.is_visible()
    # keyboard: Tab reaches a token and shows its probability and alternatives (the generated one marked)
    tokens.first.focus()
    shown = page.locator("#chat-probs .tp:focus > .tp-alts")
    shown.wait_for()
    assert title in shown.inner_text() and t("probs_alternatives", lang) in shown.inner_text()
    assert 1 <= shown.locator("li").count() <= 3
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement === document.querySelectorAll('#chat-probs .tp')[1]")
    assert page.locator("#chat-probs .tp:focus > .tp-alts").is_visible()
    # a tap (a click) on another token shows its alternatives instead
    tokens.nth(count - 1).click()
    assert page.locator("#chat-probs .tp-alts:visible").count() == 1
    assert page.locator("#chat-probs .tp:focus > .tp-alts").is_visible()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"token-probs-{name}.png"), full_page=False)
    problems = axe_problems(page, "#chat-probs", "#chat-bot")
    assert problems == [], json.dumps(problems, indent=1, ensure_ascii=False)


@pytest.mark.parametrize("page", [("de", 1400, 1000)], indirect=True, ids=["de"])
def test_compare_panes_each_show_their_tokens(page: Any) -> None:
    page, lang, name = page
    open_tab(page, t("tab_compare", lang))
    settings(
        page,
        "compare-shared",
        "compare-settings",
        t("compare_shared_settings", lang),
        max_new_tokens=12,
        top_tokens=2,
    )
    box = page.locator("#compare-input textarea")
    box.fill(QUESTION)
    box.press("Enter")
    for n in (1, 2):
        page.locator(f"#compare-probs-{n} .tp").first.wait_for(timeout=120_000)
    time.sleep(0.5)
    page.locator("#compare-probs-1 .tp").nth(1).click()
    assert page.locator("#compare-probs-1 .tp:focus > .tp-alts li").count() >= 1
    page.locator("#compare-probs-1").scroll_into_view_if_needed()
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"token-probs-compare-{name}.png"), full_page=False)
    problems = axe_problems(page, "#compare-probs-1", "#compare-probs-2")
    assert problems == [], json.dumps(problems, indent=1, ensure_ascii=False)
