"""The table of engine kinds: how each is made, what it needs to run here, how the environment adds its servers.

A new engine is one module (an Engine subclass) and one row here: the service makes engines from this table
(core/service.py), availability asks it what a build is missing (core/availability.py), and the remote rows'
environment variables add servers without models.yaml (serving/endpoints.py). Engine modules are imported on
first use: some load heavy libraries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.engines.base import Engine
from components.vocabulary.catalog import Endpoint, ModelRef, QuantKind

#: what a build lacks to run here: a message key (components/vocabulary/messages.py) and its placeholders
Missing = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class EnvServer:
    """Servers of a remote kind that environment variables add (endpoint ids: the kind's name, then `name-2`, … for
    further comma-separated URLs; each a build of the model it serves, components/serving/endpoints.py). The label is
    a name, the same in German and English ("Der Server TGI …", "The server TGI …")."""

    url_env: str
    token_env: str
    label: str
    #: the variable naming the model the server serves, where the kind's API asks for one
    served_model_env: str | None = None


@dataclass(frozen=True)
class EngineKind:
    """One row: `module`.`cls` is the engine; a local one is made with the Hugging Face token, a remote one per
    endpoint (its own token only). `missing` says what a local build lacks here (None: nothing)."""

    name: str
    module: str
    cls: str
    remote: bool = False
    missing: Callable[[ModelRef], Missing | None] | None = None
    env: EnvServer | None = None

    def create(self, endpoint: Endpoint | None = None, hf_token: str | None = None) -> Engine:
        engine_class = getattr(importlib.import_module(self.module), self.cls)
        if self.remote:
            assert endpoint is not None, f"a {self.name} engine serves one endpoint"
            return engine_class(endpoint)  # type: ignore[no-any-return]
        return engine_class(hf_token=hf_token)  # type: ignore[no-any-return]


def _llama_cpp_missing(ref: ModelRef) -> Missing | None:
    """A packaged build whose package is neither installed, nor taken from its wheel, nor pinned to be fetched, or
    whose file pip could not fetch lately (then it does not "run here": the message says how to get the file)."""
    from components.engines.offline_model import cache_dir, fetch_failure, packaged_gguf, requirement_for

    quant = ref.quant
    if not quant.package or packaged_gguf(quant) is not None:
        return None
    if requirement_for(quant.package) is None:
        return "why_package_missing", {"package": quant.package}
    failure = fetch_failure(quant)
    if failure is not None:
        return "why_offline_fetch_failed", {
            "requirement": failure.requirement,
            "file": quant.file,
            "dir": str(cache_dir()),
        }
    return None


def _transformers_missing(ref: ModelRef) -> Missing | None:
    """The Python packages the build's quantization kind needs that are not installed."""
    from components.engines.transformers_engine import missing_packages

    missing = missing_packages(ref.quant.kind)
    return ("why_needs_package", {"package": ", ".join(missing)}) if missing else None


ENGINE_KINDS: dict[str, EngineKind] = {
    row.name: row
    for row in (
        EngineKind("llama_cpp", "components.engines.llama_cpp", "LlamaCppEngine", missing=_llama_cpp_missing),
        EngineKind(
            "transformers",
            "components.engines.transformers_engine",
            "TransformersEngine",
            missing=_transformers_missing,
        ),
        EngineKind(
            "tgi", "components.engines.tgi", "TgiEngine", remote=True, env=EnvServer("TGI_URL", "TGI_TOKEN", "TGI")
        ),
        EngineKind(
            "openai",
            "components.engines.openai_compat",
            "OpenAICompatEngine",
            remote=True,
            env=EnvServer("OPENAI_BASE_URL", "OPENAI_API_KEY", "OpenAI API", served_model_env="OPENAI_MODEL"),
        ),
        # its builds come from HF_PROVIDERS_MODELS (components/serving/hf_providers.py), not from a URL variable
        EngineKind("hf_providers", "components.engines.hf_providers", "HfProvidersEngine", remote=True),
    )
}


def kind_of(ref: ModelRef, endpoints: dict[str, Endpoint]) -> EngineKind:
    """The row of the engine that serves `ref`: its endpoint's type for a remote build."""
    if ref.quant.kind is QuantKind.remote:
        return ENGINE_KINDS[endpoints[ref.quant.endpoint or ""].type]
    return ENGINE_KINDS[ref.engine_kind]
