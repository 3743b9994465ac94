"""OpenAICompatEngine against the vLLM and SGLang stand-ins (tests/vllm_standin.py, tests/sglang_standin.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from components.engines.openai_compat import OpenAICompatEngine
from components.engines.remote import read_error_payload
from components.vocabulary.catalog import Endpoint, ModelRef, Quantization
from components.vocabulary.generation import Event, Failed, Finished, GenerationRequest, TextDelta
from components.vocabulary.messages import t
from components.vocabulary.prompts import get_format
from components.vocabulary.settings import SamplingSettings
from tests.sglang_standin import SglangStandin
from tests.tgi_standin import tokenize
from tests.vllm_standin import NO_TEMPLATE, LoopbackServer, VllmStandin

REPLY = "Berlin ist die Hauptstadt von Deutschland."
JSON_REPLY = '{"antwort": "Berlin", "sicher": true}'
SCHEMA = {"type": "object", "properties": {"antwort": {"type": "string"}}, "required": ["antwort"]}


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[LoopbackServer]:
    with LoopbackServer(VllmStandin()) as server:
        yield server


@pytest.fixture(scope="module")
def sglang_server() -> Iterator[LoopbackServer]:
    with LoopbackServer(SglangStandin()) as server:
        yield server


@pytest.fixture
def vllm(vllm_server: LoopbackServer) -> VllmStandin:
    vllm_server.standin.reset()
    return vllm_server.standin  # type: ignore[no-any-return]


@pytest.fixture
def sglang(sglang_server: LoopbackServer) -> SglangStandin:
    sglang_server.standin.reset()
    return sglang_server.standin  # type: ignore[no-any-return]


def endpoint_at(url: str, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_SRV_URL", url + "/v1")
    monkeypatch.delenv("TEST_SRV_KEY", raising=False)
    for name in ("OPENAI_API_MODE", "OPENAI_JSON_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    return Endpoint(id="openai", type="openai", url_env="TEST_SRV_URL", token_env="TEST_SRV_KEY", label="GPU-Box")


@pytest.fixture
def vllm_endpoint(vllm: VllmStandin, vllm_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    return endpoint_at(vllm_server.url, monkeypatch)


@pytest.fixture
def sglang_endpoint(sglang: SglangStandin, sglang_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    return endpoint_at(sglang_server.url, monkeypatch)


def remote_ref(catalog: Any, family: str, served_model: str | None = None) -> ModelRef:
    base = next(r for r in catalog.refs() if r.family.id == family)
    return ModelRef(
        base.family,
        base.variant,
        Quantization(id="openai", kind="remote", endpoint="openai", served_model=served_model),
    )


def make_request(ref: ModelRef, message: str = "Was ist die Hauptstadt?", **settings: Any) -> GenerationRequest:
    fmt = get_format(ref.family.prompt_format)
    schema = settings.pop("schema", None)
    values = {"temperature": 0.6, "top_p": 0.95, "top_k": 40, "max_new_tokens": 64, "stop": fmt.stop}
    values.update(settings)
    return GenerationRequest(
        model=ref,
        prompt=fmt.render(ref.family.system_prompt, [], message),
        messages=fmt.messages(ref.family.system_prompt, [], message),
        settings=SamplingSettings(**values),
        json_schema=schema,
    )


async def collect(engine: OpenAICompatEngine, request: GenerationRequest) -> tuple[str, list[Event]]:
    events = [event async for event in engine.stream(request)]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


def in_both_languages(failed: Failed) -> tuple[str, str]:
    de, en = t(failed.key, "de", **failed.params), t(failed.key, "en", **failed.params)
    assert de != en and failed.key not in (de, en) and "{" not in de + en
    return de, en


# ---- vLLM --------------------------------------------------------------------------------------------------
async def test_vllm_is_detected_with_its_context_and_version(vllm_endpoint: Endpoint) -> None:
    facts = await OpenAICompatEngine(vllm_endpoint).server_facts()
    assert facts["kind"] == "vllm" and facts["version"] == "0.24.0"
    assert facts["context"] == 4096 and facts["models"] == ["jphme/em_german_leo_mistral"]  # /v1/models max_model_len


async def test_vllm_completions_get_the_exact_prompt_and_the_fields_vllm_reads(
    vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any
) -> None:
    request = make_request(remote_ref(catalog, "em-german"), "Schreibe „Grüße“!", seed=7)
    text, events = await collect(OpenAICompatEngine(vllm_endpoint), request)
    assert text == REPLY and isinstance(events[-1], Finished), events
    assert events[-1].stats.finish_reason == "stop" and events[-1].stats.completion_tokens == 6
    (call,) = vllm.generation_calls()
    body = call.body
    assert call.path == "/v1/completions" and body["prompt"] == request.prompt
    assert body["model"] == "jphme/em_german_leo_mistral" and body["stop"] == ["USER:"] and body["seed"] == 7
    assert body["top_k"] == 40 and body["repetition_penalty"] == 1.1 and body["min_p"] == 0.0
    assert "repeat_penalty" not in body  # llama.cpp's name: nothing vLLM reads
    # the prompt's length was asked of vLLM's own tokenizer first
    (counted,) = vllm.calls("/tokenize")
    assert counted.body == {"model": "jphme/em_german_leo_mistral", "prompt": request.prompt}


async def test_vllm_gets_at_most_four_stop_sequences_and_the_rest_still_stop(
    vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any
) -> None:
    """vLLM refuses a fifth stop string (VLLM_MAX_STOP_STRINGS, default 4) with a 400; EM German's `USER:` plus four
    of the visitor's are five: the engine sends four and cuts at the fifth itself."""
    vllm.config.reply = "Berlin ist schön. ENDE und mehr"
    stops = ("USER:", "###", "Frage:", "Antwort:", "ENDE")
    request = make_request(remote_ref(catalog, "em-german"), stop=stops)
    text, events = await collect(OpenAICompatEngine(vllm_endpoint), request)
    assert isinstance(events[-1], Finished), events
    assert text == "Berlin ist schön. "
    assert vllm.generation_calls()[-1].body["stop"] == list(stops[:4])
    # the stand-in refuses five as vLLM does
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            vllm_endpoint.url() + "/completions", json={"prompt": "x", "stop": list(stops), "stream": True}
        )
    assert refused.status_code == 400 and "at most 4 items" in refused.json()["error"]["message"]


