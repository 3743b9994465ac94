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


@pytest.fixture
def tgi_playground(tgi_server: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(stand-in, Playground) with TGI_URL pointing at the stand-in: every German variant gets a `tgi` build."""
    from components.core.service import Playground
    from components.serving.endpoints import register_env_endpoints
    from components.vocabulary.catalog import load_catalog

    tgi_server.standin.reset()
    monkeypatch.setenv("TGI_URL", tgi_server.url)
    monkeypatch.delenv("TGI_TOKEN", raising=False)
    fresh = load_catalog()
    register_env_endpoints(fresh)
    return tgi_server.standin, Playground(fresh)
