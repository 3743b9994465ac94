"""Server-side input checks: every bad input gets its message key, good input passes unchanged."""

from __future__ import annotations

import pytest

from components.core.service import Playground
from components.core.validation import build_settings, check_message, parse_history, parse_stop
from components.vocabulary.generation import InputError
from components.vocabulary.messages import MESSAGES, t

OFFLINE = "smollm2-135m-instruct/gguf-q4_1"


def refused(fn, *args, **kwargs) -> InputError:
    with pytest.raises(InputError) as err:
        fn(*args, **kwargs)
    assert err.value.key in MESSAGES
    return err.value


def test_empty_and_whitespace_messages_are_refused() -> None:
    for text in ("", "   ", "\n\t ", None, "\x00\x07"):
        assert refused(check_message, text).key == "err_empty"


def test_long_message_refused_with_counts() -> None:
    err = refused(check_message, "a" * 100_000)
    assert err.key == "err_too_long_chars" and err.params["chars"] == 100_000
    # numbers with the language's thousands separator
    assert "100.000 Zeichen" in t(err.key, "de", **err.params)
    assert "100,000 characters" in t(err.key, "en", **err.params)


def test_control_characters_are_stripped() -> None:
    assert check_message("Hal\x00lo\x1b[31m Welt\u200b\n") == "Hallo[31m Welt\n"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("temperature", 5, "err_setting_range"),
        ("temperature", -0.1, "err_setting_range"),
        ("temperature", float("nan"), "err_setting_type"),
        ("top_p", 0, "err_setting_range"),
        ("top_k", 2.5, "err_setting_type"),
        ("top_k", "viele", "err_setting_type"),
        ("max_new_tokens", 0, "err_setting_range"),
        ("max_new_tokens", 10**9, "err_setting_range"),
        ("repetition_penalty", 3, "err_setting_range"),
        ("seed", -1, "err_setting_range"),
        ("seed", True, "err_setting_type"),
    ],
)
def test_settings_out_of_range_are_refused(catalog, name: str, value: object, key: str) -> None:
    fam = catalog.family("em-german")
    err = refused(build_settings, fam, (), **{name: value})
    assert err.key == key and err.params["name"] == name
    text_de, text_en = t(err.key, "de", **err.params), t(err.key, "en", **err.params)
    assert name in text_de and name in text_en and text_de != text_en


def test_settings_default_to_family_recommendation(catalog) -> None:
    fam = catalog.family("em-german")
    s = build_settings(fam, ("USER:",), stop="###\n\nENDE")
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty, s.max_new_tokens) == (0.6, 0.95, 40, 1.2, 512)
    assert s.stop == ("USER:", "###", "ENDE")
    s = build_settings(fam, (), temperature="0.3", top_k=7.0, seed=42)
    assert (s.temperature, s.top_k, s.seed) == (0.3, 7, 42)


def test_stop_sequences_limits() -> None:
    assert parse_stop(["a", " ", "b"]) == ("a", "b")
    assert refused(parse_stop, ["x"] * 5).key == "err_stop_sequences"
    assert refused(parse_stop, ["x" * 51]).key == "err_stop_sequences"
    assert refused(parse_stop, 42).key == "err_stop_sequences"


def test_history_forms() -> None:
    assert parse_history([["Hallo", "Hi"]])[0].assistant == "Hi"
    assert parse_history([{"user": "a", "assistant": "b"}])[0].user == "a"
    assert parse_history(None) == []
    for bad in ("text", [["only one"]], [[1, 2]], [{"user": "x"}], 5):
        assert refused(parse_history, bad).key == "err_history"
    assert refused(parse_history, [["a", "b"]] * 60).key == "err_too_many_turns"


def test_prepare_refuses_unknown_and_unavailable_models(catalog) -> None:
    pg = Playground(catalog)
    err = refused(pg.prepare, "gpt-5", "Hallo")
    assert err.key == "err_unknown_model" and err.params["example"] == OFFLINE
    err = refused(pg.prepare, "em-german-7b/gptq", "Hallo", lang="en")
    assert err.key == "err_unavailable" and "GPU" in err.params["why"]
    assert refused(pg.prepare, None, "Hallo").key == "err_unknown_model"


def test_prepare_builds_exact_prompt_and_family_stop(catalog) -> None:
    pg = Playground(catalog)
    prepared = pg.prepare(OFFLINE, "Wie spät ist es?", system_prompt="Antworte kurz.")
    assert prepared.raw_prompt == (
        "<|im_start|>system\nAntworte kurz.<|im_end|>\n<|im_start|>user\nWie spät ist es?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert "<|im_end|>" in prepared.request.settings.stop
    # None means the family default; an empty string means no system prompt at all
    assert pg.prepare(OFFLINE, "x").raw_prompt.startswith("<|im_start|>system\nDu bist ein hilfreicher Assistent.")
    assert pg.prepare(OFFLINE, "x", system_prompt="").raw_prompt.startswith("<|im_start|>user\n")


def test_every_message_has_both_languages() -> None:
    for key, entry in MESSAGES.items():
        assert set(entry) == {"de", "en"}, key
        assert entry["de"].strip() and entry["en"].strip(), key
