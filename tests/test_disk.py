"""Model downloads within the operator's bounds (components/engines/disk.py): only allowed builds, a free-disk check,
and a disk budget that removes the least recently used downloaded model from the Hub cache, never a loaded one.

Nothing reaches the real Hub: hf_hub_download / snapshot_download are replaced by recorders, and the Hub cache is a
folder the test makes (HF_HUB_CACHE) with repositories laid out as huggingface_hub lays them out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.core import availability
from components.core.service import Playground
from components.engines import disk, hub
from components.engines.model_cache import ModelCache
from components.vocabulary.generation import EngineError, Failed, InputError
from components.vocabulary.messages import t

EM_GGUF = "em-german-leo-mistral/gguf-q4_k_m"
EM_INT8 = "em-german-leo-mistral/int8"
GB = disk.GB


@pytest.fixture(autouse=True)
def fresh_disk_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No installed policy, nothing held or reserved; the bounds' variables unset."""
    for name in ("PLAYGROUND_ALLOWED_DOWNLOADS", "PLAYGROUND_MODEL_DISK_GB", "PLAYGROUND_DISK_MARGIN_GB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(disk, "_held", Counter())
    monkeypatch.setattr(disk, "_last_used", {})
    monkeypatch.setattr(disk, "_reserved", {})
    disk.install(None)
    yield
    disk.install(None)


@pytest.fixture
def recording_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, Any]]:
    """hf_hub_download and snapshot_download replaced by recorders; nothing is in the Hub cache."""
    import huggingface_hub

    calls: list[tuple[str, Any]] = []

    def download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append(("hf_hub_download", repo_id))
        path = tmp_path / "downloaded" / filename
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"GGUF")
        return str(path)

    def snapshot(repo_id: str, **kwargs: Any) -> str:
        calls.append(("snapshot_download", repo_id))
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    monkeypatch.setattr(hub, "cached_file", lambda repo, name: None)
    monkeypatch.setattr(availability, "cached_file", lambda repo, name: None)
    monkeypatch.setattr(availability, "default_budget_gb", lambda: 100.0)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def reachable_hub() -> availability.HubProbe:
    return availability.HubProbe(probe=lambda endpoint: True)


def request_for(catalog: Any, model_id: str) -> Any:
    """A request for `model_id` that skips the service's checks, as a caller reaching the engine directly would."""
    prepared = Playground(catalog).prepare(catalog.default.id, "Hallo")
    return dataclasses.replace(prepared.request, model=catalog.get(model_id))


async def llama_events(catalog: Any, model_id: str) -> list[Any]:
    from components.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(cache=ModelCache(budget_gb=100.0))
    return [event async for event in engine.stream(request_for(catalog, model_id))]


