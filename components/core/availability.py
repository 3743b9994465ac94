"""Whether a build can run on this machine, and if not, why (a GPU, a package, memory, offline)."""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.core.catalog import ModelRef, QuantKind
from components.engines.hub import cached_file, hub_offline
from components.engines.model_cache import default_budget_gb
from components.engines.offline_model import packaged_gguf, requirement_for
from components.engines.transformers_engine import missing_packages

GPU_KINDS = {QuantKind.fp16, QuantKind.bf16, QuantKind.int8, QuantKind.int4, QuantKind.gptq, QuantKind.awq}
KIND_NAMES = {
    QuantKind.fp16: "fp16",
    QuantKind.bf16: "bf16",
    QuantKind.int8: "8-bit",
    QuantKind.int4: "4-bit",
    QuantKind.gptq: "GPTQ",
    QuantKind.awq: "AWQ",
    QuantKind.fp32: "fp32",
}


@dataclass(frozen=True)
class Availability:
    ok: bool
    key: str = "available"
    params: dict[str, Any] = field(default_factory=dict)


@functools.cache
def gpu_memory_gb() -> float | None:
    """Total memory of the first CUDA device, or None without one (or without torch)."""
    if importlib.util.find_spec("torch") is None:
        return None
    # Importing torch takes seconds; without an NVIDIA driver there is no CUDA device to ask about.
    if not Path("/proc/driver/nvidia/version").exists() and not list(Path("/dev").glob("nvidia[0-9]*")):
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_properties(0).total_memory / 1024**3


def check(ref: ModelRef, endpoint_url: str | None = None, budget_gb: float | None = None) -> Availability:
    """Availability of one build. Remote builds are available when their endpoint has a URL."""
    quant = ref.quant
    kind = quant.kind
    if kind is QuantKind.remote:
        if endpoint_url:
            return Availability(True)
        return Availability(False, "why_no_endpoint", {"endpoint": quant.endpoint, "env": "URL"})
    if kind is QuantKind.gguf and quant.package:
        # installed, taken from its wheel before, or pinned so that the engine fetches it on first use
        if packaged_gguf(quant) is None and requirement_for(quant.package) is None:
            return Availability(False, "why_package_missing", {"package": quant.package})
        return Availability(True)
    if kind in GPU_KINDS:
        gpu = gpu_memory_gb()
        if gpu is None:
            return Availability(False, "why_needs_gpu", {"kind": KIND_NAMES[kind]})
        missing = missing_packages(kind)
        if missing:
            return Availability(False, "why_needs_package", {"kind": KIND_NAMES[kind], "package": ", ".join(missing)})
        need = ref.estimated_memory_gb()
        if need > gpu:
            return Availability(False, "why_too_big", {"need": need, "have": gpu})
    else:
        budget = default_budget_gb() if budget_gb is None else budget_gb
        need = ref.estimated_memory_gb()
        if need > budget:
            return Availability(False, "why_too_big", {"need": need, "have": budget})
    if hub_offline() and quant.repo:
        probe = quant.file or "config.json"
        if cached_file(quant.repo, probe) is None:
            return Availability(False, "why_offline", {})
    return Availability(True)
