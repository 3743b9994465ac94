"""Continuous batching for the transformers engine, through transformers' own ContinuousBatchingManager."""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from components.vocabulary.catalog import QuantKind
from components.vocabulary.settings import SamplingSettings

log = logging.getLogger(__name__)

#: `1` forces the batching path (where the model supports it), `0` switches it off; unset: the default below.
ENV = "PLAYGROUND_TRANSFORMERS_BATCHING"
#: Requests one batch holds at most (more wait inside transformers' scheduler until a place frees up).
BATCH_SIZE_ENV = "PLAYGROUND_TRANSFORMERS_BATCH_SIZE"

#: KV-cache tokens of all batched requests together on a CPU (transformers allocates the cache up front).
CPU_CACHE_TOKENS = 16384

#: Builds the batching path does not take: bitsandbytes, GPTQ and AWQ layers are not part of anything
#: transformers' continuous batching tests or sizes its cache for (and none could be tried here without a GPU).
QUANTIZED_KINDS = frozenset({QuantKind.int8, QuantKind.int4, QuantKind.gptq, QuantKind.awq})

#: Attention implementations that read transformers' paged cache and still serve plain generate() calls
#: (the single-request path keeps working on the same weights). "eager" would be switched to "paged|eager",
#: which breaks generate() for the requests that take the single-request path.
PAGED_ATTENTION = ("sdpa", "flash_attention_2", "flash_attention_3", "kernels-community/flash-attn")


