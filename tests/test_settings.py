"""The sampling settings model: one list of settings with their ranges for the page, the API and the catalog."""

from __future__ import annotations

from typing import Any

import pytest

from components.core.validation import LIMITS, RANGES, build_settings
from components.vocabulary.catalog import Settings
from components.vocabulary.generation import InputError
from components.vocabulary.settings import NUMBER_SETTINGS, SETTING_NAMES, SamplingSettings, setting_range


@pytest.fixture(scope="module")
def api_info(demo: Any) -> dict[str, Any]:
    return demo.get_api_info()["named_endpoints"]


@pytest.mark.parametrize(
    ("endpoint", "names"),
    [
        ("/chat", SETTING_NAMES),
        ("/retrieve", SETTING_NAMES),
        ("/structured", SETTING_NAMES),
        ("/compare", tuple(n for n in SETTING_NAMES if n != "stop")),
    ],
)
def test_api_parameters_are_the_settings_fields(
    api_info: dict[str, Any], endpoint: str, names: tuple[str, ...]
) -> None:
    """Each endpoint takes the settings by their field names, right before lang, unset by default,
    typed as the field (an integer setting as an integer, the stop sequences as a list of texts)."""
    params = [p["parameter_name"] for p in api_info[endpoint]["parameters"]]
    at = params.index("lang")
    assert tuple(params[at - len(names) : at]) == names
    by_name = {p["parameter_name"]: p for p in api_info[endpoint]["parameters"]}
    for name in names:
        assert by_name[name]["parameter_default"] is None
        kind = by_name[name]["python_type"]["type"]
        integers = ("top_k", "max_new_tokens", "seed", "top_tokens")
        expected = "list[str]" if name == "stop" else "int" if name in integers else "float"
        assert kind == f"None | {expected}", (name, kind)


def test_ranges_are_the_models_bounds() -> None:
    assert set(RANGES) == set(NUMBER_SETTINGS)
    for name in NUMBER_SETTINGS:
        low, high, integer = setting_range(name)
        if name == "max_new_tokens":
            high = min(high, LIMITS.max_new_tokens)
        assert RANGES[name] == (low, high, integer)


@pytest.mark.parametrize(("name", "over"), [("temperature", 2.01), ("top_p", 0.001), ("top_k", 1001)])
def test_a_request_and_a_recommendation_outside_the_range_are_refused(catalog: Any, name: str, over: float) -> None:
    family = catalog.default.family
    with pytest.raises(InputError) as refused:
        build_settings(family, (), **{name: over})
    assert refused.value.key == "err_setting_range" and refused.value.params["name"] == name
    with pytest.raises(ValueError, match=name):
        Settings(**{name: over})


def test_unset_settings_take_the_recommendation_then_the_default(catalog: Any) -> None:
    family = catalog.default.family
    built = build_settings(family, ("###",), top_k="7", stop="Ende")
    assert built.top_k == 7 and built.temperature == family.settings.temperature
    assert built.seed is None and built.stop == ("###", *family.stop, "Ende")
    assert SamplingSettings.model_fields["seed"].default is None
    plain = family.model_copy(update={"settings": Settings()})
    assert build_settings(plain, ()).repetition_penalty == SamplingSettings().repetition_penalty


def test_settings_controls_show_a_zero_recommendation(catalog: Any) -> None:
    """A family recommending temperature 0 (greedy) shows 0, not the default, on the page."""
    from components.ui.common import settings_values

    greedy = catalog.default.family.model_copy(update={"settings": Settings(temperature=0.0, top_k=0)})
    values = dict(zip(SETTING_NAMES, settings_values(greedy), strict=True))
    assert values["temperature"] == 0.0 and values["top_k"] == 0 and values["seed"] == ""
