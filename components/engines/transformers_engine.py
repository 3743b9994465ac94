"""Transformers engine: Hub or local checkpoints (fp32/fp16/bf16, bitsandbytes 8/4-bit, GPTQ, AWQ, GGUF) streamed."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import queue
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from components.engines import disk, hub, json_constraint
from components.engines import transformers_batching as batching
from components.engines.base import Engine, check_context
from components.engines.hub import hub_offline
from components.engines.model_cache import Loaded, ModelCache, progress_while
from components.vocabulary.catalog import ModelRef, Quantization, QuantKind, remote_code_allowed
from components.vocabulary.generation import (
    EngineDone,
    EngineError,
    GenerationRequest,
    Status,
    TextDelta,
    TokenProb,
    token_prob,
)
from components.vocabulary.settings import SamplingSettings

log = logging.getLogger(__name__)

#: Packages transformers' integrations import per kind (all of them are needed; transformers 5:
#: GPTQ goes through optimum + gptqmodel, AWQ through gptqmodel, autoawq/auto_gptq are gone).
REQUIRED_PACKAGES: dict[QuantKind, tuple[str, ...]] = {
    QuantKind.int8: ("bitsandbytes", "accelerate"),
    QuantKind.int4: ("bitsandbytes", "accelerate"),
    QuantKind.gptq: ("optimum", "gptqmodel", "accelerate"),
    QuantKind.awq: ("gptqmodel", "accelerate"),
}

#: Kinds that only make sense on a GPU (fp16 matmuls on a CPU are slow or unsupported; bnb/GPTQ/AWQ kernels are CUDA).
GPU_KINDS = frozenset({QuantKind.fp16, QuantKind.bf16, QuantKind.int8, QuantKind.int4, QuantKind.gptq, QuantKind.awq})

#: Files a transformers checkpoint needs besides its weights (config, generation config, tokenizer of any kind).
CHECKPOINT_PATTERNS: tuple[str, ...] = (
    "*.json",
    "tokenizer*",
    "*.model",
    "*.tiktoken",
    "merges.txt",
    "vocab.txt",
    # the chat template of transformers 5's tokenizers (components/engines/chat_templates.py)
    "*.jinja",
    "additional_chat_templates/*",
)

#: Prompt tokens decoded in front of the answer, so that the first answer token keeps its leading space
#: (SentencePiece drops it when a token is decoded on its own).
_DECODE_CONTEXT = 5

_END = object()


def default_concurrency() -> int:
    """PLAYGROUND_TRANSFORMERS_CONCURRENCY: generations one loaded model runs at once (default 1)."""
    raw = os.environ.get("PLAYGROUND_TRANSFORMERS_CONCURRENCY", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        log.warning("PLAYGROUND_TRANSFORMERS_CONCURRENCY=%r is not a positive integer; using 1", raw)
    return 1


def missing_packages(kind: QuantKind) -> list[str]:
    """Packages `kind` needs that are not installed here."""
    return [name for name in REQUIRED_PACKAGES.get(kind, ()) if importlib.util.find_spec(name) is None]


def gguf_file(quant: Quantization) -> str | None:
    """The GGUF file of a transformers build (dequantized on load), or None for a normal checkpoint."""
    return quant.file if quant.file and quant.file.endswith(".gguf") else None


def is_local(repo: str) -> bool:
    """The catalog's rule: an absolute path is a local folder, anything else a Hub repository id."""
    return os.path.isabs(repo)


# ---- loaded models -------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A model with its tokenizer. `key` is unique per load: the generation function finds the model by it,
    because under ZeroGPU that function runs in a forked worker where only picklable arguments arrive."""

    key: str
    label: str
    model: Any
    tokenizer: Any
    context: int
    eos_ids: frozenset[int]
    pad_id: int | None
    slots: asyncio.Semaphore
    concurrency: int = 1
    waiting: int = 0
    running: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    #: The continuous batching path (transformers' ContinuousBatchingManager), or None: today's path only.
    batcher: batching.Batcher | None = None
    #: Which path the model uses and why: a message key and its placeholders (shown on the Server tab).
    path: batching.PathChoice | None = None
    #: The folder its weights were loaded from (kept in the Hub cache while it is loaded).
    files: Path | None = None


#: Loaded models by key; module level so a forked ZeroGPU worker sees the ones loaded before it forked.
#: Weak: the model cache owns the models, an evicted model must not live on here.
_LIVE: weakref.WeakValueDictionary[str, LoadedModel] = weakref.WeakValueDictionary()


def unload_model(loaded: LoadedModel) -> None:
    """Drops every reference to the weights so that gc can free them, then returns cached CUDA blocks."""
    _LIVE.pop(loaded.key, None)
    files, loaded.files = loaded.files, None
    disk.release(files)
    batcher, loaded.batcher = loaded.batcher, None
    if batcher is not None:
        batcher.close()  # its loop thread and paged cache hold the weights too
    loaded.model = None
    loaded.tokenizer = None
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # freeing memory must never take the app down
        log.exception("torch.cuda.empty_cache failed")


def context_of(model: Any, variant_context: int) -> int:
    """The smaller of the catalog's context length and the positions the model config knows."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return min(variant_context, value)
    return variant_context  # ALiBi models (BLOOM, hence IGEL) have no position limit in their config


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    value = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if value is None:
        value = getattr(getattr(model, "config", None), "eos_token_id", None)
    if value is None:
        value = getattr(tokenizer, "eos_token_id", None)
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


