"""The batch command: the shipped German prompt set, the report it writes, refusals of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from components.core.service import EngineRegistry, Playground
from components.features.batch import EvalPrompt, load_prompts, main, run_batch, write_report
from components.vocabulary.prompts import get_format
from tests.test_compare import ScriptedEngine, fake_catalog

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "prompts" / "german_eval.yaml"
OFFLINE = "smollm2-135m-instruct/gguf-q4_1"

#: The EM German card's RAG example (001_*), byte for byte, as the model gets it.
CARD_RAG_PROMPT = (
    "Du bist ein hilfreicher Assistent. Für die folgende Aufgabe stehen dir zwischen den tags BEGININPUT und "
    "ENDINPUT mehrere Quellen zur Verfügung. Metadaten zu den einzelnen Quellen wie Autor, URL o.ä. sind zwischen "
    "BEGINCONTEXT und ENDCONTEXT zu finden, danach folgt der Text der Quelle. Die eigentliche Aufgabe oder Frage "
    "ist zwischen BEGININSTRUCTION und ENDINCSTRUCTION zu finden. Beantworte diese wortwörtlich mit einem Zitat "
    "aus den Quellen. Sollten diese keine Antwort enthalten, antworte, dass auf Basis der gegebenen Informationen "
    "keine Antwort möglich ist! USER: BEGININPUT\nBEGINCONTEXT\nUrl: https://www.jph.me\nENDCONTEXT \n"
    "Das Wetter in Düsseldorf wird heute schön und sonnig!\nENDINPUT\nBEGININSTRUCTION Was ist 1+1? "
    "ENDINSTRUCTION ASSISTANT:"
)


def test_shipped_prompt_set_has_the_card_examples() -> None:
    prompts = {p.id: p for p in load_prompts(PROMPTS)}
    assert len(prompts) == 8
    texts = " ".join(p.text for p in prompts.values())
    for phrase in (
        "Ein Buch hat 500 Seiten. Jede Seite enthält 300 Wörter.",
        "adaptiven Radiation",
        "Fahrradwegesituation in Hamburg",
        "Produktbeschreibung",
        "Marketing-E-Mail",
        "Bundeskanzler",
        "BEGININSTRUCTION Was ist 1+1? ENDINSTRUCTION",
        "Wie wird das Wetter heute in Düsseldorf? Gebe die Quelle mit an!",
    ):
        assert phrase in texts, phrase
    assert all(p.title and p.source for p in prompts.values())
    rag = prompts["rag-keine-antwort"]
    assert rag.system_prompt is not None and rag.note
    assert get_format("em_german").render(rag.system_prompt, [], rag.text) == CARD_RAG_PROMPT


async def test_report_has_answers_and_stats_side_by_side(tmp_path: Path) -> None:
    catalog = fake_catalog()
    playground = Playground(catalog, EngineRegistry(catalog, overrides={"llama_cpp": ScriptedEngine()}))
    prompts = [
        EvalPrompt(id="eins", title="Erste Frage", text="Wie viele Wörter?"),
        EvalPrompt(id="zwei", title="Zweite Frage", text="Und jetzt?", system_prompt="Sei knapp."),
    ]
    models = ["fast/q", "broken/q"]
    settings = {"max_new_tokens": 4, "temperature": 0.0, "seed": 7}
    rounds = await run_batch(playground, prompts, models, settings, "de", progress=False)
    md_path, json_path = write_report(tmp_path / "out", rounds, models, settings, "eval.yaml", "de")
    md = md_path.read_text(encoding="utf-8")
    assert md.startswith("# Stapelvergleich: eval.yaml")
    assert "## Runde 1: Erste Frage" in md and "## Runde 2: Zweite Frage" in md
    assert "| | `fast/q` | `broken/q` |" in md  # the overview
    assert "| Vollständige Antworten | 2 | 0 |" in md and "| Fehler | 0 | 2 |" in md
    assert "| Neue Tokens | 4 | 2 |" in md
    assert "fast0 fast1 fast2 fast3" in md and "*Systemprompt:* Sei knapp." in md
    assert "max_new_tokens = 4" in md
    data = json.loads(json_path.read_text(encoding="utf-8"))
    assert data["kind"] == "batch" and data["models"] == models and data["settings"] == settings
    assert [r["prompt_id"] for r in data["rounds"]] == ["eins", "zwei"]
    fast, broken = data["rounds"][0]["panes"]
    assert fast["text"].split() == ["fast0", "fast1", "fast2", "fast3"] and fast["settings"]["seed"] == 7
    assert broken["error_key"] == "err_remote_unreachable"


def test_cli_refuses_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "r")
    assert main(["--prompts", str(PROMPTS), "--models", "nope/x", "--out", out, "--lang", "en"]) == 2
    assert "Unknown model 'nope/x'" in capsys.readouterr().err
    assert main(["--prompts", str(PROMPTS), "--models", OFFLINE, "--out", out, "--temperature", "7"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(["--prompts", str(PROMPTS), "--models", OFFLINE, "--out", out, "--only", "zzz"]) == 2
    assert "zzz" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompts:\n  - id: a\n    title: A\n    text: x\n  - id: a\n    title: B\n    text: y\n")
    assert main(["--prompts", str(bad), "--models", OFFLINE, "--out", out]) == 2
    assert "doppelte Kennungen: a" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    assert main(["--prompts", str(missing), "--models", OFFLINE, "--out", out, "--lang", "en"]) == 2
    assert "file not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_batch_command_on_the_offline_model(tmp_path: Path) -> None:
    """The real command on the shipped prompt set: ~4 s on an idle 2-core machine, ~40 s on a busy one."""
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "components.features.batch", "--prompts", str(PROMPTS), "--models", OFFLINE]
    cmd += ["--out", str(out), "--max-new-tokens", "3", "--temperature", "0", "--seed", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "report.md" in proc.stdout
    assert "8/8" in proc.stderr, "the tqdm progress bar goes to stderr"
    md = (out / "report.md").read_text(encoding="utf-8")
    data = json.loads((out / "report.json").read_text(encoding="utf-8"))
    prompts = load_prompts(PROMPTS)
    assert [r["prompt_id"] for r in data["rounds"]] == [p.id for p in prompts]
    for prompt, round_ in zip(prompts, data["rounds"], strict=True):
        assert f": {prompt.title}" in md
        (pane,) = round_["panes"]
        assert pane["model_id"] == OFFLINE and pane["error"] is None
        assert pane["text"].strip() and 1 <= pane["stats"]["completion_tokens"] <= 3
        assert pane["settings"]["max_new_tokens"] == 3 and pane["settings"]["seed"] == 1
    assert "| Erstes Token |" in md and "| Tokens/s |" in md
