"""The model catalog: models.yaml loaded into validated objects (families, variants, quantizations)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from components.vocabulary.prompts import MODEL_FORMAT, PROMPT_FORMATS
from components.vocabulary.settings import NUMBER_SETTINGS, SamplingSettings, setting_range

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CATALOG = ROOT / "models.yaml"

ID_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"


class QuantKind(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"
    int8 = "int8"
    int4 = "int4"
    gptq = "gptq"
    awq = "awq"
    gguf = "gguf"
    remote = "remote"


#: Which engine serves each quantization kind (remote kinds name their endpoint's engine).
ENGINE_OF_KIND: dict[QuantKind, str] = {
    QuantKind.fp32: "transformers",
    QuantKind.fp16: "transformers",
    QuantKind.bf16: "transformers",
    QuantKind.int8: "transformers",
    QuantKind.int4: "transformers",
    QuantKind.gptq: "transformers",
    QuantKind.awq: "transformers",
    QuantKind.gguf: "llama_cpp",
}

#: Bytes per parameter, for memory estimates of transformers builds.
BYTES_PER_PARAM: dict[QuantKind, float] = {
    QuantKind.fp32: 4.0,
    QuantKind.fp16: 2.0,
    QuantKind.bf16: 2.0,
    QuantKind.int8: 1.1,
    QuantKind.int4: 0.6,
    QuantKind.gptq: 0.6,
    QuantKind.awq: 0.6,
}

LABEL_OF_KIND: dict[QuantKind, str] = {
    QuantKind.fp32: "fp32",
    QuantKind.fp16: "fp16",
    QuantKind.bf16: "bf16",
    QuantKind.int8: "8-bit (bitsandbytes)",
    QuantKind.int4: "4-bit NF4 (bitsandbytes)",
    QuantKind.gptq: "GPTQ 4-bit",
    QuantKind.awq: "AWQ 4-bit",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: what a family may recommend: the numeric sampling settings but the seed and the token probabilities
RECOMMENDED_SETTINGS = tuple(name for name in NUMBER_SETTINGS if name not in ("seed", "top_tokens"))

#: Recommended sampling settings of a family: every field optional (app defaults fill gaps), within the ranges of
#: SamplingSettings
Settings = create_model(  # type: ignore[call-overload]
    "Settings",
    __base__=_Strict,
    **{
        name: (SamplingSettings.model_fields[name].annotation | None, Field(None, ge=low, le=high))
        for name in RECOMMENDED_SETTINGS
        for low, high, _ in [setting_range(name)]
    },
)


class Endpoint(_Strict):
    """A remote inference server; URL and token come from the environment, never from this file."""

    id: str = Field(pattern=ID_PATTERN)
    type: Literal["tgi", "openai", "hf_providers"]
    url_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    token_env: str | None = Field(default=None, pattern=r"^[A-Z][A-Z0-9_]*$")
    label: str | None = None
    #: the URL when `url_env` is unset (a public service's fixed address, e.g. the Inference Providers router)
    url_default: str | None = Field(default=None, pattern=r"^https?://")
    #: which of the comma-separated URLs in `url_env` this server is (its token: the same place of a list in
    #: `token_env`, or the one value there); None: the variable's whole value
    index: int | None = Field(default=None, ge=0)

    def _item(self, value: str, one_for_all: bool) -> str:
        if self.index is None or (one_for_all and "," not in value):
            return value
        items = [part.strip() for part in value.split(",")]
        return items[self.index] if self.index < len(items) else ""

    def url(self) -> str | None:
        value = self._item(os.environ.get(self.url_env, "").strip(), one_for_all=False)
        return value or self.url_default

    def token(self) -> str | None:
        if not self.token_env:
            return None
        value = self._item(os.environ.get(self.token_env, "").strip(), one_for_all=True)
        return value or None


def remote_code_allowed() -> bool:
    """PLAYGROUND_TRUST_REMOTE_CODE=1: the operator lets builds marked `trust_remote_code: true` run their
    repository's own Python code (off by default)."""
    return os.environ.get("PLAYGROUND_TRUST_REMOTE_CODE", "").strip().lower() in {"1", "true", "yes", "on"}


