"""Hub downloads: progress reaches the stream as Status events, failures and offline mode get messages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from huggingface_hub.errors import LocalEntryNotFoundError

from components.core import availability
from components.engines import hub
from components.vocabulary.generation import EngineError, Status
from components.vocabulary.messages import t


def fake_download(tmp_path: Path, chunks: int = 4, fail: bool = False):
    """Stands in for huggingface_hub.hf_hub_download: drives the given tqdm_class like the real one."""
    calls: list[dict] = []

    def download(repo_id: str, filename: str, token=None, tqdm_class=None, **kwargs) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, "token": token})
        if fail:  # what hf_hub_download raises without a network and without the file in the cache
            raise LocalEntryNotFoundError(
                "An error happened while trying to locate the file on the Hub and we cannot find the requested "
                "files in the local cache. Please check your connection and try again or make sure your Internet "
                "connection"
            )
        bar = tqdm_class(total=chunks * 1_000_000, unit="B")
        for _ in range(chunks):
            bar.update(1_000_000)
            import time

            time.sleep(0.6)  # progress is reported at most twice a second
        bar.close()
        path = tmp_path / filename
        path.write_bytes(b"GGUF")
        return str(path)

    return download, calls


async def test_progress_arrives_as_status(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub

    download, calls = fake_download(tmp_path)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "cached_file", lambda repo, name: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    seen: list[Status] = []
    path = await hub.download_file("org/model-GGUF", "m.Q4_K_M.gguf", token="hf_secret", progress=seen.append)
    assert path.read_bytes() == b"GGUF"
    assert calls == [{"repo_id": "org/model-GGUF", "filename": "m.Q4_K_M.gguf", "token": "hf_secret"}]
    assert seen and all(s.key == "status_downloading" for s in seen)
    assert seen[-1].params["percent"] == 100 and seen[-1].params["total_mb"] == 4
    assert all("hf_secret" not in str(s.params) for s in seen)


async def test_download_failure_is_a_message(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub

    download, _ = fake_download(tmp_path, fail=True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(hub, "cached_file", lambda repo, name: None)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(EngineError) as err:
        await hub.download_file("org/model-GGUF", "m.gguf", token=None, progress=lambda s: None)
    # huggingface_hub's English (cut mid-sentence) never reaches the page: a message of our own, in both languages
    assert err.value.key == "err_download_network"
    assert "connection" not in str(err.value.params)
    for lang in ("de", "en"):
        text = t(err.value.key, lang, **err.value.params)
        assert "m.gguf" in text and text.endswith(".") and "{" not in text


async def test_offline_mode_refuses_download(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "cached_file", lambda repo, name: None)
    with pytest.raises(EngineError) as err:
        await hub.download_file("org/m", "m.gguf", token=None, progress=lambda s: None)
    assert err.value.key == "err_download_offline_mode"


def test_offline_mode_marks_uncached_builds_as_needing_a_download(monkeypatch, catalog) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ref = catalog.get("em-german-leo-mistral/gguf-q4_k_m")
    avail = availability.check(ref, budget_gb=20)
    assert not avail.ok and avail.key == "why_offline"
    assert avail.state == availability.DOWNLOAD and avail.hub == availability.HUB_OFFLINE
    assert avail.download_gb == pytest.approx(4.37)
    assert availability.check(catalog.default).ok  # the packaged model needs no download


def test_too_big_for_this_machine(catalog) -> None:
    avail = availability.check(catalog.get("em-german-70b/gguf-q4_k_m"), budget_gb=16)
    assert not avail.ok and avail.key == "why_too_big" and avail.params["need"] == pytest.approx(41.42)


async def test_engine_streams_download_status(monkeypatch, tmp_path: Path, catalog) -> None:
    """The llama.cpp engine forwards download progress while it waits for the file."""
    from components.core.service import Playground
    from components.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine()

    async def resolve(model, progress):
        for pct in (10, 60, 100):
            progress(Status("status_downloading", {"file": "x.gguf", "percent": pct, "done_mb": pct, "total_mb": 100}))
            await asyncio.sleep(0.01)
        raise EngineError("err_download", file="x.gguf", repo="org/x", detail="test stops here")

    monkeypatch.setattr(engine, "_resolve_path", resolve)
    pg = Playground(catalog)
    prepared = pg.prepare(catalog.default.id, "Hallo")
    events = [e async for e in engine.stream(prepared.request)]
    percents = [e.params["percent"] for e in events if getattr(e, "key", "") == "status_downloading"]
    assert percents == [10, 60, 100]
    assert events[-1].key == "err_download"