@pytest.mark.parametrize(
    ("version", "field"),
    [
        ("0.10.1", "guided_json"),
        ("0.11.2", "guided_json"),
        ("0.12.0", "structured_outputs"),
        ("0.24.0", "structured_outputs"),
    ],
)
async def test_vllm_json_in_completions_goes_in_the_field_its_release_reads(
    vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any, version: str, field: str
) -> None:
    vllm.config.version = version
    request = make_request(remote_ref(catalog, "em-german"), schema=SCHEMA, temperature=0.0)
    text, events = await collect(OpenAICompatEngine(vllm_endpoint), request)
    assert isinstance(events[-1], Finished), events
    assert json.loads(text) == {"antwort": "Berlin", "sicher": True}  # constrained: the stand-in honoured it
    body = vllm.generation_calls()[-1].body
    assert field in body and ({"guided_json", "structured_outputs"} - {field}).isdisjoint(body)


async def test_vllm_ignores_the_field_of_another_release_silently(
    vllm_server: LoopbackServer, vllm: VllmStandin
) -> None:
    """Why the version matters: vLLM accepts unknown fields (extra="allow"), so guided_json on 0.12+ answers 200,
    unconstrained."""
    async with httpx.AsyncClient(base_url=vllm_server.url) as http:
        answer = await http.post(
            "/v1/completions", json={"prompt": "Hallo", "guided_json": SCHEMA, "stream": True, "max_tokens": 32}
        )
    assert answer.status_code == 200 and JSON_REPLY not in answer.text and "Berlin" in answer.text


