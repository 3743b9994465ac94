"""Model downloads within the operator's bounds: allowed builds only, enough free disk, and a disk budget that removes
the least recently used downloaded model from the Hugging Face cache (never one that is loaded or being fetched)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from components.vocabulary.catalog import ModelRef, QuantKind
from components.vocabulary.generation import EngineError

log = logging.getLogger(__name__)

#: sizes in the catalog and on the page are decimal gigabytes
GB = 1_000_000_000
#: left free on the disk after a download (PLAYGROUND_DISK_MARGIN_GB)
DEFAULT_MARGIN_GB = 1.0
#: PLAYGROUND_MODEL_DISK_GB when it is unset and the public profile is on
PUBLIC_DEFAULT_MODEL_DISK_GB = 30.0
#: bitsandbytes builds are quantized while loading: what is downloaded is the fp16 repository
_FP16_DOWNLOAD = {QuantKind.int8, QuantKind.int4}


@dataclass(frozen=True)
class DownloadPolicy:
    """What may be downloaded from the Hub. `allowed`: build ids (`variant/quantization`), None = any build;
    `budget_gb`: what downloaded models may take in the Hub cache, None = no budget; `margin_gb`: kept free."""

    allowed: frozenset[str] | None = None
    budget_gb: float | None = None
    margin_gb: float = DEFAULT_MARGIN_GB

    def allows(self, build_id: str) -> bool:
        return self.allowed is None or build_id in self.allowed


def _env_gb(name: str, default: float | None) -> float | None:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"0", "off", "none", "no"}:
        return None
    try:
        value = float(raw)
    except ValueError:
        log.warning("%s=%r is not a number of GB; using the default", name, raw)
        return default
    return value if value > 0 else None


def parse_allowed(raw: str | None, public: bool) -> frozenset[str] | None:
    """PLAYGROUND_ALLOWED_DOWNLOADS: comma-separated build ids, `*` = any, `none` = none; unset: any build, but in
    the public profile none (only builds already on disk run there)."""
    if raw is None or not raw.strip():
        return frozenset() if public else None
    text = raw.strip().lower()
    if text in {"*", "all", "any"}:
        return None
    if text == "none":
        return frozenset()
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def policy_from_env(public: bool = False) -> DownloadPolicy:
    """The policy from the environment; `public` (the public profile) changes the defaults, explicit variables win."""
    margin = _env_gb("PLAYGROUND_DISK_MARGIN_GB", DEFAULT_MARGIN_GB)
    return DownloadPolicy(
        allowed=parse_allowed(os.environ.get("PLAYGROUND_ALLOWED_DOWNLOADS"), public),
        budget_gb=_env_gb("PLAYGROUND_MODEL_DISK_GB", PUBLIC_DEFAULT_MODEL_DISK_GB if public else None),
        margin_gb=0.0 if margin is None else margin,
    )


_policy: DownloadPolicy | None = None


def install(policy: DownloadPolicy | None) -> None:
    """Sets the process-wide policy (the serving layer does, with the public profile's defaults); None: from the
    environment without the public profile."""
    global _policy
    _policy = policy


def current_policy() -> DownloadPolicy:
    return _policy if _policy is not None else policy_from_env(public=False)


def download_gb(ref: ModelRef) -> float:
    """What fetching the build puts on the disk (GB): the catalog's file size, else the weights' size."""
    if ref.quant.size_gb:
        return ref.quant.size_gb
    if ref.quant.kind in _FP16_DOWNLOAD:
        return ref.variant.params_b * 2.0
    return ref.estimated_memory_gb()


def hub_cache() -> Path:
    """The Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub), as huggingface_hub reads it when it downloads."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE).expanduser()


# ---- models in use: never removed ----------------------------------------------------------------------------
_held: Counter[str] = Counter()
_last_used: dict[str, float] = {}
_lock = threading.Lock()
#: bytes of the downloads running now, by reservation
_reserved: dict[int, int] = {}
_tokens = itertools.count(1)


def repo_folder(repo_or_path: str | Path | None) -> str | None:
    """The cache folder name (`models--org--name`) of a Hub repo id or of a path inside the Hub cache; None for
    anything else (a local folder, a packaged file)."""
    if repo_or_path is None:
        return None
    if isinstance(repo_or_path, Path) or str(repo_or_path).startswith("/"):
        return next((part for part in Path(repo_or_path).parts if part.startswith("models--")), None)
    from huggingface_hub.file_download import repo_folder_name

    return repo_folder_name(repo_id=str(repo_or_path), repo_type="model")


def hold(repo_or_path: str | Path | None) -> None:
    """Marks a model as in use (loaded, loading, being downloaded): its files are never removed until release()."""
    folder = repo_folder(repo_or_path)
    if folder:
        with _lock:
            _held[folder] += 1
            _last_used[folder] = time.time()


def release(repo_or_path: str | Path | None) -> None:
    folder = repo_folder(repo_or_path)
    if folder:
        with _lock:
            _held[folder] -= 1
            if _held[folder] <= 0:
                del _held[folder]
            _last_used[folder] = time.time()