class Quantization(_Strict):
    """One build of a variant: its kind, where its weights are and which engine serves it."""

    id: str = Field(pattern=ID_PATTERN)
    kind: QuantKind
    label: str | None = None
    #: a Hub repository id (`owner/name`) or an absolute local directory
    repo: str | None = Field(default=None, pattern=r"^([A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+|/.+)$")
    file: str | None = None
    package: str | None = None
    size_gb: float | None = Field(default=None, gt=0)
    endpoint: str | None = None
    served_model: str | None = None
    #: the repository's own Python code must run to load it (a custom tokenizer or model class): only where the
    #: operator allows it with PLAYGROUND_TRUST_REMOTE_CODE=1; a visitor is never asked
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _check_source(self) -> Quantization:
        if self.kind is QuantKind.gguf:
            if not self.file:
                raise ValueError("a gguf build needs `file` (the .gguf file name)")
            if not self.file.endswith(".gguf"):
                raise ValueError(f"`file` must end in .gguf, got {self.file!r}")
            if bool(self.repo) == bool(self.package):
                raise ValueError("a gguf build needs exactly one of `repo` (Hub) or `package` (installed)")
        elif self.kind is QuantKind.remote:
            if not self.endpoint:
                raise ValueError("a remote build needs `endpoint` (an id from `endpoints:`)")
        elif not self.repo:
            raise ValueError(f"a {self.kind.value} build needs `repo` (a Hub repository id)")
        return self

    @property
    def display(self) -> str:
        if self.label:
            return self.label
        if self.kind is QuantKind.gguf:
            stem = (self.file or "").rsplit(".gguf", 1)[0]
            quant = stem.replace("_", ".").rsplit(".", 1)[-1] if stem else ""
            return f"GGUF {self.id.removeprefix('gguf-').upper() or quant}"
        return LABEL_OF_KIND.get(self.kind, self.kind.value)


class Localized(_Strict):
    de: str
    en: str


class Variant(_Strict):
    """One model of a family (a base size or base model), with its builds."""

    id: str = Field(pattern=ID_PATTERN)
    name: str
    base_model: str | None = None
    params_b: float = Field(gt=0)
    context_length: int = Field(ge=128, le=1_048_576)
    offline: bool = False
    #: the family author's first recommendation (the page says so in its language)
    recommended: bool = False
    quantizations: list[Quantization] = Field(min_length=1)

    @field_validator("quantizations")
    @classmethod
    def _unique_quant_ids(cls, value: list[Quantization]) -> list[Quantization]:
        seen: set[str] = set()
        for quant in value:
            if quant.id in seen:
                raise ValueError(f"duplicate quantization id {quant.id!r}")
            seen.add(quant.id)
        return value


