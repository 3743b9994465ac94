"""The /chat API of the real app through gradio_client: streaming, parameters, refusals of bad input."""

from __future__ import annotations

import itertools
import re
import time
from functools import cache
from typing import Any

import pytest

from components.vocabulary.catalog import load_catalog
from components.vocabulary.messages import MESSAGES, t
from tests.app_server import RunningApp, app_server_fixture

pytestmark = pytest.mark.slow

live_app = app_server_fixture()

DEFAULT_MODEL = "smollm2-135m-instruct/gguf-q4_1"
QUESTION = "Was ist die Hauptstadt von Frankreich?"


def chat(client: Any, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    text, info = client.predict(api_name="/chat", **kwargs)
    return text, info


def refusal(client: Any, **kwargs: Any) -> str:
    """The message of a refused /chat call (raised by the app as gr.Error)."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        chat(client, **kwargs)
    return str(caught.value)


def assert_still_serving(app: RunningApp, client: Any) -> None:
    assert app.process.poll() is None, "the app process died"
    text, info = chat(client, message="Sag Hallo.", max_new_tokens=4, temperature=0)
    assert text.strip(), info
    assert "error" not in info
    assert info["stats"]["completion_tokens"] >= 1


@cache
def count_tokens(prompt: str) -> int:
    """Prompt tokens as the engine counts them (the offline model's own tokenizer)."""
    from components.engines.llama_cpp import LlamaServer, packaged_gguf

    ref = load_catalog().get(DEFAULT_MODEL)
    assert ref is not None
    path = packaged_gguf(ref.quant)
    assert path is not None, "the offline model is missing: python -m components.engines.offline_model"
    server = LlamaServer(path, context=256, parallel=1, threads=1, n_batch_threads=1)
    try:
        return len(server.tokenize(prompt, add_special=True, parse_special=True))
    finally:
        server.close()


# ---- streaming and parameters --------------------------------------------------------------------
def test_streams_growing_outputs(client: Any) -> None:
    job = client.submit(message=QUESTION, max_new_tokens=64, temperature=0, api_name="/chat")
    seen: list[tuple[float, str]] = []
    start = time.perf_counter()
    for text, _info in job:
        seen.append((time.perf_counter() - start, text))
    final_text, info = job.result()
    texts = [text for _, text in seen if text]
    assert len(texts) >= 3, f"expected several partial outputs, got {len(texts)}"
    for before, after in itertools.pairwise(texts):
        assert after.startswith(before), (before, after)
    assert len(set(texts)) >= 3, "the text did not grow over the stream"
    assert final_text == texts[-1]
    stats = info["stats"]
    assert stats["completion_tokens"] >= 1
    assert stats["ttft_s"] is not None and stats["ttft_s"] > 0
    assert stats["tokens_per_s"] is not None and stats["tokens_per_s"] > 0
    assert stats["finish_reason"] in {"stop", "length"}


def test_named_parameters(client: Any) -> None:
    text, info = chat(
        client,
        message="Nenne eine Farbe.",
        model=DEFAULT_MODEL,
        system_prompt="Du antwortest kurz.",
        history=[["Hallo", "Hallo! Wie kann ich helfen?"]],
        temperature=0.3,
        top_p=0.8,
        top_k=20,
        max_new_tokens=7,
        repetition_penalty=1.05,
        seed=42,
        stop=["\n\n"],
        lang="en",
    )
    assert info["model"] == DEFAULT_MODEL
    assert info["prompt"].startswith("<|im_start|>system\nDu antwortest kurz.<|im_end|>\n")
    assert "error" not in info
    assert info["stats"]["completion_tokens"] <= 7
    assert text.strip()


def test_an_english_answer_of_the_offline_model_reads_en(client: Any) -> None:
    """SmolLM2 answers in English: its info says so (language per answer, components/core/answer_traits.py)."""
    text, info = chat(client, message="What is a computer?", temperature=0, max_new_tokens=48, lang="en")
    assert info["language"]["code"] == "en", (text, info["language"])
    assert info["language"]["de_share"] < 0.5
    assert info["register"]["form"] == "none" and info["register"]["kept"] is None, info["register"]


def test_stop_sequence_ends_answer(client: Any) -> None:
    free, _ = chat(
        client, message="Write the numbers from 1 to 10, separated by commas.", temperature=0, seed=1, max_new_tokens=40
    )
    assert "," in free, f"precondition: the free answer has a comma: {free!r}"
    text, info = chat(
        client,
        message="Write the numbers from 1 to 10, separated by commas.",
        temperature=0,
        seed=1,
        max_new_tokens=40,
        stop=[","],
    )
    assert "," not in text
    assert free.startswith(text)
    assert info["stats"]["finish_reason"] == "stop"


def test_seed_and_temperature_zero_are_reproducible(client: Any) -> None:
    kwargs = {
        "message": "Nenne drei Tipps für einen guten Schlaf.",
        "temperature": 0,
        "seed": 1234,
        "max_new_tokens": 40,
    }
    first, _ = chat(client, **kwargs)
    second, _ = chat(client, **kwargs)
    assert first.strip()
    assert first == second
    # the same seed with sampling is reproducible too
    sampled = {**kwargs, "temperature": 0.9}
    assert chat(client, **sampled)[0] == chat(client, **sampled)[0]


def test_history_is_in_the_prompt(client: Any) -> None:
    history = [["Wie heißt du?", "Ich heiße Lotte."], ["Wo wohnst du?", "In Hamburg."]]
    _, info = chat(client, message="Wie heiße ich?", history=history, max_new_tokens=8, temperature=0)
    expected = (
        "<|im_start|>system\nDu bist ein hilfreicher Assistent.<|im_end|>\n"
        "<|im_start|>user\nWie heißt du?<|im_end|>\n<|im_start|>assistant\nIch heiße Lotte.<|im_end|>\n"
        "<|im_start|>user\nWo wohnst du?<|im_end|>\n<|im_start|>assistant\nIn Hamburg.<|im_end|>\n"
        "<|im_start|>user\nWie heiße ich?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert info["prompt"] == expected
    assert info["stats"]["prompt_tokens"] == count_tokens(expected)


def test_models_endpoint(client: Any) -> None:
    models = client.predict(api_name="/models")
    by_id = {m["id"]: m for m in models}
    assert by_id[DEFAULT_MODEL]["available"] is True
    gptq = by_id["em-german-7b/gptq"]
    assert gptq["available"] is False
    assert gptq["why_not"] == t("why_needs_gpu", "de", kind="GPTQ")


# ---- refusals of bad input -------------------------------------------------------------------------
def setting_range(name: str, value: Any, low: float, high: float, lang: str = "de") -> str:
    return t("err_setting_range", lang, name=name, value=value, low=low, high=high)


BAD_SETTINGS: list[tuple[str, dict[str, Any], str]] = [
    ("temperature-5", {"temperature": 5}, setting_range("temperature", 5, 0.0, 2.0)),
    ("top_p-0", {"top_p": 0}, setting_range("top_p", 0, 0.01, 1.0)),
    ("max_new_tokens-0", {"max_new_tokens": 0}, setting_range("max_new_tokens", 0, 1, 2048)),
    ("max_new_tokens-1e9", {"max_new_tokens": 10**9}, setting_range("max_new_tokens", 10**9, 1, 2048)),
    ("seed-minus-1", {"seed": -1}, setting_range("seed", -1, 0, 2**31 - 1)),
    ("top_k-text", {"top_k": "viele"}, t("err_setting_type", "de", name="top_k", value="'viele'")),
    ("temperature-text", {"temperature": "heiß"}, t("err_setting_type", "de", name="temperature", value="'heiß'")),
    ("stop-too-many", {"stop": ["a", "b", "c", "d", "e"]}, t("err_stop_sequences", "de", count=4, chars=50)),
]


@pytest.mark.parametrize(
    ("kwargs", "expected"), [(k, e) for _, k, e in BAD_SETTINGS], ids=[n for n, _, _ in BAD_SETTINGS]
)
def test_bad_settings_are_refused(live_app: RunningApp, client: Any, kwargs: dict[str, Any], expected: str) -> None:
    assert refusal(client, message=QUESTION, **kwargs) == expected
    assert_still_serving(live_app, client)


def test_bad_setting_in_english(live_app: RunningApp, client: Any) -> None:
    assert refusal(client, message=QUESTION, temperature=5, lang="en") == setting_range(
        "temperature", 5, 0.0, 2.0, "en"
    )
    assert_still_serving(live_app, client)


@pytest.mark.parametrize(
    "message", ["", "   ", " \n\t \n", "\x00\x07"], ids=["empty", "spaces", "whitespace", "controls"]
)
@pytest.mark.parametrize("lang", ["de", "en"])
def test_empty_message_is_refused(live_app: RunningApp, client: Any, message: str, lang: str) -> None:
    assert refusal(client, message=message, lang=lang) == t("err_empty", lang)
    assert_still_serving(live_app, client)


def test_unknown_model(live_app: RunningApp, client: Any) -> None:
    got = refusal(client, message=QUESTION, model="gibt-es-nicht/q8")
    assert got == t("err_unknown_model", "de", model="gibt-es-nicht/q8", example=DEFAULT_MODEL)
    got = refusal(client, message=QUESTION, model="", lang="en")
    assert got == t("err_unknown_model", "en", model="", example=DEFAULT_MODEL)
    assert_still_serving(live_app, client)


@pytest.mark.parametrize(
    "history",
    ["kaputt", [["nur eine Hälfte"]], [[1, 2]], [["a", "b", "c"]], {"user": "a"}, [None]],
    ids=["string", "half-pair", "numbers", "triple", "dict", "none-item"],
)
def test_malformed_history(live_app: RunningApp, client: Any, history: Any) -> None:
    assert refusal(client, message=QUESTION, history=history) == t("err_history", "de")
    assert_still_serving(live_app, client)


@pytest.mark.parametrize("lang", ["de", "en"])
def test_prompt_longer_than_context(live_app: RunningApp, client: Any, lang: str) -> None:
    message = "Wort " * 3000  # 15,000 characters: under the character limit, over 2048 tokens
    text, info = chat(client, message=message, max_new_tokens=64, lang=lang)
    assert text == ""
    assert info["error_code"] == "err_context"
    prompt_tokens = count_tokens(info["prompt"])
    assert prompt_tokens > 2048
    expected = t(
        "err_context", lang, prompt_tokens=prompt_tokens, max_new_tokens=64, total=prompt_tokens + 64, context=2048
    )
    assert info["error"] == expected
    assert info["stats"]["finish_reason"] == "error"
    assert_still_serving(live_app, client)


def test_answer_budget_counts_against_context(live_app: RunningApp, client: Any) -> None:
    """A short prompt with max_new_tokens at the slider's top (2048) cannot fit a 2048-token context."""
    text, info = chat(client, message="Hallo", max_new_tokens=2048)
    assert text == ""
    assert info["error_code"] == "err_context"
    prompt_tokens = count_tokens(info["prompt"])
    expected = t(
        "err_context", "de", prompt_tokens=prompt_tokens, max_new_tokens=2048, total=prompt_tokens + 2048, context=2048
    )
    assert info["error"] == expected
    assert_still_serving(live_app, client)


@pytest.mark.parametrize("lang", ["de", "en"])
def test_model_that_needs_a_gpu(live_app: RunningApp, client: Any, lang: str) -> None:
    got = refusal(client, message=QUESTION, model="em-german-7b/gptq", lang=lang)
    ref = load_catalog().get("em-german-7b/gptq")
    assert ref is not None
    assert got == t("err_unavailable", lang, model=ref.label, why=t("why_needs_gpu", lang, kind="GPTQ"))
    assert_still_serving(live_app, client)


@pytest.mark.parametrize("lang", ["de", "en"])
def test_message_too_long(live_app: RunningApp, client: Any, lang: str) -> None:
    got = refusal(client, message="a" * 100_000, lang=lang)
    assert got == t("err_too_long_chars", lang, chars=100_000, limit=20_000)
    assert_still_serving(live_app, client)


def test_control_characters_are_stripped(live_app: RunningApp, client: Any) -> None:
    text, info = chat(
        client,
        message="Hal\x00lo\x07 We\u200blt\x1b!\r",
        system_prompt="Du bist\x0c nett.",
        history=[["Fra\x00ge", "Ant\x08wort"]],
        max_new_tokens=4,
        temperature=0,
    )
    prompt = info["prompt"]
    assert "<|im_start|>system\nDu bist nett.<|im_end|>" in prompt
    assert "<|im_start|>user\nFrage<|im_end|>\n<|im_start|>assistant\nAntwort<|im_end|>" in prompt
    assert "<|im_start|>user\nHallo Welt!<|im_end|>" in prompt
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u200b]", prompt), repr(prompt)
    assert text.strip()
    assert_still_serving(live_app, client)


def test_messages_used_here_exist() -> None:
    for key in ("err_empty", "err_context", "err_unavailable", "err_too_long_chars", "err_history", "why_needs_gpu"):
        assert set(MESSAGES[key]) == {"de", "en"}