# ---- the policy ------------------------------------------------------------------------------------------------
def test_the_public_profile_allows_no_download_and_explicit_variables_win(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.serving.launch import install_download_policy

    assert disk.policy_from_env(public=False) == disk.DownloadPolicy(None, None, 1.0)
    public = disk.policy_from_env(public=True)
    assert public.allowed == frozenset() and public.budget_gb == 30.0
    monkeypatch.setenv("PLAYGROUND_ALLOWED_DOWNLOADS", f" {EM_GGUF} , em-german-7b/gguf-q4_k_m")
    monkeypatch.setenv("PLAYGROUND_MODEL_DISK_GB", "off")
    monkeypatch.setenv("PLAYGROUND_DISK_MARGIN_GB", "2.5")
    explicit = disk.policy_from_env(public=True)
    assert explicit.allowed == {EM_GGUF, "em-german-7b/gguf-q4_k_m"} and explicit.budget_gb is None
    assert explicit.margin_gb == 2.5
    monkeypatch.setenv("PLAYGROUND_ALLOWED_DOWNLOADS", "*")
    assert disk.policy_from_env(public=True).allowed is None
    monkeypatch.setenv("PLAYGROUND_ALLOWED_DOWNLOADS", "none")
    assert disk.policy_from_env(public=False).allowed == frozenset()
    monkeypatch.delenv("PLAYGROUND_ALLOWED_DOWNLOADS")
    monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
    assert install_download_policy().allowed == frozenset() and disk.current_policy().allowed == frozenset()


# ---- a build the operator did not allow ----------------------------------------------------------------------
@pytest.mark.parametrize("lang", ["de", "en"])
def test_a_build_not_allowed_is_not_offered_as_a_download(catalog: Any, recording_hub: list[Any], lang: str) -> None:
    """Not "⬇ 4.4 GB": the picker, the model line and /models say it is not available here; sending to it is
    refused with that reason before anything is fetched."""
    import gradio as gr

    from components.api.chat_models import register as register_api
    from components.ui.common import availability_line, quant_label, sendable

    playground = Playground(catalog, hub=reachable_hub())
    em, other = catalog.get(EM_GGUF), catalog.get("em-german-7b/gguf-q4_k_m")
    assert playground.availability(em).state == availability.DOWNLOAD  # any build, without a policy
    disk.install(disk.DownloadPolicy(allowed=frozenset({other.id})))
    avail = playground.availability(em)
    assert not avail.ok and avail.state == availability.UNAVAILABLE and avail.key == "why_download_not_allowed"
    assert playground.availability(other).state == availability.DOWNLOAD and playground.availability(other).ok
    why = t("why_download_not_allowed", lang)
    label = quant_label(playground, em, lang)
    assert "✗" in label and why in label and "⬇" not in label and "4" not in label.split("—", 1)[1]
    assert why in availability_line(playground, em, lang) and not sendable(playground, em)
    with gr.Blocks() as demo:
        register_api(playground)
    models_fn = next(f.fn for f in demo.fns.values() if f.api_name == "models")
    row = next(row for row in models_fn(lang=lang) if row["id"] == EM_GGUF)
    assert row["state"] == "unavailable" and row["available"] is False and row["download_gb"] is None
    assert row["why_not"] == why
    with pytest.raises(InputError) as err:
        playground.prepare(EM_GGUF, "Hallo", lang=lang)
    assert err.value.key == "err_unavailable"
    assert why in t(err.value.key, lang, **err.value.params)
    assert recording_hub == []


async def test_the_engine_downloads_nothing_for_a_build_not_allowed(catalog: Any, recording_hub: list[Any]) -> None:
    """Even a caller that reaches the engine without the service's checks gets the message and no download."""
    from components.engines.transformers_engine import snapshot

    disk.install(disk.DownloadPolicy(allowed=frozenset({catalog.default.id})))
    events = await llama_events(catalog, EM_GGUF)
    assert isinstance(events[-1], Failed) and events[-1].key == "err_download_not_allowed"
    for lang in ("de", "en"):
        text = t(events[-1].key, lang, **events[-1].params)
        assert "EM German" in text and "{" not in text and text.endswith(".")
    int8 = catalog.get(EM_INT8)
    with pytest.raises(EngineError) as err:
        await snapshot(int8.quant.repo, "hf_operator", lambda status: None, build=int8)
    assert err.value.key == "err_download_not_allowed"
    with pytest.raises(EngineError):  # the tokenizer alone is a download too
        await snapshot(int8.quant.repo, "hf_operator", lambda status: None, weights=False, build=int8)
    assert recording_hub == [], "the Hub was asked for a build the operator did not allow"


async def test_an_allowed_build_is_downloaded(catalog: Any, recording_hub: list[Any]) -> None:
    disk.install(disk.DownloadPolicy(allowed=frozenset({EM_GGUF})))
    events = await llama_events(catalog, EM_GGUF)
    assert recording_hub == [("hf_hub_download", "TheBloke/em_german_leo_mistral-GGUF")]
    assert events[-1].key == "err_load"  # the recorder's file is no GGUF: the download itself went through
    assert disk.held() == set() and disk._reserved == {}  # nothing stays held or reserved after a failed load


# ---- free disk -------------------------------------------------------------------------------------------------
async def test_a_download_with_too_little_free_disk_is_refused(
    catalog: Any, recording_hub: list[Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """4.37 GB with 1 GB to keep free and 5 GB free: refused with the numbers, nothing fetched."""
    from huggingface_hub import constants

    seen: list[Path] = []

    def disk_usage(path: Any) -> Any:
        seen.append(Path(path))
        return shutil._ntuple_diskusage(100 * GB, 95 * GB, 5 * GB)  # type: ignore[attr-defined]

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(disk.shutil, "disk_usage", disk_usage)
    events = await llama_events(catalog, EM_GGUF)
    assert isinstance(events[-1], Failed) and events[-1].key == "err_download_no_space", events[-1]
    assert recording_hub == []
    assert seen == [tmp_path]  # the Hub cache's disk (its nearest existing folder)
    de = t(events[-1].key, "de", **events[-1].params)
    en = t(events[-1].key, "en", **events[-1].params)
    assert "4,4 GB" in de and "5,0 GB" in de and "1,0 GB" in de and "nichts heruntergeladen" in de
    assert "4.4 GB" in en and "5.0 GB" in en and "Nothing was downloaded" in en
    monkeypatch.setattr(
        disk.shutil,
        "disk_usage",
        lambda path: shutil._ntuple_diskusage(100 * GB, 90 * GB, 6 * GB),  # type: ignore[attr-defined]
    )
    await llama_events(catalog, EM_GGUF)
    assert recording_hub == [("hf_hub_download", "TheBloke/em_german_leo_mistral-GGUF")]


def test_a_build_larger_than_the_disk_budget_is_not_offered(catalog: Any, recording_hub: list[Any]) -> None:
    disk.install(disk.DownloadPolicy(budget_gb=4.0))
    playground = Playground(catalog, hub=reachable_hub())
    avail = playground.availability(catalog.get(EM_GGUF))
    assert avail.state == availability.UNAVAILABLE and avail.key == "why_over_disk_budget"
    assert t(avail.key, "de", **avail.params) == "braucht 4,4 GB Speicherplatz, für Modelle sind hier 4,0 GB vorgesehen"
    with pytest.raises(EngineError) as err:
        disk.reserve(catalog.get(EM_GGUF))
    assert err.value.key == "err_download_over_budget"


# ---- the disk budget: least recently used first, never a loaded model -------------------------------------------
def fake_repo(cache: Path, repo_id: str, size: int, accessed: float, files: tuple[str, ...] = ("model.gguf",)) -> Path:
    """A cached model repository as huggingface_hub lays it out: blobs/<hash>, snapshots/<commit>/<file> -> blob,
    refs/main. Returns the snapshot folder."""
    folder = cache / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = folder / "snapshots" / commit
    (folder / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    for name in files:
        content = os.urandom(size // len(files))
        blob = folder / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        os.utime(blob, (accessed, accessed))
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


@pytest.fixture
def hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_budget_removes_the_least_recently_used_model_and_keeps_the_loaded_one(
    catalog: Any, hub_cache: Path, tmp_path: Path
) -> None:
    now = time.time()
    loaded = fake_repo(hub_cache, "org/loaded-oldest", 1000, now - 4000)  # least recently used, but loaded
    fake_repo(hub_cache, "org/unused-old", 1000, now - 3000)
    fake_repo(hub_cache, "org/unused-newer", 1000, now - 2000)
    fake_repo(hub_cache, "org/recent", 1000, now - 10)
    outside = tmp_path / "not-in-the-cache.gguf"
    outside.write_bytes(b"keep me")
    disk.hold(loaded / "model.gguf")  # what the llama.cpp engine does once a model is loaded

    # 4 000 bytes cached, budget 5 000: a 2 000-byte download needs one model to go, the LRU one that is not loaded
    token = disk.reserve(catalog.get(EM_GGUF), disk.DownloadPolicy(budget_gb=5000 / GB), size_gb=2000 / GB)
    left = sorted(p.name for p in hub_cache.iterdir())
    assert left == ["models--org--loaded-oldest", "models--org--recent", "models--org--unused-newer"]
    assert (loaded / "model.gguf").read_bytes() and outside.read_bytes() == b"keep me"
    disk.free_reservation(token)

    # a release counts as a use: the model unloaded just now outlives one last used an hour ago
    disk.release(loaded / "model.gguf")
    disk.reserve(catalog.get(EM_GGUF), disk.DownloadPolicy(budget_gb=5000 / GB), size_gb=3000 / GB)
    left = sorted(p.name for p in hub_cache.iterdir())
    assert left == ["models--org--loaded-oldest", "models--org--recent"]


def test_no_room_when_every_model_in_the_budget_is_in_use(catalog: Any, hub_cache: Path) -> None:
    first = fake_repo(hub_cache, "org/a", 1000, time.time() - 100)
    second = fake_repo(hub_cache, "org/b", 1000, time.time() - 50)
    with disk.holding(first / "model.gguf"), disk.holding("org/b"), pytest.raises(EngineError) as err:
        disk.reserve(catalog.get(EM_GGUF), disk.DownloadPolicy(budget_gb=2500 / GB), size_gb=1000 / GB)
    assert err.value.key == "err_download_budget_in_use"
    assert first.exists() and second.exists()
    for lang in ("de", "en"):
        assert "{" not in t(err.value.key, lang, **err.value.params)


def test_the_repo_being_downloaded_is_not_removed_to_make_room_for_itself(catalog: Any, hub_cache: Path) -> None:
    """Another quantization of the same GGUF repository is already cached: it is not the one to go."""
    ref = catalog.get(EM_GGUF)
    same = fake_repo(hub_cache, ref.quant.repo, 1000, time.time() - 5000, files=("other.Q8_0.gguf",))
    other = fake_repo(hub_cache, "org/other", 1000, time.time() - 10)
    disk.reserve(ref, disk.DownloadPolicy(budget_gb=2500 / GB), size_gb=1000 / GB)
    assert same.exists() and not other.exists()


async def test_the_llama_engine_holds_a_loaded_model_until_it_is_unloaded(
    catalog: Any, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from components.engines import llama_cpp

    ref = catalog.get(EM_GGUF)
    snapshot = fake_repo(hub_cache, ref.quant.repo, 1000, time.time() - 5000, files=(ref.quant.file or "",))

    class FakeServer:
        def __init__(self, path: Path, *args: Any) -> None:
            self.path = path
            self.context = 4096
            self.closed = False

        def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(llama_cpp, "LlamaServer", FakeServer)
    monkeypatch.setattr(hub, "cached_file", lambda repo, name: snapshot / name)
    engine = llama_cpp.LlamaCppEngine(cache=ModelCache(budget_gb=100.0, unload=llama_cpp._close_server), parallel=1)
    server = await engine.loaded(ref)
    folder = disk.repo_folder(ref.quant.repo)
    assert disk.held() == {folder}
    with pytest.raises(EngineError):  # the loaded model is the only one: nothing can go
        disk.reserve(
            catalog.get("em-german-7b/gguf-q4_k_m"), disk.DownloadPolicy(budget_gb=1500 / GB), size_gb=1000 / GB
        )
    assert snapshot.exists()
    engine.cache.evict(ref.id)
    assert server.closed and disk.held() == set()
    disk.reserve(catalog.get("em-german-7b/gguf-q4_k_m"), disk.DownloadPolicy(budget_gb=1500 / GB), size_gb=1000 / GB)
    assert not snapshot.exists()


# ---- the running public app ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_public_app_downloads_no_build_it_was_not_told_to(tmp_path: Path) -> None:
    """PLAYGROUND_PUBLIC=1 with the operator's token and a Hub (a recording stand-in) that answers everything: asking
    for a ⬇ build gets the message in the page's language, /models says it is not available here, and the Hub is
    never asked for anything."""
    from tests.app_server import running_app
    from tests.test_public_profile import CANARY_TOKEN, Recorder, call_chat

    with Recorder() as recorder:
        env = {
            "PLAYGROUND_PUBLIC": "1",
            "PLAYGROUND_TEMP_DIR": str(tmp_path / "runtime"),
            "HF_TOKEN": CANARY_TOKEN,
            "HF_ENDPOINT": recorder.url,
            "HF_HUB_CACHE": str(tmp_path / "hf-cache"),
            "HF_HUB_OFFLINE": "0",
            "PLAYGROUND_MEMORY_BUDGET_GB": "100",
        }
        with running_app(env) as app:
            german = call_chat(app.url, "Hallo", model=EM_GGUF, lang="de")
            english = call_chat(app.url, "Hallo", model=EM_GGUF, lang="en")
            rows = call_models(app.url)
        assert t("why_download_not_allowed", "de") in refusal(german), german
        assert t("why_download_not_allowed", "en") in refusal(english), english
        row = next(row for row in rows if row["id"] == EM_GGUF)
        assert row["state"] == "unavailable" and row["download_gb"] is None
        assert recorder.requests == [], f"the Hub was asked: {recorder.requests}"
    assert not (tmp_path / "hf-cache").exists() or not any((tmp_path / "hf-cache").iterdir())


def refusal(answer: dict[str, Any]) -> str:
    """The message of a refused /chat (Gradio sends it as a JSON object in the SSE error event)."""
    import json

    text = answer.get("error", "")
    return str(json.loads(text).get("error")) if text.startswith("{") else text


def call_models(url: str) -> list[dict[str, Any]]:
    import httpx

    with httpx.Client(timeout=60) as http:
        event_id = http.post(url + "/gradio_api/call/models", json={"data": ["en"]}).json()["event_id"]
        text = http.get(f"{url}/gradio_api/call/models/{event_id}").text
    data = next(line[5:].strip() for line in text.splitlines() if line.startswith("data:"))
    import json

    return json.loads(data)[0]
