"""Shared test fixtures and the --slow switch (slow tests: real servers, a real browser)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False, help="also run slow tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def catalog():
    from components.vocabulary.catalog import load_catalog

    return load_catalog()


@pytest.fixture(scope="module")
def demo() -> Any:
    """The whole page as `python app.py` builds it (catalog from the environment), not launched."""
    import app

    return app.build_app(app.create_playground())


@pytest.fixture(scope="module")
def tgi_server() -> Iterator[Any]:
    """The TGI stand-in on loopback (tests/tgi_standin.py), one per test module."""
    from tests.tgi_standin import StandinServer

    with StandinServer() as running:
        yield running


@pytest.fixture
def standin(tgi_server: Any) -> Any:
    """The module's TGI stand-in, back to its normal behaviour."""
    tgi_server.standin.reset()
    return tgi_server.standin


@pytest.fixture(scope="module")
def client(live_app: Any) -> Iterator[Any]:
    """A gradio_client Client of the module's running app (its `live_app` fixture)."""
    from gradio_client import Client

    c = Client(live_app.url, verbose=False, ssl_verify=False)
    yield c
    c.close()


#: One TGI stand-in per prompt format, each serving one catalog model: EM German LeoLM Mistral (EM German's format),
#: instruct-igel-001 (IGEL's), LeoLM 7B chat (ChatML). A server is a build of the model it serves only.
FLEET_MODELS = ("jphme/em_german_leo_mistral", "philschmid/instruct-igel-001", "LeoLM/leo-hessianai-7b-chat")


class _AllConfigs:
    """The stand-ins' configs as one: a field set here is set on each; read, the first one's."""

    def __init__(self, fleet: StandinFleet) -> None:
        object.__setattr__(self, "_fleet", fleet)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fleet.standins[0].config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        for standin in self._fleet.standins:
            setattr(standin.config, name, value)


class StandinFleet:
    """Several TGI stand-ins (one per served model) seen as one: every request of all of them, in order; a reset or
    a config change for all of them."""

    def __init__(self, servers: list[Any]) -> None:
        self.servers = servers
        self.standins = [s.standin for s in servers]

    @property
    def standin(self) -> StandinFleet:
        """Itself: it stands for a StandinServer's `standin` too."""
        return self

    @property
    def url(self) -> str:
        """TGI_URL's value for all of them."""
        return ",".join(s.url for s in self.servers)

    @property
    def config(self) -> Any:
        return _AllConfigs(self)

    def reset(self, **changes: Any) -> None:
        for standin in self.standins:
            standin.reset(**changes)

    def calls(self, *paths: str) -> list[Any]:
        return sorted((r for s in self.standins for r in s.calls(*paths)), key=lambda r: r.at)

    def generation_calls(self) -> list[Any]:
        return sorted((r for s in self.standins for r in s.generation_calls()), key=lambda r: r.at)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.standins[0], name)


@pytest.fixture(scope="module")
def tgi_fleet() -> Iterator[StandinFleet]:
    """Three TGI stand-ins on loopback, one per FLEET_MODELS entry, one set per test module."""
    from tests.tgi_standin import StandinConfig, StandinServer

    servers = [StandinServer(StandinConfig(model_id=model)).start() for model in FLEET_MODELS]
    try:
        yield StandinFleet(servers)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def tgi_playground(tgi_fleet: StandinFleet, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(stand-ins, Playground) with TGI_URL naming the three stand-ins of FLEET_MODELS: EM German LeoLM Mistral,
    instruct-igel-001 and LeoLM 7B chat each get a `tgi` build (their server's), no other variant does."""
    from components.core.service import Playground
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import load_catalog

    tgi_fleet.reset()
    monkeypatch.setenv("TGI_URL", tgi_fleet.url)
    monkeypatch.delenv("TGI_TOKEN", raising=False)
    fresh = load_catalog()
    register_env_endpoints(fresh)
    return tgi_fleet, Playground(fresh)