class Family(_Strict):
    """A model family: one prompt format, default system prompt and recommended settings."""

    id: str = Field(pattern=ID_PATTERN)
    name: str
    prompt_format: str
    system_prompt: str = ""
    description: Localized
    settings: Settings = Settings()
    #: where the recommended settings come from, in both page languages
    settings_source: Localized | None = None
    stop: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)
    variants: list[Variant] = Field(min_length=1)
    #: with `prompt_format: model`: which of the model's named templates (a GGUF's `tokenizer.chat_template.NAME`,
    #: a tokenizer's named `chat_template`); none: its default one
    chat_template: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @field_validator("prompt_format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value not in PROMPT_FORMATS and value != MODEL_FORMAT:
            known = ", ".join(sorted([*PROMPT_FORMATS, MODEL_FORMAT]))
            raise ValueError(f"unknown prompt format {value!r}; known: {known}")
        return value

    @model_validator(mode="after")
    def _template_name_needs_model_format(self) -> Family:
        if self.chat_template and self.prompt_format != MODEL_FORMAT:
            raise ValueError(
                f"`chat_template` names one of the model's templates: it needs `prompt_format: {MODEL_FORMAT}`"
            )
        return self


class CatalogFile(_Strict):
    default_model: str
    endpoints: list[Endpoint] = Field(default_factory=list)
    families: list[Family] = Field(min_length=1)


class ExtraFile(_Strict):
    """An operator's own families (and endpoints) beside the shipped catalog (PLAYGROUND_EXTRA_MODELS)."""

    endpoints: list[Endpoint] = Field(default_factory=list)
    families: list[Family] = Field(min_length=1)


@dataclass(frozen=True)
class ModelRef:
    """A fully resolved selection: family + variant + quantization. Its id is `variant/quant`."""

    family: Family
    variant: Variant
    quant: Quantization

    @property
    def id(self) -> str:
        return f"{self.variant.id}/{self.quant.id}"

    @property
    def engine_kind(self) -> str:
        return ENGINE_OF_KIND.get(self.quant.kind, "remote")

    @property
    def label(self) -> str:
        return f"{self.variant.name} · {self.quant.display}"

    def estimated_memory_gb(self) -> float:
        """Weights only; KV cache and activations come on top."""
        if self.quant.size_gb:
            return self.quant.size_gb
        return self.variant.params_b * BYTES_PER_PARAM.get(self.quant.kind, 2.0)


class CatalogError(Exception):
    """models.yaml is broken; the message names the entry and the field."""


class Catalog:
    """The validated catalog with lookups by id."""

    def __init__(self, data: CatalogFile, source: str = "models.yaml") -> None:
        self.data = data
        self.source = source
        self._refs: dict[str, ModelRef] = {}
        self._families = {f.id: f for f in data.families}
        self.endpoints = {e.id: e for e in data.endpoints}
        #: families added at run time (the servers' models outside the catalog), in the order added
        self._added_families: list[str] = []
        self._check_ids()
        for family in data.families:
            for variant in family.variants:
                for quant in variant.quantizations:
                    ref = ModelRef(family, variant, quant)
                    self._refs[ref.id] = ref
        if data.default_model not in self._refs:
            raise CatalogError(
                f"{source}: default_model: {data.default_model!r} is not a `variant/quantization` id of this catalog"
            )

    def _check_ids(self) -> None:
        fam_seen: set[str] = set()
        var_seen: dict[str, str] = {}
        for fi, family in enumerate(self.data.families):
            if family.id in fam_seen:
                raise CatalogError(f"{self.source}: families[{fi}] ({family.id}): id: duplicate family id")
            fam_seen.add(family.id)
            for vi, variant in enumerate(family.variants):
                where = f"families[{fi}] ({family.id}) → variants[{vi}] ({variant.id})"
                if variant.id in var_seen:
                    raise CatalogError(
                        f"{self.source}: {where}: id: duplicate variant id (also in family {var_seen[variant.id]})"
                    )
                var_seen[variant.id] = family.id
                for qi, quant in enumerate(variant.quantizations):
                    if quant.kind is QuantKind.remote and quant.endpoint not in self.endpoints:
                        raise CatalogError(
                            f"{self.source}: {where} → quantizations[{qi}] ({quant.id}): endpoint: "
                            f"{quant.endpoint!r} is not defined under `endpoints:`"
                        )

    # lookups -------------------------------------------------------------------------------
    @property
    def families(self) -> list[Family]:
        return [*self.data.families, *(self._families[i] for i in self._added_families)]

    def family(self, family_id: str) -> Family:
        return self._families[family_id]

    def refs(self) -> Iterator[ModelRef]:
        return iter(list(self._refs.values()))

    def get(self, model_id: str) -> ModelRef | None:
        """`variant/quant`, or a bare variant id meaning its first build."""
        ref = self._refs.get(model_id)
        if ref is not None:
            return ref
        for candidate in list(self._refs.values()):
            if candidate.variant.id == model_id:
                return candidate
        return None

    @property
    def default(self) -> ModelRef:
        return self._refs[self.data.default_model]

    def with_extra(self, family_id: str, variant_id: str, quant: Quantization) -> ModelRef:
        """Adds a build at run time (a server bound to the model it serves). Copy on write: a page event that reads
        the catalog while a background thread adds a build never sees a dictionary change size."""
        family = self._families[family_id]
        variant = next(v for v in family.variants if v.id == variant_id)
        ref = ModelRef(family, variant, quant)
        self._refs = {**self._refs, ref.id: ref}
        return ref

    def with_served(self, family: Family, variant: Variant, quant: Quantization) -> ModelRef:
        """Adds a served model the catalog does not know, as `variant` of the run-time `family` (created or grown)."""
        known = self._families.get(family.id)
        if known is not None:
            family = known.model_copy(update={"variants": [*known.variants, variant]})
        self._families = {**self._families, family.id: family}
        if family.id not in self._added_families:
            self._added_families = [*self._added_families, family.id]
        ref = ModelRef(family, variant, quant)
        self._refs = {**self._refs, ref.id: ref}
        return ref

    def quants_of(self, variant_id: str) -> list[ModelRef]:
        return [r for r in list(self._refs.values()) if r.variant.id == variant_id]


def _describe_loc(raw: Any, loc: tuple[Any, ...]) -> str:
    """Turns a pydantic error location into `families[2] (em-german) → variants[0] (x) → field`."""
    parts: list[str] = []
    node = raw
    for step in loc:
        if isinstance(step, int):
            label = f"[{step}]"
            try:
                node = node[step]
                if isinstance(node, dict) and "id" in node:
                    label += f" ({node['id']})"
            except (IndexError, KeyError, TypeError):
                node = None
            if parts:
                parts[-1] += label
            else:
                parts.append(label)
        else:
            parts.append(str(step))
            try:
                node = node[step] if isinstance(node, dict) else None
            except (KeyError, TypeError):
                node = None
    text = " → ".join(parts)
    # pydantic puts the "after" validator error on the object itself; keep the readable path.
    return text


def _read(file: Path, model: type[_Strict], name: str) -> Any:
    """`file` validated as `model`; CatalogError lines start with `name`."""
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CatalogError(f"{file}: file not found") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{name}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{name}: the top level must be a mapping with `families:`")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _describe_loc(raw, tuple(err["loc"]))
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {where}: {msg}")
        raise CatalogError("\n".join(lines)) from None


def load_catalog(path: str | os.PathLike[str] | None = None, extra: str | os.PathLike[str] | None = None) -> Catalog:
    """Reads and validates models.yaml (and `extra`, an operator's own families beside it); raises CatalogError
    naming the file, the entry and the field (for an id in both files: both files)."""
    file = Path(path) if path else DEFAULT_CATALOG
    data = _read(file, CatalogFile, file.name)
    if not extra:
        return Catalog(data, source=file.name)
    extra_file = Path(extra)
    more = _read(extra_file, ExtraFile, str(extra_file))
    taken = {
        "family": {f.id for f in data.families},
        "variant": {v.id for f in data.families for v in f.variants},
        "endpoint": {e.id for e in data.endpoints},
    }
    for what, items in (
        ("family", [(f"families[{i}]", f.id) for i, f in enumerate(more.families)]),
        (
            "variant",
            [
                (f"families[{i}] ({f.id}) → variants[{j}]", v.id)
                for i, f in enumerate(more.families)
                for j, v in enumerate(f.variants)
            ],
        ),
        ("endpoint", [(f"endpoints[{i}]", e.id) for i, e in enumerate(more.endpoints)]),
    ):
        for where, item_id in items:
            if item_id in taken[what]:
                raise CatalogError(
                    f"{extra_file}: {where} ({item_id}): id: the {what} id {item_id!r} is already in {file}; "
                    "an added model needs an id of its own"
                )
    merged = CatalogFile(
        default_model=data.default_model,
        endpoints=[*data.endpoints, *more.endpoints],
        families=[*data.families, *more.families],
    )
    return Catalog(merged, source=f"{file.name} + {extra_file.name}")


def catalog_from_environment() -> Catalog:
    """The app's catalog: PLAYGROUND_CATALOG (or models.yaml) with PLAYGROUND_EXTRA_MODELS' families beside it."""
    return load_catalog(
        os.environ.get("PLAYGROUND_CATALOG") or None, os.environ.get("PLAYGROUND_EXTRA_MODELS", "").strip() or None
    )
