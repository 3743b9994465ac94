"""The demo's seams that the page's configuration and handlers show without a browser: blind mode with one or two
models, labels in one language and one wording, buttons that look idle where nothing can be done."""

from __future__ import annotations

import re
from typing import Any

import pytest

from components.core import availability
from components.core.service import EngineRegistry, Playground
from components.engines import disk
from components.vocabulary.catalog import load_catalog
from components.vocabulary.messages import t

CATALOG = load_catalog()
EM_GGUF = "em-german-leo-mistral/gguf-q4_k_m"


def hub(reachable: bool) -> availability.HubProbe:
    return availability.HubProbe(probe=lambda endpoint: reachable)


@pytest.fixture(autouse=True)
def no_download_policy(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(availability, "cached_file", lambda repo, name: None)
    monkeypatch.setattr(availability, "default_budget_gb", lambda: 100.0)
    disk.install(None)
    yield
    disk.install(None)


def build(playground: Playground) -> Any:
    import app

    return app.build_app(playground)


def blocks_by_id(demo: Any) -> dict[str, Any]:
    return {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}


def handler(demo: Any, name: str) -> Any:
    [fn] = [f.fn for f in demo.fns.values() if getattr(f.fn, "__name__", "") == name]
    return fn


# ---- blind mode with one model: how to get a second one ------------------------------------------------------------
@pytest.mark.parametrize(
    ("reachable", "allowed", "how"),
    [
        (True, None, "blind_how_download"),  # a download from a reachable Hub
        (False, None, "blind_how_cache"),  # no Hub: bring the file
        (True, frozenset(), "blind_how_allow"),  # the public profile: nothing may be downloaded
    ],
)
@pytest.mark.parametrize("lang", ["de", "en"])
def test_blind_mode_with_one_model_says_how_to_get_a_second(reachable: bool, allowed: Any, how: str, lang: str) -> None:
    from components.ui.arena import check_session, second_model_hint
    from components.vocabulary.generation import InputError

    disk.install(disk.DownloadPolicy(allowed=allowed))
    playground = Playground(CATALOG, hub=hub(reachable))
    text = second_model_hint(playground, lang)
    first = t(how, lang, model="", size=0, file="", repo="", example="").split("{")[0][:25]
    assert text.startswith(t("err_blind_needs_two", lang).split("{")[0]) and first in text
    assert CATALOG.default.label in text and "TGI_URL" in text and "OPENAI_BASE_URL" in text
    assert "{" not in text and text.endswith(".")
    if how == "blind_how_download":  # the smallest German GGUF, with its size in the page's numbers
        assert "EM German Llama-2 7B · GGUF Q4_K_M" in text and ("4,1 GB" if lang == "de" else "4.1 GB") in text
    # with nothing else to choose, the blind session says the same instead of "please choose two different models"
    with pytest.raises(InputError) as refused:
        check_session(playground, "german_eval", "", 1, [CATALOG.default.id], 16)
    refusal = t(refused.value.key, lang, **refused.value.params)
    assert refusal == (t("err_session_models", lang) if how == "blind_how_download" else text)


def test_ticking_blind_gives_each_pane_another_model_where_two_run(tgi_playground: Any) -> None:
    """Two builds run here (the offline model and a TGI server's): ticking Blindvergleich gives the second pane the
    other one, with its family's system prompt as the placeholder; nothing to warn about."""
    _standin, playground = tgi_playground
    demo = build(playground)
    on_blind = handler(demo, "on_blind")
    default = CATALOG.default
    picked = [default.variant.id, default.quant.id] * 4
    out = on_blind(True, 2, "de", *picked)
    vote_row, panes, count = out[0], out[1:-1], out[-1]
    assert vote_row["visible"] is True and count == 2
    assert all(isinstance(x, dict) and len(x) == 1 for x in panes[:5])  # pane 1 keeps its model
    family, variant, quant, system, _max_new = panes[5:10]
    second = playground.catalog.get(f"{variant['value']}/{quant['value']}")
    assert second is not None and second.id != default.id and family == second.family.id
    assert playground.availability(second).state == availability.READY
    assert system["placeholder"] == second.family.system_prompt
    assert on_blind(False, 2, "de", *picked)[0]["visible"] is False


# ---- idle buttons look idle, names in the page's words --------------------------------------------------------------
@pytest.fixture(scope="module")
def demo() -> Any:
    return build(Playground(CATALOG, EngineRegistry(CATALOG)))


@pytest.mark.parametrize("elem_id", ["session-stop", "retrieval-remove", "retrieval-clear"])
def test_buttons_that_can_do_nothing_yet_look_idle(demo: Any, elem_id: str) -> None:
    assert blocks_by_id(demo)[elem_id].interactive is False


def test_the_prompt_set_is_named_for_people(demo: Any) -> None:
    choices = blocks_by_id(demo)["session-set"].choices
    assert ("Aufgaben aus den Modellkarten (Deutsch)", "german_eval") in choices


def test_hidden_text_boxes_have_names_that_follow_the_language(demo: Any) -> None:
    """A box without a shown label is named "Textbox" by Gradio for screen readers: each has its own name, switched
    with the language together with its placeholder."""
    boxes = blocks_by_id(demo)
    for elem_id, key in (("chat-input", "message"), ("compare-input", "message"), ("chat-raw-prompt", "raw_prompt")):
        assert boxes[elem_id].label == t(key, "de"), elem_id
    relabel = handler(demo, "relabel")
    updates = relabel("en")
    outputs = next(f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "relabel").outputs
    chat_input = outputs.index(boxes["chat-input"])
    assert updates[chat_input]["label"] == "Message" and updates[chat_input]["placeholder"].startswith("Ask")
    assert len({id(o) for o in outputs}) == len(outputs)  # one update per component


def test_the_picker_says_what_the_model_line_says_when_the_hub_cannot_be_reached() -> None:
    from components.ui.common import availability_line, quant_label

    playground = Playground(CATALOG, hub=hub(False))
    ref = CATALOG.get(EM_GGUF)
    assert ref is not None
    for lang, words in (("de", "(kein Netz)"), ("en", "(no network)")):
        assert words in availability_line(playground, ref, lang)
    assert quant_label(playground, ref, "de").endswith("4,4 GB, kein Netz")  # short enough for the picker
    assert quant_label(playground, ref, "en").endswith("4.4 GB, no network")


def test_no_number_in_a_settings_source_line_that_the_sliders_show_in_another_notation() -> None:
    """The sliders' number boxes are formatted by the browser (0.2 in an English Chromium): the line about where the
    settings come from names the source, not the values ("Temperatur 0,2" beside a box showing 0.2)."""
    for family in CATALOG.families:
        if family.settings_source:
            for text in (family.settings_source.de, family.settings_source.en):
                assert not re.search(r"\d[.,]\d", text), text
    # a version in a name ("Teuken-7B-instruct-research v0.4") is a name, not a setting
    assert all(not re.search(r"(?<![v\d])\d[.,]\d", variant.name) for f in CATALOG.families for variant in f.variants)
