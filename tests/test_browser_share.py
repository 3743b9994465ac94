"""Share links in a real browser against the real app (`python app.py`, TGI stand-in): a compare round and a blind
round after its vote are shared, each link opens in a fresh browser context (German and English, desktop and
phone), an expired and an unknown link say so in the visitor's language; axe-core finds nothing serious."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.features.compare import PaneResult, Round
from components.features.share import ShareStore
from components.vocabulary.messages import t
from tests.app_server import RunningApp, running_app
from tests.browser import browser_fixture, set_slider, stats_pattern
from tests.test_browser_axe import AXE, serious

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "bench" / "out"
REPLY = "Berlin ist die Hauptstadt von Deutschland."
STATS_DE = stats_pattern("de", multiline=True)
PANES = {1: "EM German", 2: "LeoLM Chat"}
VARIANTS = ("EM German LeoLM Mistral", "LeoLM hessianai 7B Chat")

browser = browser_fixture()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("share-app")
    return {"shares": root / "shares", "votes": root / "votes.jsonl", "runtime": root / "runtime"}


@pytest.fixture(scope="module")
def live_app(tgi_fleet: Any, folders: dict[str, Path]) -> Iterator[RunningApp]:
    env = {
        "TGI_URL": tgi_fleet.url,  # one stand-in per served model: each is a build of its own model only
        "PLAYGROUND_VOTES_FILE": str(folders["votes"]),
        "PLAYGROUND_SHARE_DIR": str(folders["shares"]),
        "PLAYGROUND_TEMP_DIR": str(folders["runtime"]),
        "PLAYGROUND_SHARE_DAYS": "30",
    }
    with running_app(env) as app:
        yield app


def wait_until(check: Any, what: str, timeout_s: float = 45.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def compare_page(browser: Any, url: str) -> tuple[Any, Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url + "/")
    page.get_by_role("tab", name=t("tab_compare", "de")).click()
    page.locator("#compare-input textarea").wait_for()
    for pane, family in PANES.items():
        page.locator(f"#compare-family-{pane} input").click()
        page.locator(f"#compare-family-{pane} [role=option]", has_text=family).first.click()
        time.sleep(0.5)  # the family's update of the variant and build pickers lands first
        quant = page.locator(f"#compare-quant-{pane} input")
        if "TGI" not in quant.input_value():
            quant.click()
            page.locator(f"#compare-quant-{pane} [role=option]", has_text="TGI").first.click()
        wait_until(lambda q=quant: "TGI" in q.input_value(), f"pane {pane} on the TGI stand-in")
        page.locator(f"#compare-override-{pane} input").check()
        set_slider(page, f"compare-max-new-tokens-{pane}", 24)
    return context, page


def send(page: Any, text: str) -> None:
    box = page.locator("#compare-input textarea")
    box.fill(text)
    box.press("Enter")


def answers_done(page: Any) -> bool:
    return (
        all(
            STATS_DE.search(page.locator(f"#compare-pane-{n} [data-testid=bot]").last.inner_text() or "")
            for n in (1, 2)
            if page.locator(f"#compare-pane-{n} [data-testid=bot]").count()
        )
        and page.locator("#compare-pane-2 [data-testid=bot]").count() > 0
    )


def make_link(page: Any, prefix: str = "compare") -> str:
    button = page.locator(f"#{prefix}-share")
    wait_until(button.is_enabled, "Share link open")
    button.click()
    box = page.locator(f"#{prefix}-share-link textarea, #{prefix}-share-link input").first
    wait_until(lambda: box.is_visible() and box.input_value().startswith("http"), "the link")
    return box.input_value()


def open_fresh(browser: Any, link: str, locale: str, size: tuple[int, int] = (1400, 1000)) -> tuple[Any, Any, Any]:
    """The link in a new context (no cookies, no storage, no Gradio session): what a colleague sees."""
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale=locale)
    page = context.new_page()
    response = page.goto(link)
    return context, page, response


def axe_clean(page: Any) -> None:
    page.add_script_tag(path=str(AXE))
    results = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    assert serious(results) == [], json.dumps(serious(results), indent=1, ensure_ascii=False)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_a_compare_round_shared_opens_in_a_fresh_context_in_both_languages(
    live_app: RunningApp, browser: Any, folders: dict[str, Path]
) -> None:
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: npm install --prefix .axe axe-core@4.14")
    context, page = compare_page(browser, live_app.url)
    try:
        share = page.locator("#compare-share")
        assert share.is_visible() and share.is_disabled(), "nothing to share before a round"
        send(page, "Was ist die Hauptstadt von Deutschland? <b>fett</b>")
        wait_until(lambda: answers_done(page), "both answers")
        link = make_link(page)
        assert link.startswith(live_app.url + "/share/") and len(link.rsplit("/", 1)[1]) == 22
        assert [p.name for p in folders["shares"].iterdir()] == [link.rsplit("/", 1)[1] + ".json"]
        shot(page, "share_compare_tab_de")
    finally:
        context.close()
    for locale, lang, size, name in (
        ("en-US", "en", (1400, 1000), "share_compare_en"),
        ("de-DE", "de", (1400, 1000), "share_compare_de"),
        ("de-DE", "de", (390, 844), "share_compare_de_phone"),
        ("en-US", "en", (390, 844), "share_compare_en_phone"),
    ):
        fresh, view, response = open_fresh(browser, link, locale, size)
        try:
            assert response.status == 200
            assert response.headers.get("content-security-policy", "").startswith("default-src 'self'")
            text = view.locator("body").inner_text()
            assert view.locator("h1").inner_text() == t("share_page_title", lang)
            assert "Was ist die Hauptstadt von Deutschland? <b>fett</b>" in text  # the question as typed, no element
            assert view.locator(".question b").count() == 0
            assert text.count(REPLY) >= 2 and all(v in text for v in VARIANTS)
            assert t("export_mode_open", lang) in text
            assert view.locator(".stats").count() == 2 and "TGI" in text
            assert view.evaluate("document.documentElement.lang") == lang
            shot(view, name)
            axe_clean(view)
        finally:
            fresh.close()


def test_a_blind_round_is_shared_only_after_its_vote_and_then_names_the_models(
    live_app: RunningApp, browser: Any
) -> None:
    context, page = compare_page(browser, live_app.url)
    try:
        page.locator("#compare-blind input").check()
        send(page, "Wer erklärt die Hauptstadt besser?")
        vote_b = page.locator("#compare-vote-b")
        wait_until(lambda: vote_b.is_visible() and vote_b.is_enabled(), "the vote buttons")
        assert page.locator("#compare-share").is_disabled(), "a blind round must not be shareable before its vote"
        vote_b.click()
        wait_until(lambda: "TGI" in page.locator("#compare-reveal").inner_text(), "the reveal")
        link = make_link(page)
    finally:
        context.close()
    for locale, lang in (("de-DE", "de"), ("en-US", "en")):
        fresh, view, response = open_fresh(browser, link, locale)
        try:
            assert response.status == 200
            text = view.locator("body").inner_text()
            assert t("export_mode_blind", lang) in text
            assert f"{t('export_vote', lang)}: {t('compare_blind_name', lang, letter='B')}" in text
            heads = view.locator(".pane h3").all_inner_texts()
            assert heads[0].startswith(t("compare_blind_name", lang, letter="A") + ": ")
            assert sorted(h.split(": ", 1)[1].split(" · ")[0] for h in heads) == sorted(VARIANTS)
            assert view.locator(".pane.winner h3").inner_text().startswith(t("compare_blind_name", lang, letter="B"))
            shot(view, f"share_blind_{lang}")
        finally:
            fresh.close()


def test_an_expired_and_an_unknown_link_say_so_in_the_visitors_language(
    live_app: RunningApp, browser: Any, folders: dict[str, Path]
) -> None:
    # a share made 40 days ago (the app keeps them 30)
    past = time.time() - 40 * 86400
    old = Round("Alt?", [PaneResult(0, "a/q", text="alt", done=True), PaneResult(1, "b/q", text="alt", done=True)])
    expired = ShareStore(folders["shares"], rate="off", clock=lambda: past).create([old])
    for locale, lang in (("de-DE", "de"), ("en-US", "en")):
        for share_id, status, title in ((expired, 410, "share_expired_title"), ("x" * 22, 404, "share_unknown_title")):
            fresh, view, response = open_fresh(browser, f"{live_app.url}/share/{share_id}", locale, (390, 844))
            try:
                assert response.status == status
                assert view.locator("h1").inner_text() == t(title, lang)
                message = view.locator("#share-message").inner_text()
                if status == 410:
                    until = time.strftime("%d.%m.%Y" if lang == "de" else "%Y-%m-%d", time.gmtime(past + 30 * 86400))
                    assert until in message and " 30 " in message
                    assert "Alt?" not in view.locator("body").inner_text()
                else:
                    assert message == t("share_unknown", lang)
                shot(view, f"share_{'expired' if status == 410 else 'unknown'}_{lang}")
                axe_clean(view)
            finally:
                fresh.close()
    # ?lang= wins over the browser's language
    fresh, view, _ = open_fresh(browser, f"{live_app.url}/share/{'x' * 22}?lang=en", "de-DE")
    try:
        assert view.locator("h1").inner_text() == t("share_unknown_title", "en")
    finally:
        fresh.close()


def test_a_blind_session_is_shared_after_its_vote(live_app: RunningApp, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(live_app.url + "/")
        page.get_by_role("tab", name=t("tab_compare", "de")).click()
        page.locator("#session-box").get_by_text(t("session_title", "de")).first.click()
        page.locator("#session-start").wait_for()
        assert page.locator("#session-models").inner_text().count("TGI") == 2
        set_slider(page, "session-count", 1)
        set_slider(page, "session-max-new-tokens", 24)
        page.locator("#session-start").click()
        vote_tie = page.locator("#session-vote-tie")
        wait_until(vote_tie.is_enabled, "the session's vote buttons")
        assert page.locator("#session-share").is_disabled()
        title = page.locator("#session-progress").inner_text().splitlines()[0]
        vote_tie.click()
        wait_until(lambda: "TGI" in page.locator("#session-reveal").inner_text(), "the names")
        link = make_link(page, "session")
        page.set_viewport_size({"width": 390, "height": 844})
        shot(page, "share_session_tab_de_phone")
    finally:
        context.close()
    fresh, view, response = open_fresh(browser, link, "en-US")
    try:
        assert response.status == 200
        text = view.locator("body").inner_text()
        assert f"{t('export_vote', 'en')}: {t('compare_vote_tie', 'en')}" in text
        assert title.split(": ", 1)[-1].split(" · ")[0] in text  # the prompt's title
        assert view.locator(".pane h3").count() == 2 and text.count("TGI") >= 2
        # (the register line names the system prompt's register, "system prompt: du", not the prompt itself)
        assert view.locator("p.system").count() == 0, "a prompt set's system prompt stays on the server"
    finally:
        fresh.close()
