"""The first five minutes of a demo, in a real browser (Debian chromium): German and English, desktop and phone.

The app runs as `python app.py` with the Hub at an address where nothing answers (as on a machine without a
network, HF_HUB_OFFLINE unset), or at a loopback stand-in of the Hub that has no files.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.vocabulary.catalog import load_catalog
from components.vocabulary.messages import t
from tests.app_server import RunningApp, free_port, running_app
from tests.browser import browser_fixture, set_slider
from tests.test_availability import fake_hub
from tests.test_browser_chat import TRACEBACK_MARKERS, WATCH_SCRIPT

pytestmark = pytest.mark.slow

CATALOG = load_catalog()
EM = CATALOG.get("em-german-leo-mistral/gguf-q4_k_m")
EM_7B = CATALOG.get("em-german-7b/gguf-q4_k_m")
DESKTOP = {"width": 1400, "height": 1000}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
#: The browser's own language is the other one: the page's language must win over it.
BROWSER_LOCALE = {"de": "en-US", "en": "de-DE"}


@pytest.fixture(scope="module")
def offline_app() -> Iterator[RunningApp]:
    """The app on a machine whose Hub cannot be reached (a loopback port nobody listens on)."""
    with running_app({"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}) as app:
        yield app


browser = browser_fixture()


class Page:
    def __init__(self, page: Any) -> None:
        self.page = page

    def choose(self, elem_id: str, option: str) -> None:
        self.page.locator(f"#{elem_id} input").click()
        self.page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()

    def wait_until(self, check: Any, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def toasts(self) -> list[dict[str, str]]:
        return self.page.evaluate("window.__toasts")

    def tab(self, name: str) -> None:
        lang = self.page.evaluate("window.playgroundLanguage ? window.playgroundLanguage() : 'de'")
        self.page.get_by_role("tab", name=t(f"tab_{name}", lang), exact=True).click()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []
    pages: list[Page] = []

    def _open(app: RunningApp, lang: str, viewport: dict[str, int] = DESKTOP) -> Page:
        context = browser.new_context(viewport=viewport, locale=BROWSER_LOCALE[lang])
        context.add_init_script(WATCH_SCRIPT)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{app.url}/?lang={lang}")
        page.locator("#chat-input textarea").wait_for()
        wrapped = Page(page)
        wrapped.wait_until(lambda: page.locator("#chat-send").inner_text().strip() == t("send", lang), "the labels")
        pages.append(wrapped)
        return wrapped

    yield _open
    try:
        for p in pages:
            body = p.page.locator("body").inner_text()
            for marker in TRACEBACK_MARKERS:
                assert marker not in body, f"{marker!r} is in the page"
            assert [x for x in p.toasts() if x["kind"] == "error"] == [], "error toasts"
    finally:
        for context in contexts:
            context.close()


# ---- 1: three states, and a complete message within 5 s ---------------------------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
@pytest.mark.parametrize("device", ["desktop", "phone"])
def test_em_german_gguf_offline_says_download_and_refuses_in_time(
    offline_app: RunningApp, open_page: Any, lang: str, device: str
) -> None:
    p = open_page(offline_app, lang, VIEWPORTS[device])
    page = p.page
    quant = page.locator("#chat-quant input")
    ready = t("quant_ready", lang, quant=CATALOG.default.quant.display)
    p.wait_until(lambda: quant.input_value() == ready, f"{ready!r}, got {quant.input_value()!r}")
    p.choose("chat-family", EM.family.name)
    started = time.monotonic()
    blocked = t("quant_download_blocked", lang, quant=EM.quant.display, size=EM.quant.size_gb)
    p.wait_until(lambda: quant.input_value() == blocked, f"{blocked!r}, got {quant.input_value()!r}", 5)
    assert time.monotonic() - started < 3, "the Hub's reachability is found out within a second"
    info = page.locator("#chat-model-info").inner_text()
    assert "⬇" in info and ("4,4 GB" if lang == "de" else "4.4 GB") in info
    assert page.locator("#chat-send").is_enabled()

    box = page.locator("#chat-input textarea")
    box.fill("Hallo")
    sent = time.monotonic()
    page.locator("#chat-send").click()
    expected = t(
        "err_download_unreachable", lang, model=EM.label, size=EM.quant.size_gb, offline=CATALOG.default.family.name
    )
    toast = page.locator("[data-testid=toast-body]", has_text=expected[:60])
    toast.first.wait_for(timeout=5_000)
    assert time.monotonic() - sent < 5
    assert toast.first.locator("[data-testid=toast-text]").inner_text().strip() == expected
    assert toast.first.locator(".toast-title").inner_text().strip() == t("toast_warning", lang)
    assert "connection" not in expected.lower() or lang == "en"
    assert page.locator("#chat-bot [data-testid=user]").count() == 0, "nothing was sent"


def test_models_endpoint_three_states(offline_app: RunningApp) -> None:
    from gradio_client import Client

    client = Client(offline_app.url + "/", verbose=False)
    rows = {r["id"]: r for r in client.predict(lang="en", api_name="/models")}
    assert rows[CATALOG.default.id]["state"] == "ready" and rows[CATALOG.default.id]["available"] is True
    em = rows[EM.id]
    assert em["state"] == "download" and em["available"] is False and em["hub"] == "unreachable"
    assert em["download_gb"] == pytest.approx(EM.quant.size_gb)
    assert rows["em-german-leo-mistral/gptq"]["state"] == "unavailable"


# ---- 1: download progress from the first second (chat and compare) --------------------------------------------
@pytest.fixture(scope="module")
def hub_app() -> Iterator[RunningApp]:
    """The app with a reachable (loopback) Hub that has none of the files and answers after 3 s."""
    with fake_hub(delay_s=3.0) as url, running_app({"HF_ENDPOINT": url}) as app:
        yield app


@pytest.mark.parametrize("lang", ["de", "en"])
def test_download_status_shows_at_once_in_chat_and_compare(hub_app: RunningApp, open_page: Any, lang: str) -> None:
    p = open_page(hub_app, lang)
    page = p.page
    p.choose("chat-family", EM.family.name)
    ready = t("quant_download", lang, quant=EM.quant.display, size=EM.quant.size_gb)
    p.wait_until(lambda: page.locator("#chat-quant input").input_value() == ready, "the download state")
    page.locator("#chat-input textarea").fill("Hallo")
    sent = time.monotonic()
    page.locator("#chat-input textarea").press("Enter")
    starting = t("status_download_starting", lang, model=EM.label, size=EM.quant.size_gb)
    bot = page.locator("#chat-bot [data-testid=bot]")
    p.wait_until(lambda: bot.count() and starting in bot.last.inner_text(), "the download status", 10)
    assert time.monotonic() - sent < 1.5, "the download shows from the first second"
    missing = t("err_download_no_file", lang, file=EM.quant.file, repo=EM.quant.repo)
    p.wait_until(lambda: missing in bot.last.inner_text(), f"the missing-file message: {bot.last.inner_text()!r}", 30)
    assert "Entry" not in bot.last.inner_text()

    p.tab("compare")
    for n, ref in ((1, EM), (2, EM_7B)):
        p.choose(f"compare-family-{n}", ref.family.name)
        if ref.variant.id != EM.variant.id:
            p.choose(f"compare-variant-{n}", ref.variant.name)
        quant = page.locator(f"#compare-quant-{n} input")
        p.wait_until(lambda q=quant, r=ref: q.input_value().startswith(r.quant.display), "the pane's build")
    page.locator("#compare-input textarea").fill("Hallo")
    sent = time.monotonic()
    page.locator("#compare-send").click()
    for n, ref in ((1, EM), (2, EM_7B)):
        pane = page.locator(f"#compare-pane-{n} [data-testid=bot]")
        text = t("status_download_starting", lang, model=ref.label, size=ref.quant.size_gb)
        p.wait_until(lambda pane=pane, text=text: pane.count() and text in pane.last.inner_text(), f"pane {n}", 10)
    assert time.monotonic() - sent < 2


# ---- 2: the note above the offline model's chat -----------------------------------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
def test_offline_note_says_what_it_is_and_how_to_reach_german_models(
    offline_app: RunningApp, open_page: Any, lang: str
) -> None:
    p = open_page(offline_app, lang)
    note = p.page.locator("#chat-offline-note")
    assert note.is_visible()
    text = note.inner_text().strip()
    assert CATALOG.default.variant.name in text
    assert "GPU" in text and "TGI" in text and "GGUF" in text, text
    box = note.bounding_box()
    chat = p.page.locator("#chat-bot").bounding_box()
    assert box and chat and box["y"] + box["height"] <= chat["y"] + 1, "the note sits above the chat"
    assert box["height"] < 60, "one line on a desktop"
    p.choose("chat-family", EM.family.name)
    p.wait_until(lambda: not note.is_visible(), "the note to go away for a German model")


# ---- 4: the page's language everywhere, Gradio's own texts included ------------------------------------------------
UPLOAD = {"de": ("Datei hier ablegen", "Hochladen"), "en": ("Drop File Here", "Click to Upload")}


@pytest.mark.parametrize("lang", ["de", "en"])
def test_gradio_texts_and_html_lang_follow_the_page_not_the_browser(
    offline_app: RunningApp, open_page: Any, lang: str
) -> None:
    p = open_page(offline_app, lang)
    page = p.page
    other = "en" if lang == "de" else "de"
    p.wait_until(lambda: page.evaluate("document.documentElement.lang") == lang, "<html lang>")
    p.tab("retrieval")
    files = page.locator("#retrieval-files")
    p.wait_until(lambda: all(s in files.inner_text() for s in UPLOAD[lang]), f"upload texts: {files.inner_text()!r}")
    assert page.locator("#retrieval-question textarea").get_attribute("placeholder") == t(
        "retrieval_question_placeholder", lang
    )
    assert page.locator("#retrieval-extra textarea").get_attribute("placeholder") == t("source_extra_placeholder", lang)

    page.locator("#lang").get_by_text("English" if other == "en" else "Deutsch", exact=True).click()
    p.wait_until(lambda: page.evaluate("document.documentElement.lang") == other, "<html lang> after the switch")
    p.wait_until(lambda: all(s in files.inner_text() for s in UPLOAD[other]), f"upload texts: {files.inner_text()!r}")
    p.wait_until(
        lambda: (
            page.locator("#retrieval-question textarea").get_attribute("placeholder")
            == t("retrieval_question_placeholder", other)
        ),
        "the question's placeholder",
    )
    # the model texts of the page: the recommendation and where the settings come from
    p.tab("chat")
    p.choose("chat-family", EM.family.name)
    variant = page.locator("#chat-variant input")
    p.wait_until(lambda: variant.input_value() == t("variant_recommended", other, name=EM.variant.name), "variant")
    info = page.locator("#chat-model-info").inner_text()
    assert getattr(EM.family.settings_source, other).replace("`", "") in info
    # a reload keeps the language
    page.reload()
    page.locator("#chat-input textarea").wait_for()
    p.wait_until(
        lambda: page.locator("#chat-send").inner_text().strip() == t("send", other), "the language after reload"
    )
    assert re.search(rf"[?&]lang={other}\b", page.url)


def test_json_tab_says_schema_errors_in_the_page_language(offline_app: RunningApp, open_page: Any) -> None:
    for lang, needle in (("de", "ist kein Typ von JSON Schema"), ("en", "is not a JSON Schema type")):
        p = open_page(offline_app, lang)
        page = p.page
        p.tab("structured")
        page.locator("#structured-schema textarea").fill('{"type": "object", "properties": {"a": {"type": "integr"}}}')
        note = page.locator("#structured-schema-status")
        p.wait_until(lambda note=note, needle=needle: needle in note.inner_text(), f"{needle!r}: {note.inner_text()!r}")
        assert "is not valid under any of the given schemas" not in note.inner_text()
        page.locator("#structured-schema textarea").fill('{"type": "object" "properties": {}}')
        comma = "„,“ erwartet" if lang == "de" else "',' expected"
        p.wait_until(lambda note=note, comma=comma: comma in note.inner_text(), f"{comma!r}: {note.inner_text()!r}")
        assert "Expecting" not in note.inner_text()


# ---- 7: one answer at a time, Stop and Send only when they do something ---------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
def test_enter_while_streaming_says_so_and_buttons_show_what_they_do(
    offline_app: RunningApp, open_page: Any, lang: str
) -> None:
    p = open_page(offline_app, lang)
    page = p.page
    stop, send = page.locator("button#chat-stop"), page.locator("#chat-send")
    assert stop.is_disabled(), "Stop looks active while nothing runs"
    welcome = t("chat_welcome", lang).split("\n")[1][:40]
    p.wait_until(lambda: welcome in page.locator("#chat-bot").inner_text(), "the welcome text")
    page.locator("#chat-settings").get_by_text(t("settings", lang), exact=True).first.click()
    set_slider(page, "chat-max-new-tokens", 1500)
    # greedy: the offline model answers this prompt with all 1500 tokens (measured: finish_reason "length",
    # 15-32 s on a 2-core machine); "count to 500" ended by itself after 579 tokens, sometimes before the
    # test pressed Send, and Send then rightly sent
    set_slider(page, "chat-temperature", 0)
    slider_max = page.locator("#chat-max-new-tokens input[type=range]").get_attribute("max")
    assert int(slider_max) < CATALOG.default.variant.context_length, "max new tokens leaves room for the prompt"
    box = page.locator("#chat-input textarea")
    box.fill("Noch eine Frage")
    box.press("Enter")
    bot = page.locator("#chat-bot [data-testid=bot]")
    # the model's own words ('Die Frage "Ein komplexe …'), not a status line
    p.wait_until(lambda: bot.count() == 1 and "Frage" in bot.last.inner_text(), "the answer to stream", 90)
    p.wait_until(lambda: stop.is_enabled(), "Stop to become active")
    box.fill("Write the numbers from 1 to 500, separated by commas.")
    box.press("Enter")
    busy = page.locator("[data-testid=toast-body]", has_text=t("err_busy", lang))
    busy.first.wait_for(timeout=10_000)
    send.click()
    time.sleep(1.0)
    # the check below only means something while the answer still runs
    assert stop.is_enabled(), "the answer ended before Send was tried (it should run for 1500 tokens)"
    assert t("err_stopped_partial", lang) not in bot.last.inner_text(), "Send stopped the answer"
    assert page.locator("#chat-bot [data-testid=user]").count() == 1, "Send while streaming neither stops nor sends"
    stop.click()
    p.wait_until(lambda: stop.is_disabled(), "Stop to rest again", 30)
    # a build that cannot run here gets no Send button
    p.choose("chat-family", "IGEL")
    p.wait_until(lambda: send.is_disabled(), "Send disabled for a build marked ✗")


# ---- 3 (defaults): compare starts on different runnable models or says how to add one ----------------------------
def test_compare_defaults_and_blind_mode_refuses_a_model_twice(offline_app: RunningApp, open_page: Any) -> None:
    p = open_page(offline_app, "de")
    page = p.page
    p.tab("compare")
    assert CATALOG.default.variant.name in page.locator("#compare-one-model").inner_text()
    page.locator("#compare-blind input").check()
    page.locator("#compare-input textarea").fill("Hallo")
    page.locator("#compare-send").click()
    page.locator("[data-testid=toast-body]", has_text=t("err_blind_same_model", "de")).first.wait_for(timeout=10_000)
    assert page.locator("#compare-pane-1 [data-testid=user]").count() == 0


# ---- 11: a phone -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
def test_phone_has_the_message_boxes_on_the_first_screen(offline_app: RunningApp, open_page: Any, lang: str) -> None:
    p = open_page(offline_app, lang, PHONE)
    page = p.page
    box = page.locator("#chat-input textarea").bounding_box()
    assert box and box["y"] + box["height"] <= PHONE["height"], f"chat message box at {box}"
    assert page.locator("#chat-send").bounding_box()["y"] < PHONE["height"] + 60
    p.tab("compare") if page.get_by_role("tab", name=t("tab_compare", lang), exact=True).is_visible() else None
    question = page.locator("#compare-input textarea").bounding_box()
    assert question and question["y"] + question["height"] <= PHONE["height"], f"compare question at {question}"
    # the pane-count row is as tall as its content (a rule for the answer panes, `[id^=compare-pane-]`, made it 50vh)
    count = page.locator("#compare-pane-count").bounding_box()
    assert count and count["height"] < 250, f"pane count box at {count}"


# ---- 13: the Server tab shows the local engines -------------------------------------------------------------------
def test_server_tab_shows_what_the_local_engine_has_loaded(offline_app: RunningApp, open_page: Any) -> None:
    p = open_page(offline_app, "en")
    page = p.page
    page.locator("#chat-input textarea").fill("Hi!")
    page.locator("#chat-input textarea").press("Enter")
    bot = page.locator("#chat-bot [data-testid=bot]")
    p.wait_until(lambda: bot.count() and "tokens/s" in bot.last.inner_text(), "an answer", 90)
    p.tab("status")
    local = page.locator("#status-local")
    p.wait_until(lambda: CATALOG.default.label in local.inner_text(), f"the loaded model: {local.inner_text()!r}")
    assert "parallel slots" in local.inner_text() and "GB of memory" in local.inner_text()
