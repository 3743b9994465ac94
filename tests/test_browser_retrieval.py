"""The retrieval and JSON tabs in a real browser (Debian chromium via playwright), real app, offline model."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.features.retrieval import CARD_QUESTION, CARD_SOURCE_TEXT, CARD_SOURCE_URL, RAG_SYSTEM_PROMPT
from components.vocabulary.messages import MESSAGES, t
from tests.app_server import RunningApp, app_server_fixture
from tests.browser import browser_fixture, set_slider

pytestmark = pytest.mark.slow

TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "gradio.exceptions")
STATS_START = MESSAGES["stats_line"]["de"].split("{", 1)[0].strip()

#: Records every toast as it appears (toasts disappear again).
WATCH_SCRIPT = """
(() => {
  window.__toasts = [];
  new MutationObserver((records) => {
    for (const r of records) for (const node of r.addedNodes) {
      if (node.nodeType !== Node.ELEMENT_NODE) continue;
      const toasts = node.matches('[data-testid=toast-body]') ? [node]
        : node.querySelectorAll('[data-testid=toast-body]');
      for (const toast of toasts) {
        const kind = ['error', 'warning', 'info', 'success'].find((k) => toast.classList.contains(k)) || '';
        window.__toasts.push({kind, text: toast.innerText});
      }
    }
  }).observe(document, {subtree: true, childList: true});
})();
"""

live_app = app_server_fixture()


browser = browser_fixture()


class TabPage:
    """One browser page with the few moves these tests make."""

    def __init__(self, page: Any) -> None:
        self.page = page

    def value(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id} textarea").first.input_value()

    def fill(self, elem_id: str, text: str) -> None:
        self.page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)

    def click(self, elem_id: str) -> None:
        self.page.locator(f"#{elem_id}").click()

    def text(self, elem_id: str) -> str:
        return self.page.locator(f"#{elem_id}").inner_text()

    def open_tab(self, key: str) -> None:
        self.page.get_by_role("tab", name=t(key, "de")).click()

    def open_accordion(self, elem_id: str, label: str) -> None:
        self.page.locator(f"#{elem_id}").get_by_text(label, exact=True).first.click()

    def set_number(self, elem_id: str, value: float) -> None:
        set_slider(self.page, elem_id, value)

    def toasts(self) -> list[dict[str, str]]:
        return self.page.evaluate("window.__toasts")

    def toast_text(self) -> str:
        """Every toast on screen now (Gradio groups toasts of one kind, so a later one is not a new node)."""
        return self.page.evaluate(
            "[...document.querySelectorAll('[data-testid=toast-body]')].map(e => e.innerText).join('\\n')"
        )

    def wait_until(self, check: Callable[[], Any], what: str, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)


@pytest.fixture
def open_page(live_app: RunningApp, browser: Any) -> Iterator[Callable[[], TabPage]]:
    contexts: list[Any] = []
    pages: list[TabPage] = []

    def _open() -> TabPage:
        context = browser.new_context(viewport={"width": 1400, "height": 1200}, locale="de-DE")
        context.add_init_script(WATCH_SCRIPT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(live_app.url + "/")
        page.locator("#chat-input textarea").wait_for()
        tab = TabPage(page)
        pages.append(tab)
        return tab

    yield _open
    try:
        for tab in pages:
            body = tab.page.locator("body").inner_text()
            for marker in TRACEBACK_MARKERS:
                assert marker not in body, f"{marker!r} is in the page"
            assert [x for x in tab.toasts() if x["kind"] == "error"] == []
        assert live_app.process.poll() is None, "the app died"
    finally:
        for context in contexts:
            context.close()


def chatml(system: str, user: str) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def test_source_question_streamed_answer_and_exact_prompt(open_page: Callable[[], TabPage]) -> None:
    tab = open_page()
    tab.open_tab("tab_retrieval")
    tab.page.locator("#retrieval-source-text textarea").wait_for()
    tab.open_accordion("retrieval-settings", t("settings", "de"))
    tab.set_number("retrieval-max-new-tokens", 48)
    tab.fill("retrieval-source-text", CARD_SOURCE_TEXT)
    tab.fill("retrieval-url", CARD_SOURCE_URL)
    tab.click("retrieval-add")
    tab.wait_until(lambda: CARD_SOURCE_URL in tab.text("retrieval-sources"), "the source in the list")
    assert CARD_SOURCE_TEXT in tab.text("retrieval-sources")
    assert tab.value("retrieval-source-text") == ""  # the form is emptied for the next source
    assert any(x["kind"] == "info" for x in tab.toasts())

    tab.fill("retrieval-question", CARD_QUESTION)
    tab.page.locator("#retrieval-question textarea").press("Enter")
    samples: list[str] = []
    deadline = time.monotonic() + 180
    while STATS_START not in tab.text("retrieval-status"):
        assert time.monotonic() < deadline, f"no stats: {tab.text('retrieval-status')!r}"
        answer = tab.value("retrieval-answer")
        if answer and (not samples or samples[-1] != answer):
            samples.append(answer)
        time.sleep(0.03)
    final = tab.value("retrieval-answer")
    assert final.strip()
    assert len(samples) >= 2 and all(final.startswith(s) for s in samples), samples  # it streamed
    status = tab.text("retrieval-status")
    assert t("tokens_tokenizer", "de") in status and "2.048" in status  # with the thousands separator

    tab.open_accordion("retrieval-raw-prompt-box", t("raw_prompt", "de"))
    user = (
        f"BEGININPUT\nBEGINCONTEXT\nUrl: {CARD_SOURCE_URL}\nENDCONTEXT \n{CARD_SOURCE_TEXT}\nENDINPUT\n"
        f"BEGININSTRUCTION {CARD_QUESTION} ENDINSTRUCTION"
    )
    assert tab.value("retrieval-raw-prompt") == chatml(RAG_SYSTEM_PROMPT, user)


def test_upload_example_remove_and_refusals(open_page: Callable[[], TabPage], tmp_path: Path) -> None:
    tab = open_page()
    tab.open_tab("tab_retrieval")
    tab.page.locator("#retrieval-source-text textarea").wait_for()
    good = tmp_path / "wetter.md"
    good.write_text("# Wetter\nIn Köln regnet es heute.", encoding="utf-8")
    tab.fill("retrieval-author", "DWD")
    # an uploaded file is a source at once, with the metadata typed before (no "Quelle hinzufügen" needed)
    tab.page.locator("#retrieval-files input[type=file]").set_input_files(str(good))
    tab.wait_until(lambda: "Datei: wetter.md" in tab.text("retrieval-sources"), "the uploaded source")
    pick = tab.page.locator("#retrieval-pick input")
    tab.wait_until(lambda: pick.input_value().startswith("1"), "the picker on the new source")
    assert "Autor: DWD" in tab.text("retrieval-sources")

    bad = tmp_path / "latin.txt"
    bad.write_bytes("Grüße aus Düsseldorf".encode("latin-1"))
    tab.page.locator("#retrieval-files input[type=file]").set_input_files(str(bad))
    refusal = t("err_upload_encoding", "de", name="latin.txt")
    tab.wait_until(lambda: refusal in tab.toast_text(), "the encoding refusal")

    # the card example is added as a source (not only put into the form); a huge source is refused before
    # generation, with token counts
    clear = "#retrieval-files button[aria-label='Löschen'], #retrieval-files button[aria-label='Clear']"
    if tab.page.locator(clear).count():
        tab.page.locator(clear).first.dispatch_event("click")
    tab.click("retrieval-example")
    tab.wait_until(lambda: "jph.me" in tab.text("retrieval-sources"), "the example as a source")
    assert tab.value("retrieval-question") == CARD_QUESTION
    tab.fill("retrieval-source-text", " ".join([CARD_SOURCE_TEXT] * 400))
    tab.click("retrieval-add")
    tab.wait_until(lambda: tab.text("retrieval-sources").count("\n") >= 2, "three sources")
    tab.click("retrieval-ask")
    tab.wait_until(lambda: "Tokens zu viel" in tab.text("retrieval-status"), "the too-long refusal", 90)
    assert tab.value("retrieval-answer") == ""
    tab.wait_until(lambda: "Tokens zu viel" in tab.toast_text(), "the warning toast", 10)

    # removing the big one makes the list short again
    tab.page.locator("#retrieval-pick input").click()
    tab.page.locator("#retrieval-pick [role=option]").nth(2).click()
    tab.click("retrieval-remove")
    tab.wait_until(lambda: "3." not in tab.text("retrieval-sources"), "the removal")
    assert "wetter.md" in tab.text("retrieval-sources")
    # removing all sources also clears the answer's status line about them
    tab.click("retrieval-clear")
    tab.wait_until(lambda: tab.text("retrieval-status").strip() == "", "the status to go with the sources")


def test_json_tab_card_example_validates(open_page: Callable[[], TabPage]) -> None:
    tab = open_page()
    tab.open_tab("tab_structured")
    tab.page.locator("#structured-text textarea").wait_for()
    tab.fill("structured-schema", '{"type": "objekt"}')
    tab.wait_until(lambda: "Draft 2020-12" in tab.text("structured-schema-status"), "the schema refusal")
    tab.click("structured-example")
    tab.wait_until(lambda: t("structured_schema_ok", "de") in tab.text("structured-schema-status"), "schema ok")
    tab.open_accordion("structured-settings", t("settings", "de"))
    tab.set_number("structured-max-new-tokens", 96)
    tab.set_number("structured-temperature", 0)
    tab.click("structured-run")
    tab.wait_until(lambda: STATS_START in tab.text("structured-verdict"), "the verdict", 240)
    verdict = tab.text("structured-verdict")
    assert t("json_valid", "de") in verdict, verdict
    raw = tab.value("structured-raw")
    assert set(json.loads(raw)) == {"jahr", "name", "ort"}
    assert '"jahr"' in tab.text("structured-json")