async def test_vllm_chat_json_is_openais_response_format(
    vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any
) -> None:
    request = make_request(remote_ref(catalog, "leolm-chat"), schema=SCHEMA, temperature=0.0)
    text, events = await collect(OpenAICompatEngine(vllm_endpoint, api_mode="chat"), request)
    assert isinstance(events[-1], Finished), events
    assert json.loads(text)["antwort"] == "Berlin"
    call = vllm.generation_calls()[-1]
    assert call.path == "/v1/chat/completions" and call.body["messages"] == request.messages
    assert call.body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}


async def test_vllm_prompt_too_long_is_refused_with_the_servers_count(
    vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any
) -> None:
    vllm.config.max_model_len = 256
    request = make_request(remote_ref(catalog, "em-german"), "Wort " * 240, max_new_tokens=64)
    _, events = await collect(OpenAICompatEngine(vllm_endpoint), request)
    final = events[-1]
    assert isinstance(final, Failed) and final.key == "err_context", events
    (counted,) = vllm.calls("/tokenize")
    assert counted.body["prompt"] == request.prompt
    # the server's count (its tokenizer plus BOS), not the engine's estimate
    assert final.params["prompt_tokens"] == len(tokenize(request.prompt)) + 1 and final.params["context"] == 256
    assert vllm.generation_calls() == []  # nothing was generated
    de, en = in_both_languages(final)
    assert "256" in de and "256" in en