@contextlib.contextmanager
def holding(repo_or_path: str | Path | None) -> Iterator[None]:
    hold(repo_or_path)
    try:
        yield
    finally:
        release(repo_or_path)


def held() -> set[str]:
    with _lock:
        return set(_held)


# ---- the checks before a download ----------------------------------------------------------------------------
def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _within(path: Path, root: Path) -> bool:
    try:
        return Path(os.path.abspath(path)).is_relative_to(root)
    except (OSError, ValueError):
        return False


def remove_least_recently_used(need_bytes: int, budget_bytes: int, keep: str | None = None) -> tuple[list[str], bool]:
    """Removes downloaded models from the Hub cache, least recently used first, until `need_bytes` more fit into
    `budget_bytes` (in-flight downloads count too). Models in use (held) and `keep` (a cache folder name) stay.
    Returns the removed repo ids and whether the download fits now. Call it under _lock."""
    from huggingface_hub import CacheNotFound, scan_cache_dir

    cache = hub_cache()
    try:
        info = scan_cache_dir(cache)
    except CacheNotFound:
        return [], need_bytes <= budget_bytes
    root = Path(os.path.abspath(info.cache_dir or cache))
    repos = [repo for repo in info.repos if repo.repo_type == "model"]
    used = sum(repo.size_on_disk for repo in repos) + sum(f.size_on_disk for f in info.incomplete_files)
    used += sum(_reserved.values())
    in_use = set(_held) | {keep}
    candidates = sorted(
        (repo for repo in repos if repo.repo_path.name not in in_use),
        key=lambda repo: max(repo.last_accessed, _last_used.get(repo.repo_path.name, 0.0)),
    )
    removed: list[str] = []
    for repo in candidates:
        if used + need_bytes <= budget_bytes:
            break
        strategy = info.delete_revisions(*(rev.commit_hash for rev in repo.revisions))
        paths = [*strategy.blobs, *strategy.refs, *strategy.repos, *strategy.snapshots]
        if not all(_within(path, root) for path in paths):  # never a file outside the Hub cache
            log.warning("not removing %s: its files are not all inside the Hub cache", repo.repo_id)
            continue
        strategy.execute()
        used -= repo.size_on_disk
        removed.append(repo.repo_id)
        log.info("removed %s (%.2f GB) from the Hub cache to keep within the model disk budget", repo.repo_id,
                 repo.size_on_disk / GB)  # fmt: skip
    return removed, used + need_bytes <= budget_bytes


def reserve(ref: ModelRef, policy: DownloadPolicy | None = None, size_gb: float | None = None) -> int:
    """Checks a download of `ref` before anything is fetched and reserves its room; returns the reservation's id
    (free_reservation() ends it). Refuses (EngineError) a build the operator did not allow, one over the disk
    budget even after removing unused models, and one for which the disk has too little free space. `size_gb`:
    what is fetched, when it is not the whole build (a tokenizer)."""
    policy = policy or current_policy()
    if not policy.allows(ref.id):
        raise EngineError("err_download_not_allowed", model=ref.label)
    size_gb = download_gb(ref) if size_gb is None else size_gb
    need = int(size_gb * GB)
    with _lock:
        if policy.budget_gb is not None:
            if need > policy.budget_gb * GB:
                raise EngineError("err_download_over_budget", model=ref.label, size=size_gb, budget=policy.budget_gb)
            _removed, fits = remove_least_recently_used(
                need, int(policy.budget_gb * GB), keep=repo_folder(ref.quant.repo)
            )
            if not fits:
                raise EngineError("err_download_budget_in_use", model=ref.label, size=size_gb, budget=policy.budget_gb)
        free = shutil.disk_usage(_existing(hub_cache())).free - sum(_reserved.values())
        if free < need + policy.margin_gb * GB:
            raise EngineError(
                "err_download_no_space",
                model=ref.label,
                size=size_gb,
                free=max(0.0, free / GB),
                margin=policy.margin_gb,
            )
        token = next(_tokens)
        _reserved[token] = need
    return token


def free_reservation(token: int) -> None:
    with _lock:
        _reserved.pop(token, None)


@contextlib.asynccontextmanager
async def download_slot(
    ref: ModelRef, policy: DownloadPolicy | None = None, size_gb: float | None = None
) -> AsyncIterator[None]:
    """Around a download of `ref`: the checks of reserve() (off the event loop), its files held while it runs."""
    token = await asyncio.to_thread(reserve, ref, policy, size_gb)
    try:
        with holding(ref.quant.repo):
            yield
    finally:
        free_reservation(token)


__all__ = [
    "DownloadPolicy",
    "current_policy",
    "download_gb",
    "download_slot",
    "hold",
    "holding",
    "install",
    "parse_allowed",
    "policy_from_env",
    "release",
    "remove_least_recently_used",
    "repo_folder",
    "reserve",
]
