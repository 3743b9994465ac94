"""TgiEngine on the strict TGI stand-in (loopback): streaming, settings, every error form, Stop, tokens, history."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from components.engines.remote import Stopped, StopTrimmer, Watchdog, redact_url, remote_timeout_s
from components.engines.tgi import TgiEngine, tgi_parameters
from components.vocabulary.catalog import Endpoint, ModelRef
from components.vocabulary.generation import EngineError, Event, Failed, Finished, GenerationRequest, TextDelta
from components.vocabulary.messages import MESSAGES, t
from components.vocabulary.settings import SamplingSettings
from tests.conftest import free_port
from tests.tgi_standin import Disconnect, Standin, StandinServer, tokenize

PROMPT = "Du bist ein hilfreicher Assistent. USER: Was ist die Hauptstadt von Deutschland? ASSISTANT:"
REPLY = "Berlin ist die Hauptstadt von Deutschland."


@pytest.fixture
def endpoint(tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_TGI_URL", tgi_server.url)
    monkeypatch.delenv("TEST_TGI_TOKEN", raising=False)
    return Endpoint(id="tgi", type="tgi", url_env="TEST_TGI_URL", token_env="TEST_TGI_TOKEN", label="Test-TGI")


@pytest.fixture
def ref(catalog: Any) -> ModelRef:
    return next(r for r in catalog.refs() if r.family.id == "em-german")


def make_request(
    ref: ModelRef, prompt: str = PROMPT, schema: dict[str, Any] | None = None, **settings: Any
) -> GenerationRequest:
    base = {"temperature": 0.6, "top_p": 0.95, "top_k": 40, "max_new_tokens": 64, "stop": ("USER:",)}
    base.update(settings)
    return GenerationRequest(
        model=ref, prompt=prompt, messages=[], settings=SamplingSettings(**base), json_schema=schema
    )


async def collect(engine: TgiEngine, request: GenerationRequest) -> tuple[str, list[Event]]:
    events = [event async for event in engine.stream(request)]
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    return text, events


async def wait_disconnect(standin: Standin, timeout: float = 3.0) -> Disconnect | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not standin.disconnects:
        await asyncio.sleep(0.01)
    return standin.disconnects[-1] if standin.disconnects else None


# ---- streaming --------------------------------------------------------------------------------
async def test_streams_text_finish_reason_and_skips_special_tokens(
    standin: Standin, endpoint: Endpoint, ref: ModelRef
) -> None:
    text, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert text == REPLY
    assert "</s>" not in text
    assert sum(isinstance(e, TextDelta) for e in events) == 6
    final = events[-1]
    assert isinstance(final, Finished)
    assert final.stats.finish_reason == "eos_token"
    assert final.stats.completion_tokens == 7  # six words and the EOS token, as TGI counts
    assert final.stats.prompt_tokens == len(tokenize(PROMPT))


async def test_exact_prompt_and_parameters_reach_the_server(
    standin: Standin, endpoint: Endpoint, ref: ModelRef
) -> None:
    prompt = (
        "<|im_start|>system\nDu bist hilfreich.<|im_end|>\n"
        "<|im_start|>user\nGrüße aus Köln – „ß“?<|im_end|>\n<|im_start|>assistant\n"
    )
    await collect(TgiEngine(endpoint), make_request(ref, prompt, seed=7, repetition_penalty=1.2))
    (call,) = standin.generation_calls()
    assert call.path == "/"  # huggingface_hub posts to the URL as given: TGI's compat route
    assert call.body["inputs"] == prompt
    assert call.body["stream"] is True
    assert call.body["parameters"] == {
        "details": True,
        "do_sample": True,
        "max_new_tokens": 64,
        "repetition_penalty": 1.2,
        "seed": 7,
        "stop": ["USER:"],
        "temperature": 0.6,
        "top_k": 40,
        "top_p": 0.95,
    }


async def test_greedy_and_neutral_settings_map_to_what_tgi_accepts(
    standin: Standin, endpoint: Endpoint, ref: ModelRef
) -> None:
    engine = TgiEngine(endpoint)
    text, events = await collect(engine, make_request(ref, temperature=0.0, top_p=1.0, top_k=0, seed=3))
    assert text == REPLY and isinstance(events[-1], Finished)
    params = standin.generation_calls()[-1].body["parameters"]
    assert params["do_sample"] is False
    for absent in ("temperature", "top_p", "top_k", "seed"):
        assert absent not in params
    # sampling with top_p 1.0 and top_k 0: TGI refuses top_p=1.0, so it is left out
    text, events = await collect(engine, make_request(ref, temperature=0.8, top_p=1.0, top_k=0))
    assert text == REPLY and isinstance(events[-1], Finished)
    params = standin.generation_calls()[-1].body["parameters"]
    assert params["temperature"] == 0.8 and "top_p" not in params and "top_k" not in params


def test_tgi_parameters_trim_stop_sequences_keeping_the_familys_first() -> None:
    settings = SamplingSettings(stop=("USER:", "</s>", "a", "b", "c"))
    assert tgi_parameters(settings, None, max_stop=4)["stop"] == ["USER:", "</s>", "a", "b"]
    assert tgi_parameters(settings, None, max_stop=1)["stop"] == ["USER:"]
    assert tgi_parameters(SamplingSettings(), {"properties": {}})["grammar"] == {
        "type": "json",
        "value": {"properties": {}},
    }


async def test_stop_sequence_is_cut_from_the_answer(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.reply = "Gern geschehen. USER: Und noch was?"
    text, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert text == "Gern geschehen. "
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stop_sequence"


async def test_stop_sequences_beyond_the_server_limit_are_enforced_here(
    standin: Standin, endpoint: Endpoint, ref: ModelRef
) -> None:
    standin.config.max_stop_sequences = 1
    standin.config.reply = "Eins zwei ### drei vier fünf sechs"
    text, events = await collect(TgiEngine(endpoint), make_request(ref, stop=("USER:", "###")))
    assert standin.generation_calls()[-1].body["parameters"]["stop"] == ["USER:"]
    assert text == "Eins zwei "
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stop_sequence"


def test_stop_trimmer_holds_back_partial_stop_sequences() -> None:
    trimmer = StopTrimmer(["USER:"])
    assert trimmer.feed("Hallo U") == "Hallo "
    assert trimmer.feed("nd") == "Und"
    assert trimmer.feed(" US") == " "
    assert trimmer.feed("ER: x") == ""
    assert trimmer.hit and trimmer.flush() == ""
    trimmer = StopTrimmer(["###"])
    assert trimmer.feed("a #") == "a "
    assert trimmer.flush() == "#"


async def test_legacy_server_names_and_data_prefix(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.legacy = True  # max_input_length, `data:{...}` without a space
    standin.config.max_input_tokens = 5
    with pytest.raises(EngineError) as refused:
        await drain(TgiEngine(endpoint), make_request(ref))
    assert refused.value.key == "err_context" and refused.value.params["context"] == 5
    standin.config.max_input_tokens = 4000
    text, _ = await collect(TgiEngine(endpoint), make_request(ref))
    assert text == REPLY


async def drain(engine: TgiEngine, request: GenerationRequest) -> list[Any]:
    return [item async for item in engine.generate(request)]


# ---- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fail", "key", "partial"),
    [
        ("overloaded", "err_remote_overloaded", ""),
        ("validation", "err_remote_validation", ""),
        ("generation", "err_remote_generation", "Berlin ist"),
        ("incomplete", "err_remote_incomplete", "Berlin ist"),
        ("unknown", "err_remote_unknown", "Berlin ist"),
        ("cut", "err_remote_cut", "Berlin ist"),
        ("malformed", "err_remote_malformed", "Berlin ist"),
        ("stall", "err_remote_timeout", ""),
    ],
)
async def test_every_error_form_has_its_key_and_the_next_request_works(
    standin: Standin, endpoint: Endpoint, ref: ModelRef, fail: str, key: str, partial: str
) -> None:
    standin.config.fail = fail
    standin.config.keepalive_s = 0.1  # keep-alives must not count as progress
    engine = TgiEngine(endpoint, first_token_timeout_s=0.6)
    text, events = await collect(engine, make_request(ref))
    failed = events[-1]
    assert isinstance(failed, Failed), events
    assert failed.key == key
    assert text == partial  # what was streamed before the failure stays
    message = t(failed.key, "de", **failed.params)
    assert "{" not in message and "Test-TGI" in message
    if fail == "stall":
        assert await wait_disconnect(standin) is not None  # the waiting request was closed, not left queued
    standin.config.fail = None
    text, events = await collect(engine, make_request(ref))
    assert text == REPLY and isinstance(events[-1], Finished)


async def test_validation_error_quotes_the_server(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.fail = "validation"
    _, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed)
    assert "temperature" in events[-1].params["detail"]


async def test_connection_refused(monkeypatch: pytest.MonkeyPatch, ref: ModelRef) -> None:
    monkeypatch.setenv("TEST_DEAD_URL", f"http://127.0.0.1:{free_port()}")
    endpoint = Endpoint(id="dead", type="tgi", url_env="TEST_DEAD_URL")
    _, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_unreachable"
    health = await TgiEngine(endpoint).health()
    assert health["ok"] is False and health["error"] == "err_remote_unreachable"


async def test_missing_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, ref: ModelRef) -> None:
    monkeypatch.delenv("TEST_UNSET_URL", raising=False)
    endpoint = Endpoint(id="nowhere", type="tgi", url_env="TEST_UNSET_URL")
    _, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_not_configured"
    assert events[-1].params["env"] == "TEST_UNSET_URL"


async def test_unauthorized_and_token_isolation(
    standin: Standin, endpoint: Endpoint, ref: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.config.api_key = "tgi-secret-key"
    monkeypatch.setenv("HF_TOKEN", "hf_must_never_leave_this_process")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")  # does not stop huggingface_hub 2.4.0 on its own
    _, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_unauthorized"
    assert events[-1].params["status"] == 401
    assert standin.requests and all("authorization" not in r.headers for r in standin.requests)

    standin.requests.clear()
    monkeypatch.setenv("TEST_TGI_TOKEN", "tgi-secret-key")
    text, _ = await collect(TgiEngine(endpoint), make_request(ref))
    assert text == REPLY
    assert {r.path for r in standin.requests} >= {"/info", "/"}
    assert all(r.headers.get("authorization") == "Bearer tgi-secret-key" for r in standin.requests)


async def test_no_token_means_no_authorization_header(
    standin: Standin, endpoint: Endpoint, ref: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_must_never_leave_this_process")
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", "hf_must_never_leave_this_process_either")
    engine = TgiEngine(endpoint)
    text, _ = await collect(engine, make_request(ref))
    await engine.health()
    assert await engine.count_tokens(ref, "Hallo") == 1  # POST /tokenize
    assert text == REPLY
    assert len(standin.requests) >= 5
    assert all("authorization" not in r.headers for r in standin.requests)


async def test_errors_never_carry_the_token(
    standin: Standin, endpoint: Endpoint, ref: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_TGI_TOKEN", "tok-visible-nowhere")
    standin.config.api_key = "a-different-key"
    _, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert isinstance(events[-1], Failed)
    assert "tok-visible-nowhere" not in json.dumps(events[-1].params) + t(events[-1].key, "en", **events[-1].params)


async def test_offline_mode_does_not_switch_remote_engines_off(
    standin: Standin, endpoint: Endpoint, ref: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # the library reads it once at import
    text, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert text == REPLY and isinstance(events[-1], Finished)


async def test_grammar_is_sent_as_tgi_json_grammar(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    schema = {"type": "object", "properties": {"antwort": {"type": "string"}, "sicher": {"type": "boolean"}}}
    text, _ = await collect(TgiEngine(endpoint), make_request(ref, schema=schema))
    assert standin.generation_calls()[-1].body["parameters"]["grammar"] == {"type": "json", "value": schema}
    assert json.loads(text) == {"antwort": "Berlin", "sicher": True}


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {"$defs": {"a": {"type": "object", "properties": {"x": {"type": "string"}}}}, "$ref": "#/$defs/a"},
    ],
)
async def test_a_schema_without_top_level_properties_is_refused_before_sending(
    standin: Standin, endpoint: Endpoint, ref: ModelRef, tgi_server: StandinServer, schema: dict[str, Any]
) -> None:
    """router/src/validation.rs refuses it ("Grammar must have a 'properties' field"); the engine says why first."""
    _, events = await collect(TgiEngine(endpoint), make_request(ref, schema=schema))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_schema_tgi_properties", events
    assert "properties" in t(events[-1].key, "en", **events[-1].params)
    assert standin.generation_calls() == []
    # what TGI itself answers to it (the stand-in is as strict)
    async with httpx.AsyncClient(base_url=tgi_server.url) as http:
        refused = await http.post(
            "/generate", json={"inputs": "Hallo", "parameters": {"grammar": {"type": "json", "value": schema}}}
        )
    assert refused.status_code == 422
    assert (
        refused.json()["error"]
        == "Input validation error: grammar is not valid: Grammar must have a 'properties' field"
    )


# ---- context ----------------------------------------------------------------------------------
async def test_too_long_prompt_is_refused_before_sending(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.max_total_tokens = 60
    standin.config.max_input_tokens = 59
    prompt = " ".join(["Wort"] * 50)
    with pytest.raises(EngineError) as refused:
        await drain(TgiEngine(endpoint), make_request(ref, prompt, max_new_tokens=20))
    assert refused.value.key == "err_context"
    assert refused.value.params == {"prompt_tokens": 50, "max_new_tokens": 20, "total": 70, "context": 60}
    assert standin.generation_calls() == []
    assert standin.calls("/tokenize")  # counted by the server's own tokenizer


async def test_a_prompt_that_surely_fits_is_not_counted_first(
    standin: Standin, endpoint: Endpoint, ref: ModelRef
) -> None:
    """One /tokenize round trip per answer was 8.5 % of the app's busy time with 64 visitors: a prompt that
    fits even at one token per UTF-8 byte is sent at once, and its length comes from TGI's last event."""
    standin.config.max_total_tokens = 4096
    _, events = await collect(TgiEngine(endpoint), make_request(ref, PROMPT, max_new_tokens=64))
    assert isinstance(events[-1], Finished)
    assert standin.calls("/tokenize") == []
    assert events[-1].stats.prompt_tokens == len(tokenize(PROMPT))  # input_length, the server's own count
    # near the limit the server still counts, and an exact count lets a prompt through that the bound would not
    prompt = " ".join(["Wort"] * 50)  # 50 tokens for the stand-in, 249 bytes
    standin.config.max_total_tokens = 100
    _, events = await collect(TgiEngine(endpoint), make_request(ref, prompt, max_new_tokens=40))
    assert isinstance(events[-1], Finished) and events[-1].stats.prompt_tokens == 50
    assert len(standin.calls("/tokenize")) == 1