# ---- downloads ----------------------------------------------------------------------------------
def _snapshot_progress(report: Callable[[Status], None], name: str) -> type[tqdm]:
    """A silent tqdm for snapshot_download that reports the byte progress of all files as one Status."""
    bars: dict[int, tuple[float, float]] = {}
    last = [0.0]

    class Progress(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)  # huggingface_hub passes it to its own tqdm only; be safe anyway
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the bar
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            # Only byte bars: snapshot_download also runs a bar that counts files.
            if self.unit == "B" and self.total:
                bars[id(self)] = (float(self.n), float(self.total))
                now = time.monotonic()
                # Two byte bars exist (network transfer, bytes on disk); the one further along is the truth.
                done, total = max(bars.values(), key=lambda pair: pair[0] / pair[1] if pair[1] else 0.0)
                if now - last[0] > 0.5 or done >= total:
                    last[0] = now
                    report(
                        Status(
                            "status_downloading",
                            {
                                "file": name,
                                "percent": int(100 * done / total),
                                "done_mb": round(done / 1e6),
                                "total_mb": round(total / 1e6),
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


#: what a tokenizer's files take at most, for the free-disk check before fetching them alone
TOKENIZER_GB = 0.1


def _weight_patterns(files: Sequence[str]) -> list[str]:
    """safetensors when the repo has them (most do, often next to .bin copies we must not fetch twice)."""
    if any(name.endswith(".safetensors") for name in files):
        return ["*.safetensors"]
    return ["pytorch_model*.bin", "model*.bin"]


def cached_snapshot(repo: str, only_file: str | None = None, weights: bool = True) -> Path | None:
    """The folder of `repo` in the local Hub cache when it holds what loading needs (`only_file`, else the config and,
    with `weights`, every weight file its index names), found with huggingface_hub's cache lookup, without asking the
    Hub; None otherwise."""
    found = hub.cached_file(repo, only_file or "config.json")
    if found is None:
        return None
    folder = found.parent
    if only_file:
        return folder
    if not weights:
        tokenizer = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
        return folder if any((folder / name).is_file() for name in tokenizer) else None
    for index in (*folder.glob("*.safetensors.index.json"), *folder.glob("pytorch_model*.bin.index.json")):
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return folder if all((folder / shard).is_file() for shard in shards) else None
    single = ("model.safetensors", "pytorch_model.bin")
    return folder if any((folder / name).is_file() for name in single) else None


async def snapshot(
    repo: str,
    token: str | None,
    progress: Callable[[Status], None],
    only_file: str | None = None,
    weights: bool = True,
    build: ModelRef | None = None,
) -> Path:
    """The local folder of `repo` (downloaded with progress if needed); a local directory is used as is. A download
    for `build` passes the operator's bounds first (components/engines/disk.py: allowed builds, free disk, budget)."""
    if is_local(repo):
        path = Path(repo)
        if not path.is_dir():
            raise EngineError("err_tf_local_missing", path=repo)
        return path
    cached = await asyncio.to_thread(cached_snapshot, repo, only_file, weights)
    if cached is not None:  # everything needed is in the Hub cache (a Space preloads its default build)
        return cached
    if build is not None and not hub_offline() and hub.cached_file(repo, only_file or "config.json") is None:
        async with disk.download_slot(build, size_gb=None if weights else TOKENIZER_GB):
            return await snapshot(repo, token, progress, only_file, weights)
    from huggingface_hub import HfApi, snapshot_download

    loop = asyncio.get_running_loop()

    def report(status: Status) -> None:
        loop.call_soon_threadsafe(progress, status)

    offline = hub_offline()

    def fetch() -> str:
        patterns = list(CHECKPOINT_PATTERNS)
        if only_file:
            patterns = [only_file, *patterns]
        elif weights:
            if offline:
                patterns += ["*.safetensors", "*.bin"]  # whatever the cache holds
            else:
                patterns += _weight_patterns(HfApi(token=token).list_repo_files(repo))
        return snapshot_download(
            repo_id=repo,
            token=token,
            allow_patterns=patterns,
            local_files_only=offline,
            tqdm_class=_snapshot_progress(report, repo),
        )

    try:
        return Path(await asyncio.to_thread(fetch))
    except Exception as exc:
        raise _download_error(exc, repo, offline) from exc


def _download_error(exc: Exception, repo: str, offline: bool) -> EngineError:
    name = type(exc).__name__
    if offline:
        return EngineError("err_tf_offline", repo=repo)
    if name in {"GatedRepoError", "RepositoryNotFoundError"} or "401" in str(exc) or "403" in str(exc):
        return EngineError("err_tf_access", repo=repo)
    from components.engines.hub import download_error

    return download_error(exc, repo, repo)  # never huggingface_hub's English text


# ---- loading ------------------------------------------------------------------------------------
def load_kwargs(kind: QuantKind, device: str) -> dict[str, Any]:
    """from_pretrained() arguments per quantization kind, on `device` ("cpu", "cuda", "cuda:1", "auto")."""
    import torch

    on_gpu = device.startswith("cuda") or device == "auto"
    # One explicit device keeps every layer there; "auto" lets accelerate spread a model over several GPUs.
    placement: dict[str, Any] = {"device_map": "auto"} if device == "auto" else {"device_map": {"": device}}
    if kind is QuantKind.fp32:
        return {"dtype": torch.float32, **(placement if on_gpu else {})}
    if kind is QuantKind.fp16:
        return {"dtype": torch.float16, **placement}
    if kind is QuantKind.bf16:
        return {"dtype": torch.bfloat16, **placement}
    compute = torch.bfloat16 if on_gpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported() else None
    compute = compute or torch.float16  # pre-Ampere GPUs (T4, V100) have no fast bf16
    if kind in (QuantKind.int8, QuantKind.int4):
        from transformers import BitsAndBytesConfig

        if kind is QuantKind.int8:
            config = BitsAndBytesConfig(load_in_8bit=True)
        else:
            config = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute,
                # double quantization saves ~0.4 bit/param but costs decode speed; memory is not our limit
                bnb_4bit_use_double_quant=False,
            )
        return {"quantization_config": config, "dtype": compute, **placement}
    if kind in (QuantKind.gptq, QuantKind.awq):
        # The repo's config.json carries its quantization_config; their kernels want fp16 activations.
        return {"dtype": torch.float16, "device_map": "auto"}
    raise EngineError("err_tf_kind", kind=kind.value)


# ---- ZeroGPU ------------------------------------------------------------------------------------
def zero_gpu_duration(*args: Any, **kwargs: Any) -> int:
    """Seconds of GPU to ask ZeroGPU for one answer: PLAYGROUND_ZEROGPU_DURATION, else by max_new_tokens."""
    raw = os.environ.get("PLAYGROUND_ZEROGPU_DURATION", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    settings = kwargs.get("settings") or next((a for a in args if isinstance(a, SamplingSettings)), None)
    tokens = settings.max_new_tokens if settings else 256
    # ~25 tokens/s is a safe floor for a 7B model on a ZeroGPU slice; a short budget queues sooner.
    return int(min(120, 15 + tokens / 25))


def select_runner(fn: Callable[..., Iterator[Any]], spaces_module: Any, on_space: bool) -> Callable[..., Any]:
    """`fn` wrapped with spaces.GPU on a ZeroGPU Space; `fn` itself everywhere else."""
    if spaces_module is None or not on_space:
        return fn
    return spaces_module.GPU(duration=zero_gpu_duration)(fn)


_RUNNERS: dict[int, Callable[..., Any]] = {}


def spaces_module() -> Any:
    """The `spaces` package when this runs on a Hugging Face Space that has it, else None."""
    if not os.environ.get("SPACE_ID"):
        return None
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return None
    return spaces


def generation_runner() -> tuple[Callable[..., Any], bool]:
    """(the function that generates, whether it runs through ZeroGPU). Wrapped once per spaces module:
    every spaces.GPU wrapper forks its own worker."""
    spaces = spaces_module()
    on_space = spaces is not None
    if not on_space:
        return stream_tokens, False
    runner = _RUNNERS.get(id(spaces))
    if runner is None:
        runner = select_runner(stream_tokens, spaces, on_space)
        _RUNNERS[id(spaces)] = runner
    return runner, True


# ---- decoding and stop strings --------------------------------------------------------------------
def _hold_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that could be the start of a stop string."""
    hold = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), hold, -1):
            if text.endswith(stop[:k]):
                hold = k
                break
    return hold


class TokenFeed:
    """Turns generated token ids into text deltas: UTF-8 safe, stop strings cut, and the stop decision for
    `generate()`. It is both the streamer and a stopping criterion, because transformers 5 asks the criteria
    before it hands the token to the streamer: whichever sees a token first decodes it, exactly once. With
    `top_tokens`, the criterion also reads each token's probabilities (record) and emit() gets them as a third
    argument."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_ids: Sequence[int],
        eos_ids: frozenset[int],
        stops: Sequence[str],
        emit: Callable[..., None],
        should_stop: Callable[[], bool],
        top_tokens: int = 0,
    ) -> None:
        self.tokenizer = tokenizer
        self.top_tokens = top_tokens
        self.probs: list[TokenProb] = []  # probabilities of the tokens whose text has not been emitted yet
        self.pieces: dict[int, str] = {}  # token id -> its text, for the alternatives
        self.prompt_len = len(prompt_ids)
        self.eos_ids = eos_ids
        self.stops = tuple(s for s in stops if s)
        self.emit = emit
        self.should_stop = should_stop
        self.ids: list[int] = list(prompt_ids[-_DECODE_CONTEXT:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.count = 0  # generated tokens seen, EOS included
        self.unreported = 0  # tokens whose text has not been emitted yet
        self.pending = ""  # decoded text held back (a possible stop-string start)
        self.stop_hit = False
        self.cancelled = False
        self.last_id: int | None = None
        self._streamed = -1  # tokens handed to put(); the first put() is the prompt

    # -- as a streamer (transformers' BaseStreamer protocol) --
    def put(self, value: Any) -> None:
        ids = [int(v) for v in value.reshape(-1).tolist()]
        if self._streamed < 0:
            self._streamed = 0
            return
        self._streamed += len(ids)
        fresh = self._streamed - self.count
        if fresh > 0:
            self.consume(ids[-fresh:])

    def end(self) -> None:
        """Nothing here: finish() flushes after generate() returns, with the finish reason known."""

    # -- as a stopping criterion --
    def __call__(self, input_ids: Any, scores: Any = None, **kwargs: Any) -> Any:
        import torch

        seen = self.prompt_len + self.count
        if input_ids.shape[-1] > seen:
            if self.top_tokens and isinstance(scores, tuple) and scores and input_ids.shape[-1] == seen + 1:
                self.record(int(input_ids[0, -1]), scores[-1])
            self.consume(input_ids[0, seen:].tolist())
        # Checked every token: Stop ends the GPU/CPU work after the current token, not only the display.
        if not self.cancelled and self.should_stop():
            self.cancelled = True
        done = self.stop_hit or self.cancelled
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    def record(self, token: int, step_scores: Any) -> None:
        """The probability of `token` and the likeliest alternatives, from the scores generate() drew it from
        (`output_scores`: after the logits processors and, when sampling, temperature, top-k and top-p). The
        step's scores are freed here: generate() keeps every step's scores until it returns otherwise."""
        import torch

        probs = torch.softmax(step_scores[0].float(), dim=-1)
        values, ids = torch.topk(probs, self.top_tokens)
        top_ids = ids.tolist()
        missing = [i for i in dict.fromkeys([token, *top_ids]) if i not in self.pieces]
        if missing:  # each id decoded once per answer: the same few alternatives come back again and again
            texts = self.tokenizer.batch_decode([[i] for i in missing], skip_special_tokens=False)
            self.pieces.update(zip(missing, texts, strict=True))
        if token not in self.eos_ids:
            top = zip([self.pieces[i] for i in top_ids], values.tolist(), strict=True)
            self.probs.append(token_prob(self.pieces[token], float(probs[token]), top))
        step_scores.set_()  # an empty storage: a long answer does not hold vocab-sized scores per token

    # -- decoding --
    def consume(self, ids: Sequence[int]) -> None:
        for token in ids:
            if self.stop_hit:
                return
            self.count += 1
            self.unreported += 1
            self.last_id = int(token)
            if token in self.eos_ids:
                continue  # EOS ends the answer and is never shown
            self.ids.append(int(token))
            text = self._decode_step()
            if text:
                self._push(text)

    def _decode(self, ids: Sequence[int]) -> str:
        # Special tokens stay visible so that stop strings like "<|im_end|>" can match them.
        return str(self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False))

    def _decode_step(self) -> str:
        """Incremental decoding as TGI does it: decode a short window twice, emit the difference, and wait
        while the text ends in U+FFFD (a UTF-8 character split across tokens)."""
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return full[len(prefix) :]
        return ""

    def _push(self, text: str, final: bool = False) -> None:
        self.pending += text
        if self.stops:
            cut = min((i for i in (self.pending.find(s) for s in self.stops) if i >= 0), default=-1)
            if cut >= 0:
                self.stop_hit = True
                self._flush(self.pending[:cut])
                self.pending = ""
                return
        hold = 0 if final else _hold_back(self.pending, self.stops)
        ready = self.pending[: len(self.pending) - hold]
        self.pending = self.pending[len(self.pending) - hold :]
        self._flush(ready)

    def _flush(self, text: str) -> None:
        if text:
            if self.top_tokens:  # the probabilities of the tokens emitted, where they were asked for
                self.emit(text, self.unreported, tuple(self.probs))
            else:
                self.emit(text, self.unreported)
            self.unreported = 0
            self.probs = []

    def finish(self, max_new_tokens: int) -> str:
        """Emits what was held back and returns the finish reason."""
        if not self.stop_hit:
            rest = ""
            if self.read_offset < len(self.ids):
                prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
                rest = self._decode(self.ids[self.prefix_offset :])[len(prefix) :]
            self._push(rest, final=True)
        if self.stop_hit:
            return "stop_sequence"
        if self.cancelled:
            return "stopped"
        if self.last_id is not None and self.last_id in self.eos_ids:
            return "stop"
        if self.count >= max_new_tokens:
            return "length"
        return "unknown"


def sampling_kwargs(settings: SamplingSettings) -> dict[str, Any]:
    """generate() sampling arguments; temperature 0 means greedy."""
    kwargs: dict[str, Any] = {"repetition_penalty": settings.repetition_penalty}
    if settings.temperature <= 0:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(
            do_sample=True,
            temperature=settings.temperature,
            top_p=settings.top_p,
            top_k=settings.top_k,  # 0 switches top-k off in transformers as in our settings
        )
    return kwargs


def generate_into(
    loaded: LoadedModel,
    input_ids: list[int],
    settings: SamplingSettings,
    should_stop: Callable[[], bool],
    emit: Callable[[tuple[Any, ...]], None],
    processors: list[Any] | None = None,
) -> None:
    """Runs generate() in the calling thread. Emits ("text", str, tokens) items, then ("done", reason,
    completion_tokens) or ("error", kind, detail); never raises. `should_stop` is asked after every token;
    `processors` are extra logits processors (constrained decoding)."""
    try:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        model = loaded.model
        feed = TokenFeed(
            loaded.tokenizer,
            input_ids,
            loaded.eos_ids,
            settings.stop,
            emit=lambda text, tokens, probs=(): emit(("text", text, tokens, probs)),
            should_stop=should_stop,
            top_tokens=settings.top_tokens,
        )
        if settings.seed is not None:
            torch.manual_seed(settings.seed)  # the per-model slot keeps other callers of this model out
        ids = torch.tensor([input_ids], dtype=torch.long, device=model.device)
        with torch.inference_mode():
            model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=settings.max_new_tokens,
                streamer=feed,
                stopping_criteria=StoppingCriteriaList([feed]),
                logits_processor=LogitsProcessorList(json_constraint.materialize(processors, loaded)),
                eos_token_id=sorted(loaded.eos_ids) or None,
                pad_token_id=loaded.pad_id,
                # the scores reach the stopping criteria (TokenFeed.record) only when generate() keeps them
                output_scores=bool(settings.top_tokens),
                return_dict_in_generate=bool(settings.top_tokens),
                **sampling_kwargs(settings),
            )
        emit(("done", feed.finish(settings.max_new_tokens), feed.count))
    except BaseException as exc:  # reported to the consumer as an item; the thread must end quietly
        kind = "oom" if "OutOfMemory" in type(exc).__name__ else "error"
        log.debug("generate failed", exc_info=True)
        emit(("error", kind, f"{type(exc).__name__}: {str(exc)[:200]}"))


def stream_tokens(
    key: str,
    input_ids: list[int],
    settings: SamplingSettings,
    cancel: threading.Event | str,
    processors: list[Any] | None = None,
) -> Iterator[tuple[Any, ...]]:
    """generate_into() as a generator for spaces.GPU: on ZeroGPU it runs in a forked worker, so only
    picklable values go in and out, the model is found by its key, and `cancel` is the path of a file
    whose existence means Stop. Closing the generator stops generation too."""
    loaded = _LIVE.get(key)
    if loaded is None or loaded.model is None:
        yield ("error", "gone", "model was unloaded (or loaded after the ZeroGPU worker started)")
        return
    if isinstance(cancel, threading.Event):
        is_cancelled: Callable[[], bool] = cancel.is_set
    else:
        flag = cancel
        is_cancelled = lambda: os.path.exists(flag)  # noqa: E731 - one stat() per token, cheap
    closed = threading.Event()
    items: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def run() -> None:
        generate_into(loaded, input_ids, settings, lambda: closed.is_set() or is_cancelled(), items.put, processors)
        items.put(None)

    thread = threading.Thread(target=run, name=f"transformers-generate-{key[:8]}", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is None:
                return
            yield item
    finally:
        # Closed early (consumer gone): stop generate() at its next token and wait for it.
        closed.set()
        thread.join()


# ---- the engine ---------------------------------------------------------------------------------
class TransformersEngine(Engine):
    """Streams from transformers models on CPU or GPU; each model serves a bounded number of callers at once."""

    name = "transformers"

    @property
    def supports_json_schema(self) -> bool:
        """JSON schemas are enforced through xgrammar (requirements-gpu.txt) when it is installed."""
        return json_constraint.available()

    def __init__(
        self,
        hf_token: str | None = None,
        cache: ModelCache[LoadedModel] | None = None,
        device: str | None = None,
        concurrency: int | None = None,
    ) -> None:
        # A cache handed in should be built with unload=unload_model so that eviction frees CUDA memory.
        self.cache: ModelCache[LoadedModel] = cache if cache is not None else ModelCache(unload=unload_model)
        self._hf_token = hf_token
        self._device = device
        self._concurrency = concurrency or default_concurrency()
        self._tokenizers: dict[str, Any] = {}
        self._contexts: dict[str, int] = {}

    # ---- loading -----------------------------------------------------------------------------
    def device_for(self, kind: QuantKind) -> str:
        """Where a build runs: the engine's device if given, else CUDA when there is one."""
        if self._device:
            return self._device
        import torch

        if torch.cuda.is_available():
            return "auto" if torch.cuda.device_count() > 1 else "cuda"
        return "cpu"

    def _check_runnable(self, model: ModelRef) -> str:
        kind = model.quant.kind
        if kind not in (QuantKind.fp32, *GPU_KINDS):
            raise EngineError("err_tf_kind", kind=kind.value)
        device = self.device_for(kind)
        if kind in GPU_KINDS and device == "cpu" and not self._device:
            raise EngineError("err_tf_needs_gpu", model=model.label, kind=kind.value)
        missing = missing_packages(kind)
        if missing:
            raise EngineError("err_tf_needs_package", model=model.label, kind=kind.value, packages=", ".join(missing))
        return device

    def memory_gb(self, model: ModelRef) -> float:
        """Budget charge: weights plus ~15 % for KV cache and activations, as the llama.cpp engine counts."""
        # transformers dequantizes GGUF to fp32: the file size says nothing about the loaded size.
        weights = model.variant.params_b * 4.0 if gguf_file(model.quant) else model.estimated_memory_gb()
        return weights * 1.15

    async def _load(self, model: ModelRef, progress: Callable[[Status], None]) -> Loaded[LoadedModel]:
        device = self._check_runnable(model)

        async def load() -> LoadedModel:
            quant = model.quant
            assert quant.repo  # the catalog requires it for every transformers kind
            gguf = gguf_file(quant)
            # its files stay in the Hub cache from the download until the model is unloaded (disk budget removals)
            with disk.holding(quant.repo):
                return await load_from(
                    await snapshot(quant.repo, self._hf_token, progress, only_file=gguf, build=model)
                )

        async def load_from(folder: Path) -> LoadedModel:
            quant = model.quant
            gguf = gguf_file(quant)
            progress(Status("status_loading", {"model": model.label}))
            kwargs = load_kwargs(quant.kind, device)
            if gguf:
                kwargs["gguf_file"] = gguf

            # ZeroGPU has no GPU outside spaces.GPU calls; it wants weights loaded on the CPU and moved with
            # .to("cuda"), which it intercepts and replays in its GPU worker.
            # (bitsandbytes, GPTQ and AWQ need a real GPU while loading: they stay as they are.)
            zero_gpu = (
                spaces_module() is not None
                and isinstance(kwargs.get("device_map"), dict)
                and "quantization_config" not in kwargs
            )
            if zero_gpu:
                kwargs.pop("device_map")

            def build() -> tuple[Any, Any]:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                extra: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
                # a repository's own code runs only for builds marked so, where the operator allows it
                remote = quant.trust_remote_code and remote_code_allowed()
                tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=remote, **extra)
                net = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=remote, **kwargs)
                if zero_gpu:
                    net.to("cuda")
                net.eval()
                return tokenizer, net

            try:
                tokenizer, net = await asyncio.to_thread(build)
            except EngineError:
                raise
            except Exception as exc:  # missing files, unsupported architecture, CUDA out of memory
                raise EngineError(
                    "err_load", model=model.label, detail=f"{type(exc).__name__}: {str(exc)[:200]}"
                ) from exc
            loaded = self._register(model, net, tokenizer)
            loaded.files = folder
            disk.hold(folder)  # released by unload_model
            return loaded

        return await self.cache.get(model.id, self.memory_gb(model), load, label=model.label)

    def _register(self, model: ModelRef, net: Any, tokenizer: Any) -> LoadedModel:
        eos = _eos_ids(net, tokenizer)
        pad = getattr(net.generation_config, "pad_token_id", None)
        if pad is None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else None)
        loaded = LoadedModel(
            key=uuid.uuid4().hex,
            label=model.label,
            model=net,
            tokenizer=tokenizer,
            context=context_of(net, model.variant.context_length),
            eos_ids=frozenset(eos),
            pad_id=pad,
            slots=asyncio.Semaphore(self._concurrency),
            concurrency=self._concurrency,
            meta={
                "device": str(net.device),
                "dtype": str(getattr(net, "dtype", "")),
                "gguf": bool(gguf_file(model.quant)),
            },
        )
        # Decided once, at load time: the batching path for what it supports, today's path for the rest.
        device_type = getattr(getattr(net, "device", None), "type", "cpu")
        loaded.path = batching.choose_path(net, model.quant.kind, device_type, zero_gpu=spaces_module() is not None)
        if loaded.path.batching:
            loaded.batcher = batching.Batcher(net, sorted(loaded.eos_ids), pad, loaded.context, batching.batch_size())
        log.info("transformers model %s: %s %s", model.label, loaded.path.reason, loaded.path.params)
        _LIVE[loaded.key] = loaded
        self._contexts[model.id] = loaded.context
        return loaded

    def loaded_models(self) -> list[dict[str, Any]]:
        """The models in memory and the path each uses (for the Server tab): label, device, path key, params."""
        rows = []
        for key in self.cache.keys():  # noqa: SIM118 - ModelCache is not a dict
            item = self.cache._items.get(key)
            value = item.value if item is not None else None
            if value is None or value.path is None:
                continue
            rows.append(
                {
                    "model": value.label,
                    "device": value.meta.get("device", ""),
                    "batching": value.path.batching,
                    "reason": value.path.reason,
                    "params": dict(value.path.params),
                }
            )
        return rows

    async def adopt(self, model: ModelRef, net: Any, tokenizer: Any) -> LoadedModel:
        """Serves a model built elsewhere under `model`'s id (benchmarks; apps that build models themselves)."""

        async def load() -> LoadedModel:
            return self._register(model, net, tokenizer)

        item = await self.cache.get(model.id, self.memory_gb(model), load, label=model.label)
        return item.value

    async def loaded(self, model: ModelRef) -> LoadedModel:
        """The loaded model (loading it if needed); for token counting, warm-up and tests."""
        item = await self._load(model, lambda status: None)
        return item.value

    async def tokenizer_for(self, model: ModelRef) -> Any:
        """The tokenizer alone when the model is not loaded: counting tokens must not load gigabytes."""
        if model.id in self.cache:
            item = await self._load(model, lambda status: None)
            return item.value.tokenizer
        tokenizer = self._tokenizers.get(model.id)
        if tokenizer is None:
            quant = model.quant
            assert quant.repo
            gguf = gguf_file(quant)
            folder = await snapshot(
                quant.repo, self._hf_token, lambda status: None, only_file=gguf, weights=False, build=model
            )
            from transformers import AutoTokenizer

            extra: dict[str, Any] = {"gguf_file": gguf} if gguf else {}
            extra["trust_remote_code"] = quant.trust_remote_code and remote_code_allowed()
            tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, folder, **extra)
            self._tokenizers[model.id] = tokenizer
        return tokenizer

    async def count_tokens(self, model: ModelRef, text: str) -> int | None:
        tokenizer = await self.tokenizer_for(model)
        return len(tokenizer(text)["input_ids"])

    def context_length(self, model: ModelRef) -> int:
        """The usable context: the catalog's, cut to the model's position limit once it has been loaded."""
        return self._contexts.get(model.id, model.variant.context_length)

    # ---- constrained decoding hook -------------------------------------------------------------
    def constraint_processors(self, request: GenerationRequest, loaded: LoadedModel) -> list[Any]:
        """Logits processors that force `request.json_schema`; they reach generate() as `logits_processor`.

        The schema is compiled here, once per model and schema (xgrammar caches it), so an unsupported
        schema is refused before the request waits in line; what goes to generate() is a picklable
        SchemaConstraint that builds the processor where generation runs (a ZeroGPU worker included).
        """
        if not request.json_schema:
            return []
        if not self.supports_json_schema:
            raise EngineError("err_json_unsupported_engine", engine=self.name)
        constraint = json_constraint.SchemaConstraint.of(request.json_schema)
        try:
            json_constraint.compile_schema(loaded, constraint.schema_json)
        except json_constraint.SchemaNotSupported as exc:
            raise EngineError("err_json_schema_unsupported", engine=self.name, detail=str(exc)) from None
        return [constraint]

    # ---- generation --------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[TextDelta | Status | EngineDone]:
        if request.json_schema and not self.supports_json_schema:
            # Refused before loading: no point in loading gigabytes for an answer we cannot shape.
            raise EngineError("err_json_unsupported_engine", engine=self.name)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Any] = asyncio.Queue()

        # Loading may download; its progress arrives as Status items while we wait.
        load_task = asyncio.ensure_future(self._load(request.model, events.put_nowait))
        async with contextlib.aclosing(progress_while(load_task, events)) as progress:
            async for status in progress:
                yield status
        item = load_task.result()
        loaded = item.value
        settings = request.settings
        # Pinned from here on (waiting or running): the cache does not evict a model somebody needs, also
        # not while this generator is suspended at a yield.
        item.waiting += 1
        loaded.waiting += 1
        try:
            while not events.empty():
                yield events.get_nowait()
            # Refuse before queueing: nobody should wait in line to be told the prompt is too long.
            input_ids = list(loaded.tokenizer(request.prompt, add_special_tokens=request.add_special)["input_ids"])
            prompt_tokens = len(input_ids)
            check_context(prompt_tokens, settings.max_new_tokens, loaded.context)
            # the schema's compile (xgrammar, once per model and schema) runs off the event loop; the grammar
            # worker has compiled it safely first (components/engines/grammar_worker.py)
            processors = await asyncio.to_thread(self.constraint_processors, request, loaded)
            batcher = loaded.batcher
            if batcher is not None:
                fallback = batching.request_fallback(settings, request.json_schema)
                if fallback is not None:
                    log.debug("request takes the single-request path: %s", fallback)
                    batcher = None
            if batcher is None:
                if loaded.slots.locked():
                    yield Status("status_queued", {"position": loaded.waiting})
                await loaded.slots.acquire()
        finally:
            item.waiting -= 1
            loaded.waiting -= 1
        if batcher is not None:
            # Every request streams at once: transformers' scheduler takes it into the next batch.
            item.in_use += 1
            loaded.running += 1
            try:
                run = self._run_batched(batcher, loaded, input_ids, settings, request.cancel, prompt_tokens)
                async with contextlib.aclosing(run) as outputs:
                    async for out in outputs:
                        yield out
            finally:
                loaded.running -= 1
                item.in_use -= 1
            return
        item.in_use += 1
        loaded.running += 1
        try:
            # aclosing: a consumer that goes away must reach _run's cleanup now, not when gc finds it.
            run = self._run(loop, loaded, input_ids, settings, request.cancel, prompt_tokens, processors)
            async with contextlib.aclosing(run) as outputs:
                async for out in outputs:
                    yield out
        finally:
            loaded.running -= 1
            item.in_use -= 1
            loaded.slots.release()

    async def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        loaded: LoadedModel,
        input_ids: list[int],
        settings: SamplingSettings,
        cancel: threading.Event,
        prompt_tokens: int,
        processors: list[Any] | None = None,
    ) -> AsyncIterator[TextDelta | EngineDone]:
        runner, zero_gpu = generation_runner()
        flag_path: str | None = None
        if zero_gpu:
            # A threading.Event does not cross into the forked ZeroGPU worker; a file does.
            flag_path = os.path.join(tempfile.gettempdir(), f"playground-stop-{uuid.uuid4().hex}")
        items: asyncio.Queue[Any] = asyncio.Queue()

        def post(value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop may be closed when a tab vanished
                loop.call_soon_threadsafe(items.put_nowait, value)

        def drive() -> None:
            """ZeroGPU: iterate the (wrapped) generator and forward its items."""
            stream = runner(loaded.key, input_ids, settings, flag_path, processors or None)
            try:
                for value in stream:
                    post(value)
            except BaseException as exc:  # ZeroGPU raises its own errors (quota, aborted task)
                post(("error", "error", f"{type(exc).__name__}: {str(exc)[:200]}"))
            finally:
                close = getattr(stream, "close", None)
                if callable(close):
                    close()
                post(_END)

        def local() -> None:
            """Everywhere else: generate in this thread and post straight to the loop (one hop per token)."""
            try:
                generate_into(loaded, input_ids, settings, cancel.is_set, post, processors)
            finally:
                post(_END)

        thread = threading.Thread(
            target=drive if zero_gpu else local, name=f"transformers-generate-{loaded.key[:8]}", daemon=True
        )
        thread.start()
        completion_tokens = 0
        reason = "unknown"
        ended = False
        try:
            while True:
                if flag_path:
                    got = await self._next_watching(items, cancel, flag_path)
                else:
                    got = await items.get()
                if got is _END:
                    ended = True
                    break
                tag = got[0]
                if tag == "text":
                    yield TextDelta(got[1], tokens=got[2], probs=got[3] if len(got) > 3 else ())
                elif tag == "done":
                    reason, completion_tokens = got[1], got[2]
                elif tag == "error":
                    if got[1] == "oom":
                        raise EngineError("err_tf_oom", model=loaded.label)
                    raise EngineError("err_tf_generate", model=loaded.label, detail=got[2])
        finally:
            if not ended:
                # Stop or a closed tab: generate() sees the flag after its current token.
                cancel.set()
            if flag_path and cancel.is_set():
                with contextlib.suppress(OSError):
                    Path(flag_path).touch()
            if thread.is_alive():
                await asyncio.to_thread(thread.join, 60)
            if flag_path:
                with contextlib.suppress(OSError):
                    os.unlink(flag_path)
        yield EngineDone(finish_reason=reason, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)

    async def _run_batched(
        self,
        batcher: batching.Batcher,
        loaded: LoadedModel,
        input_ids: list[int],
        settings: SamplingSettings,
        cancel: threading.Event,
        prompt_tokens: int,
    ) -> AsyncIterator[TextDelta | EngineDone]:
        """One request through transformers' continuous batching: tokens arrive as the batch makes them;
        Stop, a stop sequence or a closed consumer take the request out of the batch at the next step."""
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        deltas: list[TextDelta] = []
        feed = TokenFeed(
            loaded.tokenizer,
            input_ids,
            loaded.eos_ids,
            settings.stop,
            emit=lambda text, tokens, probs=(): deltas.append(TextDelta(text, tokens=tokens, probs=probs)),
            should_stop=cancel.is_set,
        )
        try:
            manager = await asyncio.to_thread(batcher.start)
            request_id = batcher.submit(manager, input_ids, settings, outputs.put_nowait)
        except Exception as exc:  # the batching loop could not start (e.g. no memory for its cache)
            raise EngineError("err_tf_generate", model=loaded.label, detail=f"{type(exc).__name__}: {exc}") from exc
        finished = False
        try:
            while True:
                output = await self._next_output(outputs, cancel)
                if output is None:  # Stop
                    feed.cancelled = True
                    break
                new = output.generated_tokens[feed.count :]
                if new:
                    feed.consume(new)
                for delta in deltas:
                    yield delta
                deltas.clear()
                if output.error is not None:
                    finished = True
                    kind = "oom" if "OutOfMemory" in output.error else "error"
                    if kind == "oom":
                        raise EngineError("err_tf_oom", model=loaded.label)
                    raise EngineError("err_tf_generate", model=loaded.label, detail=str(output.error)[:200])
                if output.is_finished():
                    finished = True
                    break
                if feed.stop_hit:
                    break
                if cancel.is_set():
                    feed.cancelled = True
                    break
        finally:
            if not finished:
                batcher.cancel(manager, request_id)
            else:
                batcher.forget(manager, request_id)
        reason = feed.finish(settings.max_new_tokens)
        for delta in deltas:
            yield delta
        yield EngineDone(finish_reason=reason, prompt_tokens=prompt_tokens, completion_tokens=feed.count)

    @staticmethod
    async def _next_output(outputs: asyncio.Queue[Any], cancel: threading.Event) -> Any:
        """The next output of a batched request, or None once Stop is set (checked every 20 ms meanwhile)."""
        if not outputs.empty():
            return outputs.get_nowait()
        getter = asyncio.ensure_future(outputs.get())
        try:
            while True:
                done, _ = await asyncio.wait({getter}, timeout=0.02)
                if done:
                    return getter.result()
                if cancel.is_set():
                    return None
        finally:
            getter.cancel()

    @staticmethod
    async def _next_watching(items: asyncio.Queue[Any], cancel: threading.Event, flag_path: str) -> Any:
        """The next item; meanwhile turns Stop into the flag file the ZeroGPU worker checks every token."""
        getter = asyncio.ensure_future(items.get())
        try:
            while True:
                if cancel.is_set() and not os.path.exists(flag_path):
                    with contextlib.suppress(OSError):
                        Path(flag_path).touch()
                # asyncio.wait leaves the getter alone on timeout, so no item is lost.
                done, _ = await asyncio.wait({getter}, timeout=0.1)
                if done:
                    return getter.result()
        finally:
            getter.cancel()
