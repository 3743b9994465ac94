"""In a real browser: the compare panes warn about an answer that is not German (in the page's language), and the
leaderboard switches between plain and style-controlled ratings with its German and register columns."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from components.features.compare import PaneResult, Round, vote_record
from components.vocabulary.messages import t
from tests.test_browser_compare import (  # noqa: F401 (fixtures)
    SHOTS,
    STATS_DE,
    app_url,
    browser,
    open_compare,
    standins,
    votes_file,
)

pytestmark = pytest.mark.slow

ENGLISH = "The capital of Germany is Berlin. It is also the largest city in the country."
GERMAN = "Die Hauptstadt von Deutschland ist Berlin. Gerne erkläre ich dir mehr über die Stadt."


def test_a_pane_answering_in_english_is_marked_in_the_pages_language(
    open_compare: Any,  # noqa: F811
    standins: dict[str, Any],  # noqa: F811
) -> None:
    standins["fast"].standin.config.reply = ENGLISH
    try:
        cp = open_compare()
        cp.pick(1, "fast")
        cp.pick(2, "slow")
        cp.override(2, 6)
        cp.send("Was ist die Hauptstadt von Deutschland?")
        cp.wait_until(lambda: STATS_DE.search(cp.answer(1)) and STATS_DE.search(cp.answer(2)), "both answers")
        first, second = cp.answer(1), cp.answer(2)
        assert STATS_DE.search(first)["note"] == "⚠ Englisch", first
        assert "⚠" not in second, second  # "Langsam, aber gründlich." is German
        SHOTS.mkdir(parents=True, exist_ok=True)
        cp.page.screenshot(path=str(SHOTS / "traits_compare_de.png"), full_page=True)
        cp.page.locator("#lang").get_by_text("English", exact=True).click()
        cp.wait_until(lambda: "⚠ English" in cp.answer(1), "the warning in English")
        assert "⚠" not in cp.answer(2)
        cp.page.screenshot(path=str(SHOTS / "traits_compare_en.png"), full_page=True)
    finally:
        standins["fast"].standin.reset()


def _votes(n: int = 240) -> list[dict[str, Any]]:
    """Votes in which the longer answer usually wins, between two of the stand-ins' builds."""
    import random

    from components.core.answer_traits import assess

    rng = random.Random(5)
    models = ("em-german-leo-mistral/slow", "leo-hessianai-7b-chat/fast")
    out = []
    for k in range(n):
        texts = [GERMAN * rng.randint(1, 6), ENGLISH * rng.randint(1, 2) if k % 3 == 0 else GERMAN]
        panes = []
        for i, (model, text) in enumerate(zip(models, texts, strict=True)):
            traits = assess(text, "Du bist ein hilfreicher Assistent.")
            panes.append(PaneResult(i, model, text=text, done=True, stats={"finish_reason": "stop"}, **traits))
        longer = 1.0 / (1.0 + math.exp(-(len(texts[0]) - len(texts[1])) / 100))
        winner = "A" if rng.random() < longer else "B"
        record = vote_record(Round(prompt="Frage", panes=panes, blind=True), winner, f"v{k}")
        out.append(record)
    return out


def test_the_leaderboard_switches_to_style_control_in_both_languages(
    open_compare: Any,  # noqa: F811
    votes_file: Path,  # noqa: F811
) -> None:
    votes_file.parent.mkdir(parents=True, exist_ok=True)
    votes_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in _votes()), encoding="utf-8")
    cp = open_compare()
    page = cp.page
    page.locator("#compare-leaderboard-box").get_by_text(t("compare_leaderboard", "de")).first.click()
    board = page.locator("#compare-leaderboard")
    cp.page.locator("#compare-leaderboard-refresh").click()
    cp.wait_until(lambda: t("lb_german", "de") in board.inner_text(), "the leaderboard's columns")
    assert t("lb_method_style_note", "de").split(":")[0] not in board.inner_text()
    page.locator("#lb-method").get_by_text(t("lb_method_style", "de"), exact=True).click()
    note = t("lb_method_style_note", "de").split(":")[0]
    cp.wait_until(lambda: note in board.inner_text(), "the style-controlled leaderboard")
    assert "100 % von 240" in board.inner_text()  # the first build answered in German every time
    board.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "traits_leaderboard_de.png"), full_page=True)
    page.locator("#lang").get_by_text("English", exact=True).click()
    cp.wait_until(lambda: t("lb_german", "en") in board.inner_text(), "the leaderboard in English")
    page.locator("#lb-method").get_by_text(t("lb_method_style", "en"), exact=True).click()
    note_en = t("lb_method_style_note", "en").split(":")[0]
    cp.wait_until(lambda: note_en in board.inner_text(), "the style note in English")
    assert t("lb_register_kept", "en") in board.inner_text()
    page.screenshot(path=str(SHOTS / "traits_leaderboard_en.png"), full_page=True)
