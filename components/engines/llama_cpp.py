"""llama.cpp engine (llama-cpp-python) for GGUF files, from an installed package or the Hub."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from components.catalog import ModelRef, Quantization
from components.engines.base import (
    Engine,
    EngineDone,
    EngineError,
    GenerationRequest,
    Status,
    TextDelta,
    check_context,
)
from components.engines.hub import download_file
from components.engines.model_cache import Loaded, ModelCache

log = logging.getLogger(__name__)

_END = object()


def packaged_gguf(quant: Quantization) -> Path | None:
    """The GGUF file shipped inside an installed package, found without importing the package."""
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


def default_threads() -> int:
    """PLAYGROUND_LLAMA_THREADS, else all cores but one on small machines (≤ 4 cores), else all.

    llama.cpp's threads meet at a barrier after every matrix product: on 2 shared cores, the
    app's own per-token work (event loop, SSE) descheduling one of two threads made decoding
    0.79-0.88x llama.cpp alone; with one thread it is 0.95-0.98x at the same tokens/s for two
    thirds of the CPU (bench/RESULTS.md, "llama.cpp engine").
    """
    raw = os.environ.get("PLAYGROUND_LLAMA_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    cores = os.cpu_count() or 1
    return max(1, cores - 1) if cores <= 4 else cores


def completion_kwargs(settings: Any) -> dict[str, Any]:
    """create_completion() sampling arguments for SamplingSettings, shared by the engine and the benchmark."""
    return {
        "max_tokens": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "min_p": 0.0,
        "repeat_penalty": settings.repetition_penalty,
        "stop": list(settings.stop) or None,
        "seed": settings.seed,
    }


def llama_kwargs(context_length: int) -> dict[str, Any]:
    """Llama() arguments shared by the engine and the benchmark baseline, so both run alike."""
    return {
        "n_ctx": context_length,
        "n_threads": default_threads(),
        "n_gpu_layers": int(os.environ.get("PLAYGROUND_LLAMA_GPU_LAYERS", "-1")),
        "verbose": False,
    }


class LlamaCppEngine(Engine):
    """Streams from GGUF models loaded with llama-cpp-python; one model runs one request at a time."""

    name = "llama_cpp"

    def __init__(self, cache: ModelCache[Any] | None = None, hf_token: str | None = None) -> None:
        self.cache: ModelCache[Any] = cache if cache is not None else ModelCache(unload=_close_llama)
        self._hf_token = hf_token

    # ---- loading -----------------------------------------------------------------------------
    async def _resolve_path(self, model: ModelRef, progress: Callable[[Status], None]) -> Path:
        quant = model.quant
        if quant.package:
            path = packaged_gguf(quant)
            if path is None:
                raise EngineError("err_load", model=model.label, detail=f"package {quant.package} not installed")
            return path
        assert quant.repo and quant.file
        return await download_file(quant.repo, quant.file, token=self._hf_token, progress=progress)

    async def _load(self, model: ModelRef, progress: Callable[[Status], None]) -> Loaded[Any]:
        async def load() -> Any:
            path = await self._resolve_path(model, progress)
            progress(Status("status_loading", {"model": model.label}))
            from llama_cpp import Llama

            def build() -> Any:
                return Llama(model_path=str(path), **llama_kwargs(model.variant.context_length))

            try:
                return await asyncio.to_thread(build)
            except Exception as exc:  # a corrupt or unsupported file
                raise EngineError("err_load", model=model.label, detail=str(exc)[:200]) from exc

        return await self.cache.get(model.id, model.estimated_memory_gb() * 1.15, load, label=model.label)

    async def loaded(self, model: ModelRef) -> Any:
        """The Llama object for `model` (loading it if needed); for token counting and tests."""
        item = await self._load(model, lambda status: None)
        return item.value

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        llm = await self.loaded(model)
        return len(llm.tokenize(text.encode("utf-8"), add_bos=True, special=True))

    # ---- generation --------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | EngineDone]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        def post(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        # Loading may download; progress arrives as Status items while we wait.
        load_task = asyncio.ensure_future(self._load(request.model, queue.put_nowait))
        while not load_task.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({load_task, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                yield getter.result()
            else:
                getter.cancel()
        item = load_task.result()
        while not queue.empty():
            yield queue.get_nowait()

        item.waiting += 1
        try:
            if item.lock.locked():
                yield Status("status_queued", {"position": item.waiting})
            await item.lock.acquire()
        finally:
            item.waiting -= 1
        try:
            item.in_use += 1
            llm = item.value
            settings = request.settings
            prompt_tokens = len(llm.tokenize(request.prompt.encode("utf-8"), add_bos=True, special=True))
            check_context(prompt_tokens, settings.max_new_tokens, request.model.variant.context_length)
            grammar = _grammar_for(request.json_schema)
            cancel = request.cancel

            def run() -> None:
                try:
                    stream = llm.create_completion(
                        request.prompt, **completion_kwargs(settings), grammar=grammar, stream=True
                    )
                    reason = "unknown"
                    for chunk in stream:
                        if cancel.is_set():
                            reason = "stopped"
                            break
                        choice = chunk["choices"][0]
                        if choice["text"]:
                            post(TextDelta(choice["text"]))
                        if choice.get("finish_reason"):
                            reason = choice["finish_reason"]
                    stream.close()
                    post(("done", reason))
                except Exception as exc:  # reported to the consumer, which turns it into an event
                    post(("error", exc))
                finally:
                    post(_END)

            thread = threading.Thread(target=run, name="llama-generate", daemon=True)
            thread.start()
            completion_tokens = 0
            reason = "unknown"
            ended = False
            try:
                while True:
                    got = await queue.get()
                    if got is _END:
                        ended = True
                        break
                    if isinstance(got, TextDelta):
                        completion_tokens += got.tokens
                        yield got
                    elif got[0] == "done":
                        reason = got[1]
                    elif got[0] == "error":
                        raise EngineError("err_internal", detail=str(got[1])[:200])
            finally:
                # Stop or a closed tab: the thread sees the flag after its current token.
                if not ended:
                    cancel.set()
                if thread.is_alive():
                    await asyncio.to_thread(thread.join, 30)
            yield EngineDone(
                finish_reason=_finish_reason(reason),
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
            )
        finally:
            item.in_use -= 1
            item.lock.release()


def _finish_reason(reason: str) -> str:
    return {"stop": "stop", "length": "length"}.get(reason, reason)


def _grammar_for(schema: dict[str, Any] | None) -> Any:
    if not schema:
        return None
    import json

    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)


def _close_llama(llm: Any) -> None:
    close = getattr(llm, "close", None)
    if callable(close):
        close()