async def test_context_estimate_when_tokenize_fails(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.tokenize_fails = True
    standin.config.max_total_tokens = 100
    _, events = await collect(TgiEngine(endpoint), make_request(ref, "x" * 400, max_new_tokens=10))
    assert isinstance(events[-1], Failed) and events[-1].key == "err_context"
    assert events[-1].params["prompt_tokens"] >= 100  # an estimate that errs high
    assert standin.generation_calls() == []
    text, _ = await collect(TgiEngine(endpoint), make_request(ref))  # short prompts still go through
    assert text == REPLY


# ---- Stop ----------------------------------------------------------------------------------------
async def test_stop_closes_the_connection_within_a_second(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.tokens_per_s = 4  # a slow server: Stop lands while waiting for the next token
    standin.config.endless = True
    request = make_request(ref, max_new_tokens=500)
    events: list[Event] = []
    stopped_at = 0.0
    async for event in TgiEngine(endpoint).stream(request):
        events.append(event)
        if isinstance(event, TextDelta) and not stopped_at:
            stopped_at = time.monotonic()
            request.cancel.set()
    ended_at = time.monotonic()
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stopped"
    assert ended_at - stopped_at < 0.5
    disconnect = await wait_disconnect(standin)
    assert disconnect is not None and disconnect.at - stopped_at < 1.0
    assert disconnect.tokens_sent < 5


async def test_closing_the_consumer_closes_the_connection(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.tokens_per_s = 4
    standin.config.endless = True
    stream = TgiEngine(endpoint).stream(make_request(ref, max_new_tokens=500))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    closed_at = time.monotonic()
    await stream.aclose()  # what Gradio does when the tab closes
    disconnect = await wait_disconnect(standin)
    assert disconnect is not None and disconnect.at - closed_at < 1.0


async def test_stop_while_waiting_for_the_first_token(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.fail = "stall"
    standin.config.keepalive_s = 5
    request = make_request(ref)
    engine = TgiEngine(endpoint)

    async def press_stop() -> float:
        while not standin.generation_calls():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        request.cancel.set()
        return time.monotonic()

    presser = asyncio.ensure_future(press_stop())
    _, events = await collect(engine, request)
    stopped_at = await presser
    assert isinstance(events[-1], Finished) and events[-1].stats.finish_reason == "stopped"
    disconnect = await wait_disconnect(standin)
    assert disconnect is not None and disconnect.at - stopped_at < 1.0


async def test_watchdog_converts_its_own_cancel_but_not_one_from_outside() -> None:
    import threading

    cancel = threading.Event()
    loop = asyncio.get_running_loop()
    watchdog = Watchdog(cancel, lambda: EngineError("err_remote_timeout", endpoint="x", seconds=0.1))
    try:
        with pytest.raises(EngineError):
            await watchdog.guard(asyncio.sleep(5), loop.time() + 0.1)
        loop.call_later(0.1, cancel.set)
        started = time.monotonic()
        with pytest.raises(Stopped):
            await watchdog.guard(asyncio.sleep(5), None)
        assert time.monotonic() - started < 0.5
    finally:
        watchdog.close()
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # no cancel request left behind

    async def victim() -> None:
        guard = Watchdog(threading.Event(), lambda: EngineError("x"))
        try:
            await guard.guard(asyncio.sleep(5), None)
        finally:
            guard.close()

    closing = asyncio.ensure_future(victim())
    await asyncio.sleep(0.05)
    closing.cancel()  # a closed tab: must stay a cancellation
    with pytest.raises(asyncio.CancelledError):
        await closing


# ---- health and status ------------------------------------------------------------------------
async def test_health(standin: Standin, endpoint: Endpoint) -> None:
    health = await TgiEngine(endpoint).health()
    assert health == {
        "ok": True,
        "model_id": "jphme/em_german_leo_mistral",
        "version": "3.3.6-native",
        "max_total_tokens": 4096,
        "error": None,
        "error_params": {},
    }
    standin.config.healthy = False
    health = await TgiEngine(endpoint).health()
    assert health["ok"] is False and health["error"] == "err_remote_unhealthy"
    assert health["error_params"]["status"] == 503


def test_remote_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLAYGROUND_REMOTE_TIMEOUT_S", raising=False)
    assert remote_timeout_s() == 60.0
    monkeypatch.setenv("PLAYGROUND_REMOTE_TIMEOUT_S", "2.5")
    assert remote_timeout_s() == 2.5
    for bad in ("0", "-1", "nan", "soon"):
        monkeypatch.setenv("PLAYGROUND_REMOTE_TIMEOUT_S", bad)
        assert remote_timeout_s() == 60.0


def test_redact_url() -> None:
    assert redact_url("https://user:pw@tgi.example:8443/base/?token=abc#x") == "https://tgi.example:8443/base/"
    assert redact_url(None) is None


def test_remote_message_keys_exist_in_both_languages() -> None:
    params = {"endpoint": "X", "env": "E", "status": 401, "detail": "d", "seconds": 1, "kind": "TGI"}
    for key in [k for k in MESSAGES if k.startswith("err_remote_")]:
        for lang in ("de", "en"):
            text = t(key, lang, **params)
            assert "{" not in text, (key, lang)


# ---- the stand-in itself follows the protocol ----------------------------------------------------
async def test_standin_follows_the_wire_protocol(standin: Standin, tgi_server: StandinServer) -> None:
    async with httpx.AsyncClient(base_url=tgi_server.url, timeout=10) as http:
        body = {"inputs": "Hallo Welt", "parameters": {"max_new_tokens": 3, "details": True}}
        raw = await http.post("/generate_stream", json=body)
        assert raw.headers["content-type"].startswith("text/event-stream")
        blocks = raw.text.split("\n\n")
        assert blocks[-1] == "" and all(b.startswith("data: {") for b in blocks[:-1])
        last = json.loads(blocks[-2][len("data: ") :])
        assert last["details"]["finish_reason"] == "length" and last["generated_text"] == "Berlin ist die"
        assert '"index":1,' in blocks[0]  # compact JSON
        assert "[DONE]" not in raw.text
        no_details = await http.post("/generate_stream", json={"inputs": "Hallo", "parameters": {}})
        assert json.loads(no_details.text.split("\n\n")[-2][6:])["details"] is None
        # errors: HTTP 200 + one event on the stream route, JSON with a status code on /generate
        bad = {"inputs": "Hallo", "parameters": {"top_p": 1.0}}
        streamed = await http.post("/generate_stream", json=bad)
        assert streamed.status_code == 200 and '"error_type":"validation"' in streamed.text
        plain = await http.post("/generate", json=bad)
        assert plain.status_code == 422 and plain.json()["error_type"] == "validation"
        # validation.rs (3.x): max_new_tokens counts up to 1024 for the length check
        roomy = await http.post("/generate", json={"inputs": "a b c", "parameters": {"max_new_tokens": 5000}})
        assert roomy.status_code == 200
        long_input = " ".join(["wort"] * 3100)
        too_long = await http.post("/generate", json={"inputs": long_input, "parameters": {"max_new_tokens": 5000}})
        assert too_long.status_code == 422
        expected = "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: 3100 `inputs` tokens and 1024"
        assert expected in too_long.text
        listed = await http.post("/", json={"inputs": "Hallo", "parameters": {"max_new_tokens": 2}})
        assert listed.json() == [{"generated_text": "HalloBerlin ist"}]  # return_full_text defaults to true on /
        alone = await http.post("/generate", json={"inputs": "Hallo", "parameters": {"max_new_tokens": 2}})
        assert alone.json() == {"generated_text": "Berlin ist"}
        assert (await http.post("/", content=b"{nope", headers={"content-type": "application/json"})).status_code == 400
        assert (await http.get("/health")).content == b""
        standin.config.api_key = "k"
        assert (await http.post("/generate", json=body)).content == b""  # bare 401
        assert (await http.post("/generate", json=body)).status_code == 401
        assert (await http.get("/info")).status_code == 200  # /info stays open


async def test_keep_alive_comments_are_not_text(
    standin: Standin, tgi_server: StandinServer, endpoint: Endpoint, ref: ModelRef
) -> None:
    standin.config.tokens_per_s = 8
    standin.config.keepalive_s = 0.03
    async with httpx.AsyncClient(base_url=tgi_server.url, timeout=10) as http:
        raw = await http.post("/generate_stream", json={"inputs": "Hallo", "parameters": {"max_new_tokens": 2}})
    assert ":\n\n" in raw.text  # TGI's keep-alive comment between events
    text, events = await collect(TgiEngine(endpoint), make_request(ref))
    assert text == REPLY and isinstance(events[-1], Finished)


async def test_standin_serves_many_concurrent_streams(standin: Standin, endpoint: Endpoint, ref: ModelRef) -> None:
    standin.config.tokens_per_s = 100
    engine = TgiEngine(endpoint)
    started = time.monotonic()
    results = await asyncio.gather(*(collect(engine, make_request(ref)) for _ in range(32)))
    assert all(text == REPLY for text, _ in results)
    assert time.monotonic() - started < 5


# ---- multi-turn history through TGI ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("family", "turn_text"),
    [
        ("em-german", "USER: Ein Buch hat 500 Seiten. ASSISTANT: Das Buch hat 150.000 Wörter.</s>USER: Und zwei?"),
        ("igel", "### Anweisung:\nEin Buch hat 500 Seiten.\n\n### Antwort:\nDas Buch hat 150.000 Wörter.\n\n"),
        (
            "leolm-chat",
            "<|im_start|>user\nEin Buch hat 500 Seiten.<|im_end|>\n"
            "<|im_start|>assistant\nDas Buch hat 150.000 Wörter.<|im_end|>\n<|im_start|>user\nUnd zwei?",
        ),
    ],
)
async def test_second_turn_reads_the_stored_answer_stripped(
    tgi_playground: tuple[Standin, Any], family: str, turn_text: str
) -> None:
    """The server streams " Das" (SentencePiece's leading space); the next prompt has the trained format's one
    space (EM German `ASSISTANT: Das …</s>USER:`), newline (IGEL) or none (ChatML) before it."""
    from components.api.common import answer_stream
    from components.vocabulary.prompts import Turn

    standin, playground = tgi_playground
    standin.config.reply = " Das Buch hat 150.000 Wörter. \n"
    model = next(r.id for r in playground.catalog.refs() if r.family.id == family and r.quant.id == "tgi")
    first = playground.prepare(model, "Ein Buch hat 500 Seiten.", max_new_tokens=32)
    info: dict[str, Any] = {}
    answer = ""
    async for so_far in answer_stream(playground, first, info, "de"):
        answer = so_far
    assert answer.startswith(" Das Buch") and "error" not in info  # stored as streamed
    second = playground.prepare(model, "Und zwei?", history=[Turn("Ein Buch hat 500 Seiten.", answer)])
    assert turn_text in second.raw_prompt
    assert playground.render_prompt(model, "Und zwei?", None, [Turn("Ein Buch hat 500 Seiten.", answer)]) == (
        second.raw_prompt
    )
    async for _ in answer_stream(playground, second, info, "de"):
        pass
    assert turn_text in standin.generation_calls()[-1].body["inputs"]  # what the model got
