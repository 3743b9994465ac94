"""The sampling settings: one typed model whose fields carry the ranges, defaults and descriptions every layer uses."""

from __future__ import annotations

from typing import Any, get_args

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field


class SamplingSettings(BaseModel):
    """Sampling settings of one request. The fields' bounds are the ranges the page's sliders show, a family's
    recommendation in models.yaml must keep and a request's values are checked against (components/core/
    validation.py refuses a value outside them, naming the range); max_new_tokens is capped further by the
    operator (PLAYGROUND_MAX_NEW_TOKENS)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    temperature: float = Field(0.7, ge=0.0, le=2.0, description="randomness; 0 picks the likeliest token")
    top_p: float = Field(0.95, ge=0.01, le=1.0, description="nucleus sampling: the smallest set of tokens this likely")
    top_k: int = Field(40, ge=0, le=1000, description="only the k likeliest tokens; 0 means all")
    max_new_tokens: int = Field(256, ge=1, le=8192, description="the answer's length in tokens at most")
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0, description="how much a repeated token is held back")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="fixed seed for a repeatable answer; None: random")
    top_tokens: int = Field(
        0, ge=0, le=5, description="token probabilities: 0 off, 1-5 the likeliest alternatives shown per token"
    )
    stop: tuple[str, ...] = Field((), description="sequences that end the answer")


#: the seven settings by name, in the model's order (the page's settings controls and the API's parameters)
SETTING_NAMES: tuple[str, ...] = tuple(SamplingSettings.model_fields)
#: the numeric ones, which the page shows as sliders (seed as a text box); a family recommends some (catalog.py)
NUMBER_SETTINGS: tuple[str, ...] = tuple(n for n in SETTING_NAMES if n != "stop")


def setting_range(name: str) -> tuple[float, float, bool]:
    """(low, high, integer?) of a numeric setting, from its field's bounds."""
    info = SamplingSettings.model_fields[name]
    low = high = None
    for bound in info.metadata:
        if isinstance(bound, Ge):
            low = bound.ge
        elif isinstance(bound, Le):
            high = bound.le
    assert low is not None and high is not None, f"{name} has no range"
    return low, high, int in (get_args(info.annotation) or (info.annotation,))


def settings_by_name(values: Any) -> dict[str, Any]:
    """Raw settings by name from the page's settings controls' values (SETTING_NAMES order); checked later."""
    return dict(zip(SETTING_NAMES, values, strict=True))
