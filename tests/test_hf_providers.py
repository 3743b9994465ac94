"""Hugging Face Inference Providers (the router) and Inference Endpoints: builds, request form, and where a token goes.

The router cannot be reached from here: tests/hf_router_standin.py speaks its documented OpenAI form.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from components.core.service import Playground
from components.engines.hf_providers import ROUTER_URL
from components.serving.endpoints import register_env_endpoints
from components.serving.hf_providers import register_provider_models, signin_offered
from components.vocabulary.catalog import load_catalog
from components.vocabulary.generation import Failed, Finished, InputError, PromptSent, TextDelta
from components.vocabulary.messages import t
from tests.hf_router_standin import DOCUMENTED, RouterStandin
from tests.vllm_standin import LoopbackServer, VllmStandin

CANARY = "hf_oauth_CANARYvisitor0123456789abcdef"
OPERATOR = "hf_operator_token"
REPLY = "Berlin ist die Hauptstadt von Deutschland."


@pytest.fixture(scope="module")
def router_server() -> Iterator[LoopbackServer]:
    with LoopbackServer(RouterStandin()) as server:
        yield server


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[LoopbackServer]:
    with LoopbackServer(VllmStandin()) as server:
        yield server


@pytest.fixture
def router(router_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> RouterStandin:
    standin: RouterStandin = router_server.standin
    standin.reset()
    standin.tokens = {OPERATOR, CANARY}
    monkeypatch.setenv("HF_PROVIDERS_URL", router_server.url + "/v1")
    monkeypatch.setenv("HF_PROVIDERS_MODELS", "em-german-leo-mistral:featherless-ai,leo-hessianai-13b-chat")
    monkeypatch.delenv("HF_PROVIDERS_TOKEN", raising=False)
    for name in ("TGI_URL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_API_MODE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return standin


def playground() -> Playground:
    catalog = load_catalog()
    register_env_endpoints(catalog)
    register_provider_models(catalog)
    return Playground(catalog)


def signed_in_demo(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app with "Sign in with Hugging Face" on. Off a Space Gradio mocks the login with the machine's own login
    and asks the Hub who that is: stand in for it."""
    import app

    monkeypatch.setenv("PLAYGROUND_HF_SIGNIN", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_this_machines_login")
    mocked = {"access_token": "mock", "token_type": "bearer", "scope": "openid", "expires_at": 2**40, "userinfo": {}}
    monkeypatch.setattr("gradio.oauth._get_mocked_oauth_info", lambda: mocked)
    return app.build_app(app.create_playground())


async def answer(play: Playground, model: str, credential: str | None = None, **settings: Any) -> tuple[str, list[Any]]:
    prepared = play.prepare(model, "Was ist die Hauptstadt?", credential=credential, **settings)
    events = [event async for event in play.stream(prepared)]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events


def test_builds_come_from_hf_providers_models(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(
        "HF_PROVIDERS_MODELS",
        "em-german-leo-mistral:featherless-ai, em-german-leo-mistral:cheapest,leo-hessianai-13b-chat,"
        "no-such-variant,em-german-7b:Bad Provider!,smollm2-135m-instruct",
    )
    catalog = load_catalog()
    with caplog.at_level(logging.WARNING):
        added = register_provider_models(catalog)
    assert added == [
        "em-german-leo-mistral/hf-featherless-ai",
        "em-german-leo-mistral/hf-cheapest",
        "leo-hessianai-13b-chat/hf-auto",
    ]
    served = {ref.id: ref.quant.served_model for ref in catalog.refs() if ref.quant.endpoint == "hf-providers"}
    assert served == {
        "em-german-leo-mistral/hf-featherless-ai": "jphme/em_german_leo_mistral:featherless-ai",
        "em-german-leo-mistral/hf-cheapest": "jphme/em_german_leo_mistral:cheapest",
        "leo-hessianai-13b-chat/hf-auto": "LeoLM/leo-hessianai-13b-chat",
    }
    # each family keeps its variant: the build is the catalog's EM German, not "a model on the router"
    assert catalog.get("em-german-leo-mistral/hf-featherless-ai").family.id == "em-german"
    left_out = " ".join(r.getMessage() for r in caplog.records)
    assert "no-such-variant" in left_out and "Bad Provider!" in left_out and "smollm2-135m-instruct" in left_out
    endpoint = catalog.endpoints["hf-providers"]
    monkeypatch.delenv("HF_PROVIDERS_URL", raising=False)
    assert endpoint.url() == ROUTER_URL and endpoint.token_env == "HF_PROVIDERS_TOKEN"
    monkeypatch.delenv("HF_PROVIDERS_MODELS")
    assert register_provider_models(load_catalog()) == []


async def test_the_router_gets_its_documented_form_with_the_operators_token(
    router: RouterStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_PROVIDERS_TOKEN", OPERATOR)
    monkeypatch.setenv("HF_TOKEN", "hf_download_token_never_to_the_router")
    play = playground()
    text, events = await answer(play, "em-german-leo-mistral/hf-featherless-ai", temperature=0.6, top_k=40, seed=3)
    assert text == REPLY and isinstance(events[-1], Finished), events
    (call,) = router.generation_calls()
    assert call.path == "/v1/chat/completions" and call.headers["authorization"] == f"Bearer {OPERATOR}"
    body = call.body
    assert body["model"] == "jphme/em_german_leo_mistral:featherless-ai" and set(body) <= DOCUMENTED
    assert body["messages"][-1] == {"role": "user", "content": "Was ist die Hauptstadt?"} and body["seed"] == 3
    # the provider applies the model's template: the page says that the raw prompt shown is the card's format
    (sent,) = [e for e in events if isinstance(e, PromptSent)]
    assert sent.prompt is None and sent.note == "note_server_template"


async def test_a_signed_in_visitors_token_goes_to_the_router_only(
    router: RouterStandin,
    vllm_server: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """The canary (a visitor's OAuth token) shows up in the router's Authorization header and nowhere else: not at
    another endpoint, not in the logs, not in the conversation log, not in the request's repr."""
    vllm: VllmStandin = vllm_server.standin
    vllm.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", vllm_server.url + "/v1")
    monkeypatch.setenv("HF_PROVIDERS_TOKEN", OPERATOR)
    conversation_log = tmp_path / "conversations.jsonl"
    monkeypatch.setenv("PLAYGROUND_CONVERSATION_LOG", str(conversation_log))
    monkeypatch.setenv("PLAYGROUND_LOG_PROMPTS", "1")  # even with prompts logged
    play = playground()
    with caplog.at_level(logging.DEBUG):
        text, events = await answer(play, "leo-hessianai-13b-chat/hf-auto", credential=CANARY)
        assert text == REPLY and isinstance(events[-1], Finished), events
        text, events = await answer(play, "em-german-leo-mistral/openai", credential=CANARY)
        assert text == REPLY and isinstance(events[-1], Finished), events
        prepared = play.prepare("leo-hessianai-13b-chat/hf-auto", "Hallo", credential=CANARY)
        assert CANARY not in repr(prepared.request) and CANARY not in repr(prepared)
    (call,) = router.generation_calls()
    assert call.headers["authorization"] == f"Bearer {CANARY}"  # the visitor's, not the operator's
    assert all("authorization" not in r.headers for r in vllm.requests)  # the vLLM server got no token at all
    assert vllm.generation_calls(), "the vLLM build was asked"
    assert CANARY not in caplog.text
    from components.logs.logging_setup import conversation_log as current_log

    written = current_log()
    assert written is not None and written.flush()
    logged = conversation_log.read_text()
    assert "Was ist die Hauptstadt?" in logged and CANARY not in logged


async def test_without_a_token_the_visitor_is_asked_to_sign_in(
    router: RouterStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_download_token_never_to_the_router")  # not the router's token
    _, events = await answer(playground(), "em-german-leo-mistral/hf-featherless-ai")
    final = events[-1]
    assert isinstance(final, Failed) and final.key == "err_providers_signin", events
    de, en = t(final.key, "de", **final.params), t(final.key, "en", **final.params)
    assert "Mit Hugging Face anmelden" in de and "Sign in with Hugging Face" in en and "HF_PROVIDERS_TOKEN" in en
    assert router.requests == []  # nothing was sent, HF_TOKEN least of all


async def test_the_routers_refusals_are_the_apps_messages(
    router: RouterStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_PROVIDERS_TOKEN", "hf_revoked")
    _, events = await answer(playground(), "em-german-leo-mistral/hf-featherless-ai")
    assert isinstance(events[-1], Failed) and events[-1].key == "err_remote_unauthorized"
    assert events[-1].params["env"] == "HF_PROVIDERS_TOKEN"
    monkeypatch.setenv("HF_PROVIDERS_TOKEN", OPERATOR)
    router.out_of_credits = True
    _, events = await answer(playground(), "em-german-leo-mistral/hf-featherless-ai")
    final = events[-1]
    assert isinstance(final, Failed) and final.key == "err_remote_payment", events
    assert "402" in t(final.key, "de", **final.params) and "credits" in t(final.key, "en", **final.params)


async def test_an_inference_endpoint_is_an_openai_server_with_its_own_token(
    vllm_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Inference Endpoint URL (vLLM or SGLang inside) is OPENAI_BASE_URL; its token is OPENAI_API_KEY (or a
    models.yaml endpoint's token_env). HF_TOKEN never goes there unless configured as that token."""
    vllm: VllmStandin = vllm_server.standin
    vllm.reset(api_key="hf_endpoint_token")
    for name in ("TGI_URL", "OPENAI_MODEL", "OPENAI_API_MODE", "HF_PROVIDERS_MODELS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", vllm_server.url + "/v1")
    monkeypatch.setenv("HF_TOKEN", "hf_endpoint_token")  # the same value, but not configured for the endpoint
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # without its own token the server refuses to say what it serves: no build is bound to it, and HF_TOKEN was
    # not offered to it while asking
    play = playground()
    assert play.catalog.get("em-german-leo-mistral/openai") is None
    with pytest.raises(InputError):
        await answer(play, "em-german-leo-mistral/openai", credential=CANARY)
    assert vllm.requests and all("authorization" not in r.headers for r in vllm.requests)
    monkeypatch.setenv("OPENAI_API_KEY", "hf_endpoint_token")
    vllm.requests.clear()
    text, events = await answer(playground(), "em-german-leo-mistral/openai", credential=CANARY)
    assert text == REPLY and isinstance(events[-1], Finished), events
    assert {r.headers.get("authorization") for r in vllm.calls("/v1/completions")} == {"Bearer hf_endpoint_token"}


def test_signin_is_offered_only_with_a_router_build_and_oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OAUTH_CLIENT_ID", raising=False)
    monkeypatch.delenv("PLAYGROUND_HF_SIGNIN", raising=False)
    monkeypatch.setenv("HF_PROVIDERS_MODELS", "em-german-leo-mistral")
    catalog = load_catalog()
    register_provider_models(catalog)
    assert not signin_offered(catalog)
    monkeypatch.setenv("PLAYGROUND_HF_SIGNIN", "1")  # locally: only with this machine's login (Gradio's mock)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert not signin_offered(catalog)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: "hf_this_machines_login")
    assert signin_offered(catalog)
    monkeypatch.delenv("PLAYGROUND_HF_SIGNIN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    monkeypatch.setenv("OAUTH_CLIENT_ID", "space-client")  # what hf_oauth: true sets on a Space
    assert signin_offered(catalog)
    assert not signin_offered(load_catalog())  # no providers build: nothing to sign in for


async def test_the_chat_tab_sends_the_signed_in_token_and_keeps_it_out_of_the_page(
    router: RouterStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gradio injects the visitor's token (its own special_args, from the session Gradio's OAuth fills) into the chat's
    handler; the service passes it on; the conversation, the browser-kept chat and the page config never hold it."""
    import gradio as gr
    from gradio.helpers import special_args

    from components.core.saved_chat import pack

    demo = signed_in_demo(monkeypatch)
    assert any(isinstance(block, gr.LoginButton) for block in demo.blocks.values())
    handlers = [
        f.fn for f in demo.fns.values() if f.fn is not None and "oauth_token" in inspect.signature(f.fn).parameters
    ]
    assert handlers, "the chat's send handler takes the visitor's token"
    handler = handlers[0]
    session = {"oauth_info": {"access_token": CANARY, "scope": "openid profile inference-api", "expires_at": 2**40}}
    visitor = SimpleNamespace(session=session, session_hash="visitor-1", headers={}, client=None)
    sampling = [0.6, 0.95, 40, 64, 1.1, None, 0, ""]  # SETTING_NAMES order
    inputs, *_ = special_args(
        handler, ["Was ist die Hauptstadt?", [], "leo-hessianai-13b-chat", "hf-auto", "", "de", *sampling], visitor
    )
    assert isinstance(inputs[1], gr.OAuthToken) and inputs[1].token == CANARY
    inputs[0] = None  # the rate limit and session helpers take the page's gr.Request; none here
    updates = [update async for update in handler(*inputs)]
    (call,) = router.generation_calls()
    assert call.headers["authorization"] == f"Bearer {CANARY}"
    final_conv = [u for u in updates if isinstance(u, list)][-1][1]
    assert final_conv[-1]["assistant"] == REPLY
    kept = [u[-1] for u in updates if isinstance(u, list) and isinstance(u[-1], dict)]
    shown = json.dumps([final_conv, kept, pack(final_conv, "leo-hessianai-13b-chat/hf-auto", "", sampling)])
    assert CANARY not in shown
    assert CANARY not in json.dumps(demo.config, default=str)


def test_the_new_messages_exist_in_both_languages() -> None:
    from components.vocabulary.messages import MESSAGES

    keys = ("err_remote_model_missing", "err_remote_payment", "err_providers_signin", "signin_button", "signout_button")
    for key in (*keys, "signin_note"):
        entry = MESSAGES[key]
        assert entry["de"] and entry["en"] and entry["de"] != entry["en"], key
    assert MESSAGES["signin_button"]["de"] == "Mit Hugging Face anmelden"
    assert "{}" in MESSAGES["signout_button"]["de"] and "{}" in MESSAGES["signout_button"]["en"]  # the user name
    assert "für" in MESSAGES["err_remote_payment"]["de"] and "gespeichert" in MESSAGES["signin_note"]["de"]


async def test_a_compare_round_sends_the_visitors_token_to_the_router_and_keeps_it_out_of_the_round(
    router: RouterStandin, vllm_server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compare tab (components/ui/compare.py send_prompt takes gr.OAuthToken): each pane's request carries the
    credential, only the router's pane sends it, and the round, its exports and its vote record never hold it."""
    import inspect as _inspect

    from components.features.compare import (
        PaneSpec,
        export_json,
        export_markdown,
        new_round,
        prepare_panes,
        stream_round,
        vote_record,
    )
    from components.ui import compare as compare_ui

    assert "oauth_token: gr.OAuthToken | None" in _inspect.getsource(compare_ui)
    vllm: VllmStandin = vllm_server.standin
    vllm.reset()
    monkeypatch.setenv("OPENAI_BASE_URL", vllm_server.url + "/v1")
    play = playground()
    specs = [PaneSpec("leo-hessianai-13b-chat/hf-auto", None, {}), PaneSpec("em-german-leo-mistral/openai", None, {})]
    prepared = prepare_panes(play, specs, "Was ist die Hauptstadt?", None, "de", CANARY)
    round_ = new_round(play, specs, "Was ist die Hauptstadt?", prepared, "de", {}, False)
    async for _ in stream_round(play, round_, prepared, None):
        pass
    assert all(p.answered for p in round_.panes), round_.to_dict()
    (call,) = router.generation_calls()
    assert call.headers["authorization"] == f"Bearer {CANARY}"
    assert all("authorization" not in r.headers for r in vllm.requests)
    kept = [json.dumps(round_.to_dict()), export_json([round_]), export_markdown([round_])]
    kept.append(json.dumps(vote_record(round_, "tie", "viewer")))
    assert not any(CANARY in text for text in kept)


@pytest.mark.parametrize("tab", ["components.ui.retrieval", "components.ui.structured"])
async def test_the_sources_and_json_tabs_send_the_signed_in_token_to_the_router_only(
    router: RouterStandin, monkeypatch: pytest.MonkeyPatch, tab: str
) -> None:
    """The sources tab and the JSON tab take the visitor's token as the chat does (Gradio injects gr.OAuthToken):
    the router sees that visitor's token, not the operator's, and what the tab shows never holds it."""
    import gradio as gr
    from gradio.helpers import special_args

    monkeypatch.setenv("HF_PROVIDERS_TOKEN", OPERATOR)
    demo = signed_in_demo(monkeypatch)
    (handler,) = {  # one handler, wired to each of the tab's triggers
        f.fn
        for f in demo.fns.values()
        if f.fn is not None
        and getattr(f.fn, "__module__", "") == tab
        and getattr(f.fn, "__name__", "") == "respond"
        and "oauth_token" in inspect.signature(f.fn).parameters
    }
    session = {"oauth_info": {"access_token": CANARY, "scope": "openid profile inference-api", "expires_at": 2**40}}
    visitor = SimpleNamespace(session=session, session_hash="visitor-2", headers={}, client=None)
    sampling = [0.6, 0.95, 40, 64, 1.1, None, 0, ""]  # SETTING_NAMES order
    if tab.endswith("retrieval"):
        sources = [{"text": "Berlin ist seit 1990 die Hauptstadt.", "metadata": [["titel", "Hauptstadt"]]}]
        values = ["Was ist die Hauptstadt?", sources, "leo-hessianai-13b-chat", "hf-auto", "", "de", *sampling]
    else:
        schema = json.dumps({"type": "object", "properties": {"antwort": {"type": "string"}}})
        values = ["Was ist die Hauptstadt?", schema, "leo-hessianai-13b-chat", "hf-auto", "", "de", *sampling]
    inputs, *_ = special_args(handler, values, visitor)
    assert isinstance(inputs[1], gr.OAuthToken) and inputs[1].token == CANARY
    inputs[0] = None  # the rate limit and session helpers take the page's gr.Request; none here
    updates = [update async for update in handler(*inputs)]
    calls = router.generation_calls()
    assert calls, updates
    assert {call.headers["authorization"] for call in calls} == {f"Bearer {CANARY}"}
    assert CANARY not in json.dumps(updates, default=str)


async def test_a_blind_session_sends_the_signed_in_token_to_the_router_only(
    router: RouterStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blind session's Start takes the visitor's token as the chat does: both panes of its round ask the router
    with that visitor's token, and the round shown (and later voted) never holds it."""
    import gradio as gr
    from gradio.helpers import special_args

    from components.features.batch import prompt_sets

    monkeypatch.setenv("HF_PROVIDERS_TOKEN", OPERATOR)
    demo = signed_in_demo(monkeypatch)
    (start,) = {
        f.fn for f in demo.fns.values() if f.fn is not None and getattr(f.fn, "__name__", "") == "start_session"
    }
    session = {"oauth_info": {"access_token": CANARY, "scope": "openid profile inference-api", "expires_at": 2**40}}
    visitor = SimpleNamespace(session=session, session_hash="visitor-3", headers={}, client=None)
    models = ["em-german-leo-mistral/hf-featherless-ai", "leo-hessianai-13b-chat/hf-auto"]
    values = ["de", next(iter(prompt_sets())), None, 1, models, 32]
    inputs, *_ = special_args(start, values, visitor)
    token_at = next(i for i, v in enumerate(inputs) if isinstance(v, gr.OAuthToken))
    assert inputs[token_at].token == CANARY
    inputs[token_at - 1] = None  # the page's gr.Request: none here
    updates = [update async for update in start(*inputs)]
    calls = router.generation_calls()
    assert len(calls) == 2, updates
    assert {call.headers["authorization"] for call in calls} == {f"Bearer {CANARY}"}
    assert CANARY not in json.dumps(updates, default=str)
