"""What the page shows a visitor: no server address in the public profile, and no live HTML element (a form, an
input, a button, an iframe) from what a visitor or a model wrote, while that text stays readable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from components.features.structured import check_answer
from components.ui import common
from components.ui.chat import render
from components.ui.common import WORD_JOINER, apply_events, inert_html
from components.ui.status import endpoints_markdown
from components.ui.structured import verdict_markdown
from components.vocabulary.answer import Answer
from components.vocabulary.generation import Failed
from components.vocabulary.messages import t
from tests.app_server import RunningApp, running_app
from tests.browser import browser_fixture

FORM = "<form><input name=x></form>"
#: an answer a prompt injection could write: a form with a button, an iframe, and the same form as code
REPLY = (
    'Bitte melden Sie sich an: <form action="/steal"><input name="token"><button>Jetzt anmelden</button></form> '
    '<iframe src="/"></iframe>\n\n```html\n<form action="/x"><input name="y"></form>\n```\n\nEnde.'
)
CODE = '<form action="/x"><input name="y"></form>'
LIVE_ELEMENTS = "form, input, textarea, select, option, iframe, object, embed, frame, button"


def shown(text: str) -> str:
    return text.replace(WORD_JOINER, "")


def no_markup(text: str) -> bool:
    """True when no "<" in `text` is followed by a letter, "/" or "!": nothing a browser would make an element."""
    return all(
        not (text[i + 1 : i + 2].isalpha() or text[i + 1 : i + 2] in "/!?")
        for i in range(len(text) - 1)
        if text[i] == "<"
    )


# ---- inert_html ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        FORM,
        "<iframe src=/></iframe><object data=x></object><embed src=x><select><option>1</select><textarea>t</textarea>",
        "<!-- versteckt --> <!DOCTYPE html> <?xml ?> </form>",
        "Zeile\r<form>\r\n<button>x</button>",
        # a fence that is none for Gradio's renderer: LaTeX is taken out first, a definition's title runs on
        "$$\n```\n$$\n<form>\n```",
        '[a]: /u "x\n```\n"\n```\n<form>\n```\n<form>',
        # a fence inside a list item ends with the item; one that marked closes ("```~") is closed
        "- item\n  ```\n  code\n<form>\n```",
        "```\ncode\n```~\n<form>\n```",
        "   ```\n<form>\n```",
    ],
)
def test_markup_outside_certain_code_blocks_becomes_text(text: str) -> None:
    out = inert_html(text)
    assert no_markup(out), out
    assert shown(out) == text.replace("\r\n", "\n").replace("\r", "\n")


def test_fenced_code_and_ordinary_text_stay_as_they_are() -> None:
    code = "```html\n<form action=/x></form>\n```"
    assert inert_html(f"Hier:\n{code}\n<b>") == f"Hier:\n{code}\n<{WORD_JOINER}b>"
    assert inert_html("~~~\n<x>\n~~~~\n") == "~~~\n<x>\n~~~~\n"
    for text in ("a < b, x<3 und <= 4", "Siehe <https://example.com/a?b=1>", "kein HTML", ""):
        assert inert_html(text) == text


def test_chat_bubbles_and_status_lines_carry_no_markup() -> None:
    conversation = [
        {
            "user": FORM,
            "assistant": REPLY,
            "error": "<form>x</form>",
            "stats": {"ttft_s": 0.1, "tokens_per_s": 10.0, "completion_tokens": 3, "finish_reason": "stop"},
        },
        {"user": "<button>b</button>", "assistant": "", "status": "<input>"},
    ]
    messages = render(conversation, "de")
    user, answer, user2, status = (m["content"] for m in messages)
    assert no_markup(user) and shown(user) == FORM
    outside_code = answer.replace(f"```html\n{CODE}\n```", "")
    assert f"```html\n{CODE}\n```" in answer and no_markup(outside_code.split("<sub>")[0])
    assert "<sub>" in answer, "the app's own stats line keeps its markup"
    assert no_markup(user2) and no_markup(status)

    notes: dict[str, str] = {}
    apply_events(Answer(), [Failed("err_unknown_model", {"model": FORM, "example": "x"})], notes, "", "de")
    assert no_markup(notes["error"]) and FORM in shown(notes["error"])


def test_the_json_tabs_verdict_quotes_property_names_and_answers_as_text() -> None:
    # a line break in a property name ends the code span: "<form" at a line's start begins an HTML block
    key = "a\n" + FORM
    schema = {"type": "object", "properties": {key: {"type": "integer"}}, "required": [key]}
    verdict = verdict_markdown(check_answer(json.dumps({key: "<iframe>"}), schema, "de"), "de")
    assert no_markup(verdict) and FORM in shown(verdict) and "<iframe>" in shown(verdict), verdict


def test_toasts_show_quoted_input_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    # Gradio renders a toast's message as sanitized HTML (forms kept), and refusals quote what was sent
    shown_toasts: list[str] = []
    monkeypatch.setattr(common.gr, "Warning", lambda message, **_: shown_toasts.append(message))
    monkeypatch.setattr(common.gr, "Info", lambda message, **_: shown_toasts.append(message))
    common.warn(t("err_unknown_model", "de", model=FORM, example="x"), "de")
    common.inform(FORM, "en")
    assert len(shown_toasts) == 2 and all(no_markup(m) and FORM in shown(m) for m in shown_toasts), shown_toasts


# ---- the Server tab ----------------------------------------------------------------------------------------
async def test_the_public_server_tab_names_servers_without_their_address(
    tgi_playground: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, playground = tgi_playground
    address = fleet.servers[0].url.split("://", 1)[1]
    monkeypatch.setenv("PLAYGROUND_PUBLIC", "0")
    assert address in await endpoints_markdown(playground, "de")  # an operator's own playground shows it
    monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
    for lang in ("de", "en"):
        text = await endpoints_markdown(playground, lang)
        assert "**TGI**" in text and t("endpoint_ok", lang) in text, text
        assert address not in text and "http" not in text and "127.0.0.1" not in text, text


# ---- in the browser, against the public app ------------------------------------------------------------------
CANARY = "hf_CanaryPageLeak0123456789abcdef"


@pytest.fixture(scope="module")
def standin() -> Iterator[Any]:
    from tests.tgi_standin import StandinConfig, StandinServer

    server = StandinServer(StandinConfig(reply=REPLY)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def public_app(standin: Any) -> Iterator[RunningApp]:
    env = {"PLAYGROUND_PUBLIC": "1", "TGI_URL": standin.url, "TGI_TOKEN": "tgi-canary-token-4711", "HF_TOKEN": CANARY}
    with running_app(env) as app:
        yield app


browser = browser_fixture()


@pytest.mark.slow
def test_the_public_page_config_and_models_carry_no_server_address(public_app: RunningApp, standin: Any) -> None:
    from gradio_client import Client

    address = standin.url.split("://", 1)[1]
    config = httpx.get(public_app.url + "/config", timeout=30).text
    client = Client(public_app.url, verbose=False, ssl_verify=False)
    try:
        models = json.dumps(client.predict(lang="en", api_name="/models"))
    finally:
        client.close()
    for text in (config, models):
        assert address not in text and CANARY not in text and "tgi-canary-token-4711" not in text


@pytest.mark.slow
def test_the_page_shows_no_address_and_no_live_form(public_app: RunningApp, standin: Any, browser: Any) -> None:
    address = standin.url.split("://", 1)[1]
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(public_app.url + "/")
        page.locator("#chat-input textarea").wait_for()

        # the Server tab: the server's name and state, not where it is
        page.get_by_role("tab", name=t("tab_status", "de"), exact=True).click()
        status = page.locator("#status-endpoints")
        status.get_by_text(t("endpoint_ok", "de"), exact=False).wait_for()
        assert "TGI" in status.inner_text()
        assert address not in status.inner_html() and "http" not in status.inner_text()

        # the chat: a visitor's form and a model's form, button and iframe are text; code stays code
        page.get_by_role("tab", name=t("tab_chat", "de"), exact=True).click()
        page.locator("#chat-family input").click()
        page.locator("#chat-family [role=option]", has_text="EM German").first.click()
        page.locator("#chat-quant input").click()
        page.locator("#chat-quant [role=option]", has_text="TGI").first.click()
        page.wait_for_function("document.querySelector('#chat-quant input').value.startsWith('TGI')")
        box = page.locator("#chat-input textarea")
        box.fill(FORM)
        box.press("Enter")
        bot = page.locator("#chat-bot [data-testid=bot]")
        page.wait_for_function(
            "[...document.querySelectorAll('#chat-bot [data-testid=bot]')].some(b => b.innerText.includes('Ende.'))"
        )
        user = page.locator("#chat-bot [data-testid=user]").last
        assert shown(user.inner_text()).strip() == FORM
        answer = shown(bot.last.inner_text())
        assert '<button>Jetzt anmelden</button></form> <iframe src="/"></iframe>' in answer, answer
        live = page.evaluate(
            f"[...document.querySelectorAll('#chat-bot [data-testid=user], #chat-bot [data-testid=bot]')]"
            f".flatMap(m => [...m.querySelectorAll('{LIVE_ELEMENTS}')])"
            ".filter(e => e.tagName !== 'BUTTON' || e.innerText.includes('anmelden')).map(e => e.outerHTML)"
        )
        assert live == [], live
        code = page.locator("#chat-bot [data-testid=bot] pre code").last.text_content() or ""
        assert code.strip() == CODE, repr(code)  # untouched: copied code works
    finally:
        context.close()
