"""Remote endpoints from the environment: a build of the model each server serves, token isolation, no secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.core.service import EngineRegistry, Playground
from components.serving.endpoints import endpoint_health, register_env_endpoints
from components.vocabulary.catalog import DEFAULT_CATALOG, Catalog, QuantKind, load_catalog
from components.vocabulary.generation import Failed, Finished, TextDelta
from tests.conftest import free_port
from tests.tgi_standin import Standin, StandinServer

ENV = ("TGI_URL", "TGI_TOKEN", "OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_MODEL", "OPENAI_API_MODE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def german_variants(catalog: Catalog) -> list[str]:
    return [v.id for f in catalog.families for v in f.variants if not v.offline]


def test_nothing_is_added_without_urls() -> None:
    catalog = load_catalog()
    before = {r.id for r in catalog.refs()}
    assert register_env_endpoints(catalog) == []
    assert {r.id for r in catalog.refs()} == before
    assert catalog.endpoints == {}


def test_tgi_url_adds_a_build_of_the_model_its_server_serves_only(
    standin: Standin, tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TGI_URL", tgi_server.url)
    catalog = load_catalog()
    assert register_env_endpoints(catalog) == ["tgi"]
    endpoint = catalog.endpoints["tgi"]
    assert (endpoint.type, endpoint.url_env, endpoint.token_env) == ("tgi", "TGI_URL", "TGI_TOKEN")
    # the stand-in's /info reports jphme/em_german_leo_mistral: that variant gets a build, no other one does
    remote = [r for r in catalog.refs() if r.quant.kind is QuantKind.remote]
    assert [r.id for r in remote] == ["em-german-leo-mistral/tgi"]
    (ref,) = remote
    assert ref.quant.endpoint == "tgi" and ref.quant.display == "TGI" and ref.family.id == "em-german"
    for variant_id in german_variants(catalog):
        assert variant_id == "em-german-leo-mistral" or catalog.get(f"{variant_id}/tgi") is None, variant_id
    assert Playground(catalog).availability(ref).ok


def test_openai_base_url_with_model_and_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nobody listens yet
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
    monkeypatch.setenv("OPENAI_MODEL", "jphme/em_german_leo_mistral")
    monkeypatch.setenv("TGI_URL", f"http://127.0.0.1:{free_port()}")
    catalog = load_catalog()
    assert register_env_endpoints(catalog) == ["tgi", "openai"]
    # a server that does not answer gets no build (OPENAI_MODEL names the model of a server that answers)
    assert not [r for r in catalog.refs() if r.quant.kind is QuantKind.remote]
    assert catalog.endpoints["openai"].token() == "sk-local"
    assert catalog.endpoints["tgi"].token() is None


def test_hf_token_is_never_an_endpoint_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_private")
    monkeypatch.setenv("TGI_URL", "http://tgi.internal:8080")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://vllm.internal:8000")
    catalog = load_catalog()
    register_env_endpoints(catalog)
    assert catalog.endpoints["tgi"].token() is None
    assert catalog.endpoints["openai"].token() is None


def test_models_yaml_endpoints_keep_their_own_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    raw["endpoints"] = [{"id": "tgi", "type": "tgi", "url_env": "MY_TGI_URL", "token_env": "MY_TGI_TOKEN"}]
    raw["families"][1]["variants"][0]["quantizations"].append({"id": "tgi", "kind": "remote", "endpoint": "tgi"})
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("TGI_URL", "http://elsewhere:1")
    catalog = load_catalog(path)
    assert register_env_endpoints(catalog) == []
    assert catalog.endpoints["tgi"].url_env == "MY_TGI_URL"
    assert len([r for r in catalog.refs() if r.quant.endpoint == "tgi"]) == 1


async def test_endpoint_health_has_no_secrets(
    standin: Standin, tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    standin.config.api_key = "tgi-secret-123"
    monkeypatch.setenv("TGI_URL", f"http://user:pa55word@127.0.0.1:{tgi_server.port}/?api_key=query-secret")
    monkeypatch.setenv("TGI_TOKEN", "tgi-secret-123")
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nobody listens
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-shown")
    monkeypatch.setenv("HF_TOKEN", "hf_never_shown")
    catalog = load_catalog()
    register_env_endpoints(catalog)
    rows = await endpoint_health(catalog, EngineRegistry(catalog))
    by_id = {row["id"]: row for row in rows}
    tgi, openai = by_id["tgi"], by_id["openai"]
    assert tgi["ok"] is True and tgi["auth"] is True and tgi["configured"] is True
    assert tgi["url"] == f"http://127.0.0.1:{tgi_server.port}/"
    assert tgi["model_id"] == "jphme/em_german_leo_mistral" and tgi["max_total_tokens"] == 4096
    assert tgi["builds"] == 1 and tgi["build"] == "em-german-leo-mistral/tgi" and tgi["replica_state"] == "up"
    assert openai["waiting"] is True and openai["build"] is None
    assert openai["ok"] is False and openai["error"] == "err_remote_unreachable"
    dumped = json.dumps(rows)
    for secret in ("tgi-secret-123", "pa55word", "query-secret", "sk-never-shown", "hf_never_shown", "user:"):
        assert secret not in dumped
    # the health checks themselves carried exactly the endpoint's token, never HF_TOKEN
    assert standin.requests and all(r.headers.get("authorization") == "Bearer tgi-secret-123" for r in standin.requests)


async def test_unconfigured_endpoint_reports_its_variable(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    raw["endpoints"] = [{"id": "lab", "type": "openai", "url_env": "LAB_URL_NOT_SET", "label": "Labor"}]
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    (row,) = await endpoint_health(load_catalog(path))
    assert row["configured"] is False and row["ok"] is False
    assert row["error"] == "err_remote_not_configured" and row["error_params"]["env"] == "LAB_URL_NOT_SET"
    assert row["url"] is None and row["label"] == "Labor"


async def test_playground_streams_through_the_env_endpoint_without_hf_token(
    standin: Standin, tgi_server: StandinServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TGI_URL", tgi_server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_private")
    catalog = load_catalog()
    register_env_endpoints(catalog)
    playground = Playground(catalog)
    prepared = playground.prepare("em-german-leo-mistral/tgi", "Was ist die Hauptstadt von Deutschland?")
    events = [event async for event in playground.stream(prepared)]
    assert not any(isinstance(e, Failed) for e in events), events
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Berlin ist die Hauptstadt von Deutschland."
    assert isinstance(events[-1], Finished)
    (call,) = standin.generation_calls()
    assert call.body["inputs"] == prepared.raw_prompt
    assert call.body["inputs"].endswith("USER: Was ist die Hauptstadt von Deutschland? ASSISTANT:")
    assert all("authorization" not in r.headers for r in standin.requests)
