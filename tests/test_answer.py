"""One fold of the answer stream (components/vocabulary/answer.py), and no other outside the engines."""

from __future__ import annotations

import ast
from pathlib import Path

from components.vocabulary.answer import Answer, finish_text, stats_line
from components.vocabulary.generation import Failed, Finished, GenerationStats, PromptSent, Status, TextDelta
from components.vocabulary.messages import t

COMPONENTS = Path(__file__).resolve().parents[1] / "components"
STATS = GenerationStats("stop", 5, 3, 0.1, 0.5, 6.0)


def test_text_status_and_stats() -> None:
    answer = Answer()
    answer.add_all([Status("status_loading", {"model": "m"}), TextDelta("Hal"), TextDelta("lo")])
    assert answer.text == "Hallo" and answer.status is None and not answer.done
    answer.add(Status("status_loading", {"model": "m"}))
    assert answer.status_text("en") == t("status_loading", "en", model="m")
    answer.add_all([TextDelta("!"), Finished(STATS)])
    assert answer.text == "Hallo!" and answer.stats == STATS.as_dict() and answer.done
    assert answer.finish_reason == "stop" and answer.failed is None and answer.error_text("de") is None


def test_a_failure_keeps_the_partial_answer_in_both_languages() -> None:
    answer = Answer()
    answer.add_all([TextDelta("Teil"), Failed("err_internal", {"detail": "X"}, STATS)])
    assert answer.text == "Teil" and answer.done and answer.finish_reason == "error"
    assert answer.stats == STATS.as_dict()
    assert answer.error_by_lang() == {lang: t("err_internal", lang, detail="X") for lang in ("de", "en")}
    cut = Answer()
    cut.add(TextDelta("x"))
    assert cut.finish_reason == "closed"


def test_the_prompt_a_server_built() -> None:
    answer = Answer()
    assert answer.prompt_shown("RAW", "de") is None
    answer.add(PromptSent(None, "note_server_template", {"server": "s"}))
    shown = answer.prompt_shown("RAW", "de") or ""
    assert shown.startswith("RAW") and answer.prompt_note("de") in shown
    answer.add(PromptSent("SERVER"))
    assert answer.prompt_shown("RAW", "de") == "SERVER" and answer.prompt_note("de") is None


def test_no_other_fold_of_the_event_stream() -> None:
    """Outside the engines (which make the events) and the Answer itself, no module tells text events apart."""
    folds = []
    for path in sorted(COMPONENTS.rglob("*.py")):
        rel = path.relative_to(COMPONENTS)
        if rel.parts[0] == "engines" or rel.as_posix() == "vocabulary/answer.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and "TextDelta" in ast.unparse(node.args[1])
            ):
                folds.append(f"{rel}:{node.lineno}")
    assert folds == []


def test_an_unknown_finish_reason_shows_as_the_engine_gave_it() -> None:
    stats = {"finish_reason": "xyz", "completion_tokens": 3, "ttft_s": 0.1, "tokens_per_s": 1234.5}
    line = stats_line(stats, "de")
    assert line.endswith("xyz") and "finish_xyz" not in line
    assert finish_text("stop", "en") == t("finish_stop", "en") and finish_text(None, "de") == t("finish_unknown", "de")


def test_the_stats_line_writes_numbers_as_the_page_language_does() -> None:
    stats = {"finish_reason": "stop", "completion_tokens": 3, "ttft_s": 0.1, "tokens_per_s": 1234.5}
    assert "1.234,5" in stats_line(stats, "de") and "1,234.5" in stats_line(stats, "en")
