"""Starts the real app (`python app.py`) in a subprocess on a free port, for slow tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class AppServerError(RuntimeError):
    """The app did not come up (it exited or did not answer in time); carries its log tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serves(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class RunningApp:
    """A started app: its base URL, process and log file (stdout and stderr together)."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


@contextlib.contextmanager
def running_app(
    env: Mapping[str, str] | None = None, timeout_s: float = 120.0, port: int | None = None
) -> Iterator[RunningApp]:
    """Runs `python app.py` on a free loopback port until it serves; terminates it afterwards.

    `env` adds or overrides environment variables of the app process. Its output goes to a
    temporary log file whose tail is shown when the app fails to start.
    """
    port = port or free_port()
    child_env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.NamedTemporaryFile("w+b", prefix="app-server-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py")],
            cwd=ROOT,
            env=child_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    app = RunningApp(url, proc, log_path)

    def tail() -> str:
        return app.log()[-4000:]

    try:
        deadline = time.monotonic() + timeout_s
        while not _serves(url):
            if proc.poll() is not None:
                raise AppServerError(f"app.py exited with {proc.returncode} before serving:\n{tail()}")
            if time.monotonic() > deadline:
                raise AppServerError(f"app.py did not serve {url} within {timeout_s:.0f} s:\n{tail()}")
            time.sleep(0.25)
        yield app
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)
        with contextlib.suppress(OSError):
            log_path.unlink()


@contextlib.contextmanager
def app_server(env: Mapping[str, str] | None = None, timeout_s: float = 120.0) -> Iterator[str]:
    """Like running_app, yielding only the base URL."""
    with running_app(env, timeout_s) as app:
        yield app.url


def app_server_fixture(
    env: Mapping[str, str] | None = None, scope: str = "module"
) -> Callable[..., Iterator[RunningApp]]:
    """A pytest fixture factory: `live_app = app_server_fixture()` in a test module gives a RunningApp."""
    import pytest

    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def _fixture() -> Iterator[RunningApp]:
        with running_app(env) as app:
            yield app

    return _fixture