def batching_setting() -> bool | None:
    """PLAYGROUND_TRANSFORMERS_BATCHING: True (1), False (0) or None (unset or unreadable: the default)."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    if raw:
        log.warning("%s=%r is neither 1 nor 0; using the default", ENV, raw)
    return None


def batch_size() -> int:
    """PLAYGROUND_TRANSFORMERS_BATCH_SIZE: requests in one batch at most (default 32)."""
    raw = os.environ.get(BATCH_SIZE_ENV, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        log.warning("%s=%r is not a positive integer; using 32", BATCH_SIZE_ENV, raw)
    return 32


@dataclass(frozen=True)
class PathChoice:
    """Which path a loaded model uses and why (`reason` is a message key of components/vocabulary/messages.py)."""

    batching: bool
    reason: str
    params: dict[str, Any]


def choose_path(model: Any, kind: QuantKind, device_type: str, zero_gpu: bool) -> PathChoice:
    """Decided once, when the model is loaded. Models the batching path cannot serve keep today's path
    whatever the setting; the others follow PLAYGROUND_TRANSFORMERS_BATCHING, else the measured default."""
    if zero_gpu:
        # Each ZeroGPU request is its own spaces.GPU call in a forked worker: nothing stays to batch with.
        return PathChoice(False, "tf_single_zerogpu", {})
    if kind in QUANTIZED_KINDS:
        return PathChoice(False, "tf_single_quantized", {"kind": kind.value})
    backend = getattr(type(model), "is_backend_compatible", None)
    if not callable(backend) or not backend():
        # BLOOM (hence IGEL) computes its own ALiBi attention and never reads a paged cache.
        arch = getattr(getattr(model, "config", None), "model_type", None) or type(model).__name__
        return PathChoice(False, "tf_single_architecture", {"arch": arch})
    attn = getattr(getattr(model, "config", None), "_attn_implementation", None) or "eager"
    if attn not in PAGED_ATTENTION:
        return PathChoice(False, "tf_single_attention", {"attn": attn})
    setting = batching_setting()
    if setting is False:
        return PathChoice(False, "tf_single_disabled", {"env": ENV})
    if setting is None:
        # Measured: on a CPU the batching path is slower (bench/RESULTS.md); on CUDA it has not been
        # measured yet, so it stays off there too until a measurement shows it faster.
        key = "tf_single_default_cpu" if device_type == "cpu" else "tf_single_default_gpu"
        return PathChoice(False, key, {"env": ENV})
    return PathChoice(True, "tf_batching", {"size": batch_size()})


def request_fallback(settings: SamplingSettings, json_schema: dict[str, Any] | None) -> str | None:
    """Why one request on a batching model takes the single-request path instead (None: it can be batched).

    - a JSON schema: xgrammar's logits processor keeps per-sequence state; transformers' batching applies
      logits processors to the whole batch and has per-request versions only of temperature, top-k and top-p.
    - sampling with a seed: the batch samples with one random generator for all its requests, so a seed
      cannot make one request's answer reproducible.
    - token probabilities: the batch's outputs carry the generated ids only, not the scores they came from.
    """
    if json_schema:
        return "json_schema"
    if settings.top_tokens:
        return "top_tokens"
    if settings.temperature > 0 and settings.seed is not None:
        return "seed"
    return None


def request_kwargs(settings: SamplingSettings, vocab_size: int) -> dict[str, Any]:
    """Per-request logits-processor arguments. The batch always samples; greedy is top-k 1 (the one most
    likely token keeps probability 1), which picks what argmax picks."""
    if settings.temperature <= 0:
        kwargs: dict[str, Any] = {"temperature": 1.0, "top_k": 1, "top_p": 1.0}
    else:
        top_k = settings.top_k if settings.top_k > 0 else vocab_size  # 0 = no top-k, as in generate()
        kwargs = {"temperature": float(settings.temperature), "top_k": int(top_k), "top_p": float(settings.top_p)}
    kwargs["repetition_penalty"] = float(settings.repetition_penalty)
    return kwargs


def _repetition_penalty_processor() -> Any:
    """A per-request repetition penalty for transformers' batching, computed exactly as generate()'s
    RepetitionPenaltyLogitsProcessor (which the batching path drops: it needs each sequence's history)."""
    import torch
    from transformers.generation.continuous_batching.cb_logits_processors import ContinuousBatchingLogitsProcessor

    class BatchRepetitionPenalty(ContinuousBatchingLogitsProcessor):
        supported_kwargs: ClassVar[dict[str, type]] = {"repetition_penalty": float}
        ignored_kwargs: ClassVar[tuple[str, ...]] = ()

        def __init__(self) -> None:
            self._history: torch.Tensor | None = None

        def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
            default = torch.ones_like(int32_tensor, dtype=torch.float32)
            int32_tensor.copy_(default.view(dtype=torch.int32))

        def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
            # Runs right before the forward pass that uses it, in the same thread (synchronous batching, no
            # CUDA graphs: the manager is configured so), when every earlier token of each request is known.
            penalties: list[float] = []
            rows: list[list[int]] = []
            for future in requests_with_new_token:
                state = future.state
                penalties.append(float(state.logit_processor_kwargs.get("repetition_penalty", 1.0)))
                rows.append(list(state.initial_tokens) + list(state.generated_tokens))
            width = max((len(row) for row in rows), default=1) or 1
            # Padding repeats a row's first token: gathering and scattering it twice changes nothing.
            padded = [row + [row[0]] * (width - len(row)) if row else [0] * width for row in rows]
            self._history = torch.tensor(padded, dtype=torch.long) if padded else None
            return torch.tensor(penalties, dtype=torch.float32).view(dtype=torch.int32)

        def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
            history = self._history
            if history is None or history.shape[0] != scores.shape[0]:
                return scores
            penalty = tensor_arg[: scores.size(0)].view(dtype=torch.float32).unsqueeze(-1)  # [B, 1]
            history = history.to(scores.device)
            picked = torch.gather(scores, 1, history)
            picked = torch.where(picked < 0, picked * penalty, picked / penalty)
            return scores.scatter(1, history, picked)

    return BatchRepetitionPenalty()


class Batcher:
    """One transformers ContinuousBatchingManager for one loaded model, started on first use.

    Requests go in with add_request(streaming=True); each request's outputs come back on the caller's event
    loop through register_result_handler. cancel() drops a request from the batch before the next forward pass
    and frees its cache blocks.
    """

    def __init__(self, model: Any, eos_ids: list[int], pad_id: int | None, context: int, size: int) -> None:
        self.model = model
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.context = context
        self.size = size
        self._manager: Any = None
        self._lock = threading.Lock()
        self._counter = 0
        self.vocab_size = int(getattr(model.config, "vocab_size", 0) or 0)

    def _config(self) -> tuple[Any, Any]:
        from transformers import ContinuousBatchingConfig, GenerationConfig

        # Temperature, top-k and top-p must be set here to something other than their "off" values, or
        # transformers creates no processor for them and per-request values are ignored.
        generation = GenerationConfig(
            do_sample=True,
            temperature=0.5,
            top_k=50,
            top_p=0.9,
            repetition_penalty=None,
            max_new_tokens=256,
            eos_token_id=self.eos_ids or -1,
            pad_token_id=self.pad_id,
        )
        options: dict[str, Any] = {
            "per_request_processors": True,
            # The model keeps its attention implementation: the single-request path runs on it too.
            "auto_switch_to_flash": False,
            # The repetition penalty reads each request's tokens when the batch is prepared: that is only
            # right when the forward pass runs right after, in the same thread, with its Python code run
            # (no asynchronous double buffering, no CUDA graph replay).
            "use_async_batching": False,
            "use_cuda_graph": False,
            "max_requests_per_batch": self.size,
        }
        if self.model.device.type == "cpu":
            # transformers sizes the cache from free accelerator memory; on a CPU say it: pages of 32 tokens,
            # room for `size` full contexts but at most 16 384 tokens (at least one full context).
            page = 32
            tokens = max(self.context, min(self.size * self.context, CPU_CACHE_TOKENS))
            options.update(
                page_size=page,
                num_blocks=math.ceil(tokens / page) + 1,
                max_batch_tokens=max(256, min(2048, self.context)),
            )
        else:
            # Leave room for other models the cache may load next to this one.
            options["max_memory_percent"] = 0.5
        return generation, ContinuousBatchingConfig(**options)

    def _ensure(self) -> Any:
        with self._lock:
            manager = self._manager
            if manager is not None and manager.is_running():
                return manager
            if manager is not None:  # the loop died (a fatal error): start over with a fresh manager
                log.warning("continuous batching loop ended; starting a new one")
                self._shutdown(manager)
            generation, config = self._config()
            manager = self.model.init_continuous_batching(
                generation_config=generation, continuous_batching_config=config
            )
            processors = manager.logit_processor
            processors.logits_processor.insert(0, _repetition_penalty_processor())  # first, as in generate()
            processors.tensors_required += 1
            processors._retrieve_processors_kwargs()
            processors.do_processing = True
            # manager.start() runs the loop in a non-daemon thread, which would keep the app from exiting on
            # Ctrl+C; this is the same start (transformers 5.23's ContinuousBatchingManager.start) as a daemon.
            manager.background_thread_status.clear()
            manager._generation_thread = threading.Thread(
                target=manager._run_generation_loop, name="transformers-batching", daemon=True
            )
            manager._generation_thread.start()
            self._manager = manager
            return manager

    def start(self) -> Any:
        """The running manager (started now if needed; blocking: call it from a worker thread)."""
        return self._ensure()

    def submit(
        self, manager: Any, input_ids: list[int], settings: SamplingSettings, on_output: Callable[[Any], None]
    ) -> str:
        """Adds one streaming request; `on_output` gets every GenerationOutput on the running event loop
        (call this from that loop)."""
        with self._lock:
            self._counter += 1
            request_id = f"playground-{self._counter}"
        manager.register_result_handler(request_id, on_output)
        added = manager.add_request(
            input_ids=list(input_ids),
            request_id=request_id,
            max_new_tokens=settings.max_new_tokens,
            streaming=True,
            eos_token_id=self.eos_ids or -1,
            **request_kwargs(settings, self.vocab_size),
        )
        if added is None:
            self.forget(manager, request_id)
            raise RuntimeError("the continuous batching loop does not accept requests")
        return request_id

    @staticmethod
    def forget(manager: Any, request_id: str) -> None:
        """Drops the result handler (transformers removes it only for requests that finish, not cancelled ones)."""
        router = manager.output_router
        with router._lock:
            router.result_handlers.pop(request_id, None)

    @staticmethod
    def cancel(manager: Any, request_id: str) -> None:
        """Removes the request from the batch before the next forward pass; its cache blocks are freed."""
        manager.cancel_request(request_id)
        Batcher.forget(manager, request_id)

    def active(self) -> int:
        manager = self._manager
        processor = getattr(manager, "batch_processor", None)
        scheduler = getattr(processor, "scheduler", None)
        if scheduler is None:
            return 0
        return len(scheduler.active_requests) + len(scheduler.waiting_requests)

    @staticmethod
    def _shutdown(manager: Any) -> None:
        try:
            manager.stop(block=True, timeout=30, hard_stop=True)
            manager.destroy()
        except Exception:  # stopping must never take the app down
            log.exception("stopping the continuous batching manager failed")

    def close(self) -> None:
        """Stops the batching loop (unloading the model)."""
        with self._lock:
            manager, self._manager = self._manager, None
        if manager is not None:
            self._shutdown(manager)


__all__ = [
    "ENV",
    "Batcher",
    "PathChoice",
    "batch_size",
    "batching_setting",
    "choose_path",
    "request_fallback",
    "request_kwargs",
]
