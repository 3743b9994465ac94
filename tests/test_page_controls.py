"""Details of the page's controls that its configuration shows without a browser: pickers that never answer in
Gradio's English, max-new-tokens sliders that stop short of the context, idle buttons that look idle."""

from __future__ import annotations

from typing import Any

import pytest

from components.core.service import EngineRegistry, Playground
from components.ui.common import PROMPT_ROOM
from components.vocabulary.catalog import load_catalog

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def demo() -> Any:
    import app

    return app.build_app(Playground(CATALOG, EngineRegistry(CATALOG)))


def blocks_by_id(demo: Any) -> dict[str, Any]:
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


PICKER_IDS = [
    f"{prefix}-{key}{suffix}"
    for prefix, suffixes in (("chat", [""]), ("retrieval", [""]), ("structured", [""]), ("compare", ["-1", "-4"]))
    for suffix in suffixes
    for key in ("family", "variant", "quant")
]


@pytest.mark.parametrize("elem_id", PICKER_IDS)
def test_a_stale_picker_value_is_no_english_error(demo: Any, elem_id: str) -> None:
    """Family, then Enter at once: the build dropdown's old value reaches the server before the new choices reach
    the page, and Gradio's own check answered with a raw English toast "Value: … is not in the list of choices".
    The pickers leave the check to the playground, which answers in the page's language (err_unknown_model)."""
    from gradio.exceptions import Error

    block = blocks_by_id(demo)[elem_id]
    try:
        value = block.preprocess("igel-7b")
    except Error as exc:  # pragma: no cover - the failure this test is about
        pytest.fail(f"{elem_id}: Gradio refused a stale value in English: {exc}")
    assert value == "igel-7b"


def test_a_stale_model_is_refused_in_the_pages_language() -> None:
    from components.vocabulary.generation import InputError
    from components.vocabulary.messages import t

    playground = Playground(CATALOG, EngineRegistry(CATALOG))
    with pytest.raises(InputError) as refused:
        playground.prepare("igel-7b/gguf-q4_k_m-of-another-family", "Hallo")
    assert refused.value.key == "err_unknown_model"
    assert "Modell" in t(refused.value.key, "de", **refused.value.params)


@pytest.mark.parametrize(
    "elem_id",
    ["chat-max-new-tokens", "retrieval-max-new-tokens", "structured-max-new-tokens", "compare-shared-max-new-tokens"],
)
def test_max_new_tokens_sliders_stop_short_of_the_context(demo: Any, elem_id: str) -> None:
    """The sliders went up to the whole context (2048 of 2048) on the sources, JSON and compare tabs."""
    slider = blocks_by_id(demo)[elem_id]
    context = CATALOG.default.variant.context_length
    assert slider.maximum <= context - PROMPT_ROOM, (elem_id, slider.maximum, context)
    assert slider.value <= slider.maximum


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_compare_pane_sliders_stop_short_of_their_models_context(demo: Any, n: int) -> None:
    blocks = blocks_by_id(demo)
    slider = blocks[f"compare-max-new-tokens-{n}"]
    quant = blocks[f"compare-quant-{n}"].value
    variant = blocks[f"compare-variant-{n}"].value
    ref = CATALOG.get(f"{variant}/{quant}")
    assert ref is not None
    assert slider.maximum <= ref.variant.context_length - PROMPT_ROOM


@pytest.mark.parametrize("elem_id", ["chat-stop", "compare-stop", "retrieval-stop-button", "structured-stop-button"])
def test_stop_buttons_look_idle_before_anything_runs(demo: Any, elem_id: str) -> None:
    assert blocks_by_id(demo)[elem_id].interactive is False


# ---- a refused new source is named as what it is, not by a number it never got ------------
def _refusals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from components.ui import retrieval as page

    said: list[str] = []
    monkeypatch.setattr(page, "warn", lambda message, lang: said.append(message))
    return said


def test_a_refused_source_in_the_text_box_is_not_numbered(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.ui.retrieval import add_sources

    said = _refusals(monkeypatch)
    one = add_sources("Erste Quelle.", None, None, None, None, [], "de")[0]
    assert len(one) == 1 and not said
    items = add_sources("Text mit ENDINPUT darin.", None, None, None, None, one, "de")[0]
    assert items == one  # nothing added
    assert said and "Quelle 2" not in said[-1] and "im Textfeld" in said[-1] and "ENDINPUT" in said[-1]
    add_sources("   ", None, None, None, None, one, "en")
    assert "Source 2" not in said[-1] and "in the text box" in said[-1]


def test_a_refused_uploaded_file_is_named_by_its_file_name(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from components.ui.retrieval import add_sources

    said = _refusals(monkeypatch)
    path = tmp_path / "notizen.txt"
    path.write_text("Ein Absatz.\nENDINPUT\nNoch einer.", encoding="utf-8")
    add_sources("", [str(path)], None, None, None, [], "de")
    assert said and "„notizen.txt“" in said[-1] and "Quelle 1" not in said[-1]


def test_compare_lines_under_the_panes_never_repeat_the_bubble() -> None:
    """Queued panes said "schreibt …" under a bubble saying "Warteschlange"; finished panes showed their figures
    twice (in the bubble and under the pane)."""
    from components.features.compare import PaneResult, Round
    from components.ui.compare import pane_stats_line, question_line

    queued = PaneResult(0, "m", status="Warteschlange: Platz 2")
    streaming = PaneResult(1, "m", text="Die Hauptstadt")
    done = PaneResult(2, "m", text="Berlin.", done=True, stats={"completion_tokens": 3, "ttft_s": 0.1})
    failed = PaneResult(3, "m", error="kaputt", done=True)
    rounds = [Round("Was ist die *Hauptstadt*?", [queued, streaming, done, failed])]
    assert [pane_stats_line(rounds, i, "de") for i in range(4)] == ["", "schreibt …", "", ""]
    # the question stays in sight above the panes, literally (no Markdown from the visitor)
    assert question_line(rounds, "de") == "**Frage:** Was ist die \\*Hauptstadt\\*?"
    assert question_line([], "de") == ""
