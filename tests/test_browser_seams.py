"""The demo without seams, in a real browser (Debian chromium), German and English, desktop (1400x1000) and phone
(390x844): one typeface for every weight, Gradio's own texts in the page's language, a chat that survives F5 during
an answer, answers and Stop in view on a phone, a new compare round in view in every pane."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.ui.chat import SAVE_EVERY_S
from components.ui.page_script import GRADIO_FIXED_KEYS
from components.vocabulary.messages import t
from tests import test_browser_demo as demo_tests
from tests.app_server import RunningApp, free_port, running_app
from tests.browser import set_slider
from tests.test_browser_axe import TABS, open_tab
from tests.test_browser_demo import PHONE, VIEWPORTS

browser = demo_tests.browser  # the fixtures of the demo's browser tests
open_page = demo_tests.open_page

pytestmark = pytest.mark.slow

#: a prompt the offline model answers until max new tokens runs out (tests/test_browser_demo.py uses it too)
LONG = "Write the numbers from 1 to 500, separated by commas."


@pytest.fixture(scope="module")
def app() -> Iterator[RunningApp]:
    """The app on a machine whose Hub cannot be reached: the offline model is the one that runs."""
    with running_app({"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}) as running:
        yield running


def wait_until(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def seed(page: Any, elem_id: str) -> None:
    """A fixed seed: the offline model then counts on until max new tokens (seeds 1-3 checked; some random ones stop
    after a dozen numbers)."""
    box = page.locator(f"#{elem_id} textarea, #{elem_id} input").first
    box.fill("1")
    box.press("Tab")


def on_screen(page: Any, selector: str, whole: bool = True) -> bool:
    """Whether the element is inside the viewport (whole, or at least partly)."""
    box = page.locator(selector).first.bounding_box()
    height = page.viewport_size["height"]
    if box is None:
        return False
    if whole:
        return box["y"] >= 0 and box["y"] + box["height"] <= height
    return box["y"] < height and box["y"] + box["height"] > 0


# ---- one typeface, Gradio's texts in the page's language --------------------------------------------------------
#: Canvas widths of a text in each face the page uses, once with a monospace and once with a serif fallback: a face
#: that lacks letters (Gradio 6.31's SemiBold files hold only A and B) draws them in the fallback, so the two differ.
FONT_CHECK = """async (text) => {
  await document.fonts.ready;
  const out = [];
  for (const family of ["Source Sans Pro", "IBM Plex Mono"]) {
    for (const weight of [400, 500, 600, 700]) {
      const font = `${weight} 24px "${family}"`;
      await document.fonts.load(font, text);
      const ctx = document.createElement("canvas").getContext("2d");
      ctx.font = `${font}, monospace`;
      const mono = ctx.measureText(text).width;
      ctx.font = `${font}, serif`;
      out.push({family, weight, mono, serif: ctx.measureText(text).width});
    }
  }
  const send = getComputedStyle(document.querySelector("#chat-send"));
  return {faces: out, family: send.fontFamily, weight: send.fontWeight};
}"""

#: every name, tooltip and hidden label text on the page
NAMES = """() => {
  const out = [];
  for (const el of document.querySelectorAll("[aria-label], [title]")) {
    for (const attr of ["aria-label", "title"]) if (el.getAttribute(attr)) out.push(el.getAttribute(attr));
  }
  for (const el of document.querySelectorAll(".sr-only, [data-testid=block-info]")) out.push(el.textContent.trim());
  return out;
}"""


@pytest.mark.parametrize("lang", ["de", "en"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_one_typeface_and_gradio_texts_in_the_page_language(
    app: RunningApp, open_page: Any, lang: str, device: str
) -> None:
    p = open_page(app, lang, VIEWPORTS[device])
    page = p.page
    text = f"{t('compare_export_md', lang)} · {t('compare_vote_tie', lang)} · Größe Äöü ß"
    fonts = page.evaluate(FONT_CHECK, text)
    assert fonts["family"].startswith('"Source Sans Pro"') and int(fonts["weight"]) >= 600, fonts
    mixed = [f for f in fonts["faces"] if abs(f["mono"] - f["serif"]) > 0.5]
    assert mixed == [], f"faces that draw some letters in another font: {mixed}"

    page.locator("#chat-settings .label-wrap").click()  # its sliders are drawn when it opens
    time.sleep(1.0)
    names: list[str] = []
    for tab in TABS:
        open_tab(page, t(f"tab_{tab}", lang))
        time.sleep(1.0)
        names += page.evaluate(NAMES)
    other = "en" if lang == "de" else "de"
    foreign = [t(key, other) for key in GRADIO_FIXED_KEYS if t(key, other) != t(key, lang)]
    prefixes = tuple(text.split("{")[0] for text in foreign if "{" in text)
    wrong = sorted({n for n in names if n in foreign or n.startswith(prefixes) or n == "Textbox"})
    assert wrong == [], f"Gradio's texts in the other language on the {lang} page: {wrong}"
    assert any(n.startswith(t("gradio_number_input", lang).split("{")[0]) for n in names)  # the sliders are there


# ---- F5 during an answer ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_f5_during_an_answer_brings_back_the_question_and_the_settings(
    app: RunningApp, open_page: Any, lang: str, device: str
) -> None:
    p = open_page(app, lang, VIEWPORTS[device])
    page = p.page
    page.locator("#chat-settings .label-wrap").click()
    set_slider(page, "chat-max-new-tokens", 1500)
    seed(page, "chat-seed")
    page.locator("#chat-input textarea").fill(LONG)
    page.locator("#chat-input textarea").press("Enter")
    bot = page.locator("#chat-bot [data-testid=bot]")
    wait_until(lambda: bot.count() == 1 and "," in bot.last.inner_text(), "the answer to stream", 90)
    time.sleep(SAVE_EVERY_S + 0.5)  # the browser has kept the answer so far
    assert page.locator("#chat-stop").is_enabled(), f"the answer ended before the reload: {bot.last.inner_text()}"
    partial = bot.last.inner_text()

    page.reload()
    page.locator("#chat-input textarea").wait_for()
    user = page.locator("#chat-bot [data-testid=user]")
    wait_until(lambda: user.count() == 1 and user.first.inner_text().strip() == LONG, "the question to come back", 30)
    restored = bot.last.inner_text()
    assert t("err_interrupted_by_reload", lang) in restored
    assert restored.split(",")[0] == partial.split(",")[0]  # the answer as far as it had come
    page.locator("#chat-settings .label-wrap").click()
    number = page.locator("#chat-max-new-tokens input[type=number]")
    wait_until(lambda: number.count() and float(number.input_value()) == 1500, "max new tokens as it was set", 10)


# ---- a phone: the answer in view, Stop in reach -------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
def test_on_a_phone_answers_come_into_view_and_stop_stays_in_reach(app: RunningApp, open_page: Any, lang: str) -> None:
    p = open_page(app, lang, PHONE)
    page = p.page
    # the chat: the model pickers follow the chat's buttons, not 1 000 px of other things
    buttons = page.locator("#chat-buttons-row").bounding_box()
    family = page.locator("#chat-family").bounding_box()
    assert buttons and family and 0 < family["y"] - (buttons["y"] + buttons["height"]) < 120, (buttons, family)
    page.locator("#chat-settings .label-wrap").click()
    set_slider(page, "chat-max-new-tokens", 1500)  # an answer long enough to scroll while it streams
    seed(page, "chat-seed")
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#chat-input textarea").fill(LONG)
    page.locator("#chat-input textarea").press("Enter")
    stop = page.locator("#chat-stop")
    bot = page.locator("#chat-bot [data-testid=bot]")
    wait_until(lambda: stop.is_enabled() and bot.count() == 1, "the answer to start", 90)
    assert on_screen(page, "#chat-bot", whole=False) and on_screen(page, "#chat-stop")
    page.locator("#chat-model-info").scroll_into_view_if_needed()  # reading further down while it streams
    time.sleep(0.3)
    assert stop.is_enabled() and on_screen(page, "#chat-stop"), "Stop scrolled out of reach"
    stop.click()
    wait_until(lambda: stop.is_disabled(), "Stop to rest", 30)

    # compare: after Send the first pane, with the question, is on the screen, and Stop with it
    p.tab("compare")
    # a fixed seed and room to count: a random seed may end the round before Stop is pressed
    page.locator("#compare-settings .label-wrap").click()
    set_slider(page, "compare-shared-max-new-tokens", 1500)
    seed(page, "compare-shared-seed")
    page.evaluate("window.scrollTo(0, 0)")
    page.locator("#compare-input textarea").fill(LONG)
    page.locator("#compare-send").click()
    question = page.locator("#compare-pane-1 [data-testid=user]")
    wait_until(lambda: question.count() == 1, "the question in the first pane", 30)
    wait_until(lambda: on_screen(page, "#compare-pane-1 [data-testid=user]"), "the first pane on the screen", 5)
    compare_stop = page.locator("#compare-stop")
    wait_until(lambda: compare_stop.is_enabled(), "Stop", 10)
    assert on_screen(page, "#compare-stop") and on_screen(page, "#compare-pane-1", whole=False)
    compare_stop.click()
    wait_until(lambda: compare_stop.is_disabled(), "Stop to rest", 30)


# ---- compare with 4 panes: a new round in view, headers whole -----------------------------------------------------
def test_a_new_compare_round_is_in_view_in_every_pane_and_headers_wrap(app: RunningApp, open_page: Any) -> None:
    p = open_page(app, "de")
    page = p.page
    p.tab("compare")
    page.locator("#compare-pane-count label", has_text="4").click()
    wait_until(lambda: page.locator("#compare-pane-4").is_visible(), "four panes", 10)
    page.locator("#compare-settings .label-wrap").click()
    set_slider(page, "compare-shared-max-new-tokens", 600)
    seed(page, "compare-shared-seed")
    page.locator("#compare-input textarea").fill(LONG)
    page.locator("#compare-send").click()
    overflowing = """(n) => [...Array(n).keys()].every((i) => {
      const log = document.querySelector(`#compare-pane-${i + 1} [role=log]`);
      return log && log.scrollHeight > log.clientHeight + 20; })"""
    wait_until(lambda: page.evaluate(overflowing, 4), "answers longer than every pane", 180)
    page.locator("#compare-stop").click()
    wait_until(lambda: page.locator("#compare-stop").is_disabled(), "the round to end", 30)
    # the viewer reads the last round's answers from their start (Gradio then stops following the end of a pane)
    page.evaluate("() => document.querySelectorAll('[id^=compare-pane-] [role=log]').forEach((l) => l.scrollTop = 0)")
    time.sleep(0.3)
    page.locator("#compare-input textarea").fill("Nenne drei Städte.")
    page.locator("#compare-send").click()
    in_view = """(n) => [...Array(n).keys()].map((i) => {
      const pane = document.querySelector(`#compare-pane-${i + 1}`);
      const log = pane.querySelector("[role=log]");
      const rows = log.querySelectorAll("[data-testid=user]");
      const last = rows[rows.length - 1].getBoundingClientRect();
      const box = log.getBoundingClientRect();
      const label = pane.querySelector("[data-testid=block-label]");
      const head = label.getBoundingClientRect();
      return {rows: rows.length, visible: last.top >= box.top - 1 && last.bottom <= box.bottom + 1,
              whole: label.scrollWidth <= label.clientWidth + 1, above: head.bottom <= box.top + 1};
    })"""
    wait_until(lambda: all(x["rows"] == 2 for x in page.evaluate(in_view, 4)), "the new question in every pane", 15)
    time.sleep(0.5)
    panes = page.evaluate(in_view, 4)
    assert all(x["visible"] for x in panes), f"a pane stayed at the last round's text: {panes}"
    assert all(x["whole"] and x["above"] for x in panes), f"a pane's header is cut off or covers it: {panes}"
    page.locator("#compare-stop").click()
