"""The table of engine kinds: the engines the service makes, what availability asks, the servers variables add."""

from __future__ import annotations

import importlib
from typing import Any, get_args

import pytest

from components.engines.base import Engine
from components.engines.kinds import ENGINE_KINDS
from components.vocabulary.catalog import Endpoint, QuantKind, load_catalog


def test_every_row_names_an_engine() -> None:
    for row in ENGINE_KINDS.values():
        assert issubclass(getattr(importlib.import_module(row.module), row.cls), Engine), row.name
        assert (row.missing is None) == row.remote, row.name
    remote = {row.name for row in ENGINE_KINDS.values() if row.remote}
    assert remote == set(get_args(Endpoint.model_fields["type"].annotation)), "models.yaml's endpoint types"


@pytest.mark.parametrize("name", [row.name for row in ENGINE_KINDS.values() if row.env is not None])
def test_a_remote_kinds_variables_add_its_server_and_the_service_makes_its_engine(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.core.service import Playground
    from components.serving.endpoints import register_env_endpoints

    row = ENGINE_KINDS[name]
    assert row.env is not None
    for other in ENGINE_KINDS.values():
        if other.env is not None:
            monkeypatch.delenv(other.env.url_env, raising=False)
    from tests.tgi_standin import StandinServer

    # a TGI stand-in answers both kinds (TGI's native API and its OpenAI-compatible routes under /v1)
    with StandinServer() as server:
        monkeypatch.setenv(row.env.url_env, server.url + ("/v1" if name == "openai" else ""))
        catalog = load_catalog()
        assert register_env_endpoints(catalog) == [name]
    ref = next(r for r in catalog.refs() if r.quant.kind is QuantKind.remote)
    assert ref.quant.endpoint == name and ref.quant.label == "TGI"  # named by the server it found
    engine: Any = Playground(catalog).registry.engine_for(ref)
    # the build's replicas each get the kind's engine
    assert type(engine.engine_of(catalog.endpoints[name])).__name__ == row.cls


def test_the_service_makes_local_engines_from_the_table(catalog: Any) -> None:
    from components.core.service import Playground

    ref = catalog.default
    engine = Playground(catalog).registry.engine_for(ref)
    assert type(engine).__name__ == ENGINE_KINDS[ref.engine_kind].cls
