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

from components.vocabulary.generation import EngineError, Status


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
        raise EngineError("err_download_offline_mode", file=filename, repo=repo)
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
    except Exception as exc:  # network, 401/404, disk full: a message of our own, never the library's English
        raise download_error(exc, repo, filename) from exc
    return Path(path)


def download_error(exc: BaseException, repo: str, filename: str) -> EngineError:
    """A failed hf_hub_download as a message key of components/vocabulary/messages.py (huggingface_hub's own texts are
    English and, for a missing network, cut mid-sentence; they never reach the page)."""
    import errno

    from huggingface_hub import errors

    where = {"file": filename, "repo": repo}
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return EngineError("err_download_offline_mode", **where)
    if isinstance(exc, errors.GatedRepoError):
        return EngineError("err_download_gated", **where)
    if isinstance(exc, errors.RepositoryNotFoundError):
        return EngineError("err_download_no_repo", **where)
    if isinstance(exc, (errors.RemoteEntryNotFoundError, errors.RevisionNotFoundError)):
        return EngineError("err_download_no_file", **where)
    if isinstance(exc, errors.LocalEntryNotFoundError):  # the Hub could not be reached and nothing is cached
        return EngineError("err_download_network", **where)
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return EngineError("err_download", **where, detail=f"HTTP {status}" if status else type(exc).__name__)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return EngineError("err_download_disk", **where)
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EngineError("err_download_network", **where)
    return EngineError("err_download", **where, detail=type(exc).__name__)
