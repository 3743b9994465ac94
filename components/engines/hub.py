"""Downloads of model files from the Hugging Face Hub, with progress reported as Status events."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from components.engines.base import EngineError, Status


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def cached_file(repo: str, filename: str) -> Path | None:
    """The file's path in the local Hub cache, or None when it has not been downloaded."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename)
    return Path(found) if isinstance(found, str) else None


def _progress_class(report: Callable[[Status], None], filename: str) -> type[tqdm]:
    class Progress(tqdm):  # type: ignore[misc]
        """A silent tqdm that forwards at most two updates a second to `report`."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            super().__init__(*args, **kwargs)
            self._last = 0.0

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            now = time.monotonic()
            if self.total and (now - self._last > 0.5 or self.n >= self.total):
                self._last = now
                report(
                    Status(
                        "status_downloading",
                        {
                            "file": filename,
                            "percent": int(100 * self.n / self.total),
                            "done_mb": round(self.n / 1e6),
                            "total_mb": round(self.total / 1e6),
                        },
                    )
                )
            return out

        def close(self) -> None:
            fp = self.fp
            super().close()
            with contextlib.suppress(Exception):
                fp.close()

    return Progress


async def download_file(
    repo: str,
    filename: str,
    token: str | None,
    progress: Callable[[Status], None],
) -> Path:
    """hf_hub_download in a thread; `progress` is called on the event loop's thread."""
    cached = cached_file(repo, filename)
    if cached is not None:
        return cached
    if hub_offline():
        raise EngineError("err_download", file=filename, repo=repo, detail="HF_HUB_OFFLINE=1")
    from huggingface_hub import hf_hub_download

    loop = asyncio.get_running_loop()

    def report(status: Status) -> None:
        loop.call_soon_threadsafe(progress, status)

    try:
        path = await asyncio.to_thread(
            hf_hub_download,
            repo_id=repo,
            filename=filename,
            token=token,
            tqdm_class=_progress_class(report, filename),
        )
    except Exception as exc:  # network, 401/404, disk full: one clear message
        raise EngineError("err_download", file=filename, repo=repo, detail=_short(exc)) from exc
    return Path(path)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]