async def test_vllm_errors_become_the_apps_messages(
    vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a served-model name the server does not serve (OPENAI_MODEL wrong): vLLM's 404
    ref = remote_ref(catalog, "em-german", served_model="jphme/em_german_7b_v01")
    _, events = await collect(OpenAICompatEngine(vllm_endpoint), make_request(ref))
    final = events[-1]
    assert isinstance(final, Failed) and final.key == "err_remote_model_missing", events
    de, en = in_both_languages(final)
    assert "GPU-Box" in de and "does not exist" in en and "OPENAI_MODEL" in de

    # a wrong key: 401 from the /v1 middleware
    vllm.config.api_key = "vllm-secret"
    monkeypatch.setenv("HF_TOKEN", "hf_never_to_vllm")
    _, events = await collect(OpenAICompatEngine(vllm_endpoint), make_request(remote_ref(catalog, "em-german")))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_unauthorized"
    in_both_languages(events[-1])
    assert all("authorization" not in r.headers for r in vllm.requests)  # HF_TOKEN never goes there
    monkeypatch.setenv("TEST_SRV_KEY", "vllm-secret")
    vllm.requests.clear()

    # an error event after two tokens: the partial answer stays, the message says what happened
    vllm.config.fail = "midstream"
    text, events = await collect(OpenAICompatEngine(vllm_endpoint), make_request(remote_ref(catalog, "em-german")))
    assert isinstance(events[-1], Failed) and text == "Berlin ist", events
    de, en = in_both_languages(events[-1])
    assert "CUDA out of memory" in de and "CUDA out of memory" in en
    assert {r.headers.get("authorization") for r in vllm.calls("/v1/completions")} == {"Bearer vllm-secret"}


async def test_vllm_chat_without_a_template_says_so(vllm: VllmStandin, vllm_endpoint: Endpoint, catalog: Any) -> None:
    vllm.config.chat_template = None
    _, events = await collect(
        OpenAICompatEngine(vllm_endpoint, api_mode="chat"), make_request(remote_ref(catalog, "leolm-chat"))
    )
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_template", events
    de, _ = in_both_languages(events[-1])
    assert "OPENAI_API_MODE=completions" in de


# ---- SGLang ------------------------------------------------------------------------------------------------
async def test_sglang_is_detected(sglang: SglangStandin, sglang_endpoint: Endpoint) -> None:
    engine = OpenAICompatEngine(sglang_endpoint)
    facts = await engine.server_facts()
    assert facts["kind"] == "sglang" and facts["version"] == "0.5.6" and facts["context"] == 4096
    assert [r.path for r in sglang.calls() if r.path in ("/get_model_info", "/get_server_info")] == [
        "/get_model_info",
        "/get_server_info",
    ]
    health = await engine.health()
    assert health["ok"] and health["server"] == "sglang" and health["model_id"] == "jphme/em_german_leo_mistral"


async def test_sglang_json_in_completions_is_a_schema_string(
    sglang: SglangStandin, sglang_endpoint: Endpoint, catalog: Any
) -> None:
    request = make_request(remote_ref(catalog, "em-german"), schema=SCHEMA, temperature=0.0)
    text, events = await collect(OpenAICompatEngine(sglang_endpoint), request)
    assert isinstance(events[-1], Finished), events
    assert json.loads(text)["antwort"] == "Berlin"
    body = sglang.generation_calls()[-1].body
    assert body["prompt"] == request.prompt and json.loads(body["json_schema"]) == SCHEMA
    assert "response_format" not in body and "guided_json" not in body
    # an object there fails SGLang's validation (CompletionRequest.json_schema: Optional[str])
    async with httpx.AsyncClient() as http:
        refused = await http.post(sglang_endpoint.url() + "/completions", json={**body, "json_schema": SCHEMA})
    assert refused.status_code == 400 and refused.json()["object"] == "error"


async def test_sglang_chat_json_and_every_stop_sequence(
    sglang: SglangStandin, sglang_endpoint: Endpoint, catalog: Any
) -> None:
    stops = ("<|im_end|>", "X1", "X2", "X3", "X4")
    request = make_request(remote_ref(catalog, "leolm-chat"), schema=SCHEMA, temperature=0.0, stop=stops)
    _, events = await collect(OpenAICompatEngine(sglang_endpoint, api_mode="chat"), request)
    assert isinstance(events[-1], Finished), events
    body = sglang.generation_calls()[-1].body
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
    assert body["stop"] == list(stops)  # SGLang has no limit


async def test_sglang_counts_tokens_and_its_last_context_token_is_not_usable(
    sglang: SglangStandin, sglang_endpoint: Endpoint, catalog: Any
) -> None:
    """SGLang refuses input + max_tokens >= context_len; the engine refuses it first, in the app's words."""
    sglang.config.max_model_len = 200
    engine = OpenAICompatEngine(sglang_endpoint)
    ref = remote_ref(catalog, "em-german")
    probe = make_request(ref, "Wort " * 100)
    count = await engine.count_tokens(ref, probe.prompt)
    (counted,) = sglang.calls("/v1/tokenize")
    assert counted.body == {"model": "jphme/em_german_leo_mistral", "prompt": probe.prompt, "add_special_tokens": True}
    assert count is not None and count < 200
    exact = make_request(ref, "Wort " * 100, max_new_tokens=200 - count)  # input + max_new == context_len
    _, events = await collect(engine, exact)
    assert isinstance(events[-1], Failed) and events[-1].key == "err_context", events
    assert sglang.generation_calls() == []
    in_both_languages(events[-1])
    fits = make_request(ref, "Wort " * 100, max_new_tokens=199 - count)
    _, events = await collect(engine, fits)
    assert isinstance(events[-1], Finished), events


async def test_sglang_error_bodies_are_read(sglang: SglangStandin, sglang_endpoint: Endpoint, catalog: Any) -> None:
    """SGLang's ErrorResponse is flat ({"object": "error", "message", ...}): the page shows its message."""
    sglang.config.chat_template = None
    _, events = await collect(
        OpenAICompatEngine(sglang_endpoint, api_mode="chat"), make_request(remote_ref(catalog, "leolm-chat"))
    )
    final = events[-1]
    assert isinstance(final, Failed) and final.key == "err_remote_template", events
    assert final.params["detail"] == NO_TEMPLATE  # not the whole body's repr
    in_both_languages(final)


def test_error_payload_forms() -> None:
    flat = {
        "object": "error",
        "message": "top_k must be -1 (disable) or at least 1, got 0.",
        "type": "BadRequestError",
        "code": 400,
    }
    assert read_error_payload(flat) == (flat["message"], "BadRequestError", 400)
    nested = {"error": {"message": "m", "type": "BadRequestError", "param": None, "code": 400}}
    assert read_error_payload(nested) == ("m", "BadRequestError", 400)
