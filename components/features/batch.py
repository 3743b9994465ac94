"""Batch comparison from the command line: every prompt of a prompt file to several models, one report.

    python -m components.features.batch --prompts prompts/german_eval.yaml \\
        --models smollm2-135m-instruct/gguf-q4_1 [more ids] --out reports/ [--max-new-tokens 128]

Writes `report.md` (stats table and answers side by side per prompt) and `report.json` to `--out`.
Exit status: 0 when every answer came back, 1 when some failed (they are in the report), 2 when the
input was refused (prompt file, model ids, settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from components.core import availability
from components.core.service import Playground
from components.core.validation import build_settings, check_message
from components.features.compare import LETTERS, PaneSpec, Round, export_dict, export_markdown, new_round, prepare_panes
from components.features.compare import stream_round as _stream_round
from components.vocabulary.catalog import CatalogError, catalog_from_environment
from components.vocabulary.generation import InputError
from components.vocabulary.messages import normalize_language, t

MAX_MODELS = len(LETTERS)
#: What a prompt of a prompt set tests (the blind leaderboard filters by it).
CATEGORIES = ("reasoning", "explanation", "writing", "retrieval", "known_limitations")
PROMPTS_DIR = Path(__file__).resolve().parents[2] / "prompts"


class EvalPrompt(BaseModel):
    """One prompt of a prompt file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str = Field(min_length=1)
    text: str = Field(min_length=1)
    system_prompt: str | None = None
    category: Literal["reasoning", "explanation", "writing", "retrieval", "known_limitations"] | None = None
    source: str | None = None
    note: str | None = None


class PromptFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts: list[EvalPrompt] = Field(min_length=1)


class BatchError(Exception):
    """Refused input, with the message already in the user's language."""


def load_prompts(path: str | os.PathLike[str], lang: str = "de") -> list[EvalPrompt]:
    """Reads and checks a prompt file (YAML or JSON with a `prompts:` list); ids must be unique."""
    file = Path(path)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        prompts = PromptFile.model_validate(raw).prompts
    except FileNotFoundError:
        raise BatchError(t("err_batch_prompts", lang, path=file, detail=t("batch_file_missing", lang))) from None
    except yaml.YAMLError as exc:
        raise BatchError(t("err_batch_prompts", lang, path=file, detail=str(exc)[:300])) from None
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise BatchError(t("err_batch_prompts", lang, path=file, detail=detail)) from None
    ids = [p.id for p in prompts]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        detail = t("batch_duplicate_ids", lang, ids=", ".join(duplicates))
        raise BatchError(t("err_batch_prompts", lang, path=file, detail=detail))
    return prompts


def prompt_sets(folder: str | os.PathLike[str] | None = None) -> dict[str, list[EvalPrompt]]:
    """Every readable prompt file of `prompts/` by its name (the file name without `.yaml`)."""
    out: dict[str, list[EvalPrompt]] = {}
    for file in sorted(Path(folder or PROMPTS_DIR).glob("*.yaml")):
        try:
            out[file.stem] = load_prompts(file)
        except BatchError:
            continue
    return out


def create_playground() -> Playground:
    """The app's catalog (PLAYGROUND_CATALOG or models.yaml, PLAYGROUND_EXTRA_MODELS) with the endpoints the
    environment adds."""
    catalog = catalog_from_environment()
    try:
        from components.serving.endpoints import register_env_endpoints
        from components.serving.hf_providers import register_provider_models
    except ImportError:  # remote endpoints are optional
        pass
    else:
        register_env_endpoints(catalog)
        register_provider_models(catalog)
    return Playground(catalog)


def check_models(playground: Playground, models: Sequence[str], settings: dict[str, Any], lang: str) -> list[str]:
    """Refuses unknown models, models that cannot run here (or need a download from an unreachable Hub) and bad
    settings before anything runs. Returns a note for each model that runs only after a download."""
    if not 1 <= len(models) <= MAX_MODELS:
        raise BatchError(t("err_compare_models", lang, count=len(models), max=MAX_MODELS))
    notes = []
    try:
        for model in models:
            ref = playground.resolve(model)
            avail = playground.availability(ref)
            if not avail.ok:
                raise playground.refusal(ref, avail, lang)
            if avail.state == availability.DOWNLOAD:
                notes.append(f"{ref.id}: {t(avail.key, lang, **avail.params)}")
            build_settings(ref.family, (), **settings)
    except InputError as exc:
        raise BatchError(t(exc.key, lang, **exc.params)) from None
    return notes


async def run_batch(
    playground: Playground,
    prompts: Sequence[EvalPrompt],
    models: Sequence[str],
    settings: dict[str, Any],
    lang: str = "de",
    progress: bool = True,
) -> list[Round]:
    """Every prompt to every model; the models of one prompt run at once, the prompts one after another."""
    from tqdm import tqdm

    rounds: list[Round] = []
    bar = tqdm(total=len(prompts), desc=t("batch_progress", lang), unit="prompt", disable=not progress, file=sys.stderr)
    try:
        for prompt in prompts:
            bar.set_postfix_str(prompt.id)
            text = check_message(prompt.text)
            specs = [PaneSpec(m, prompt.system_prompt, dict(settings)) for m in models]
            prepared = prepare_panes(playground, specs, text, None, lang)
            round_ = new_round(playground, specs, text, prepared, lang, settings)
            round_.prompt_id = prompt.id
            round_.title = prompt.title
            async for _ in _stream_round(playground, round_, prepared):
                pass
            rounds.append(round_)
            bar.update(1)
    finally:
        bar.close()
    return rounds


def summary_markdown(rounds: Sequence[Round], models: Sequence[str], lang: str) -> list[str]:
    """Per model over all prompts: answers, failures, new tokens, mean first-token time and speed, answers in German,
    answers that kept the system prompt's register (of those where both address someone)."""
    lines = ["", f"## {t('batch_summary', lang)}", ""]
    lines.append("| | " + " | ".join(f"`{m}`" for m in models) + " |")
    lines.append("|---|" + "---|" * len(models))
    cols: list[dict[str, Any]] = []
    for i in range(len(models)):
        panes = [r.panes[i] for r in rounds]
        ttfts = [p.stats["ttft_s"] for p in panes if p.stats and p.stats.get("ttft_s") is not None]
        rates = [p.stats["tokens_per_s"] for p in panes if p.stats and p.stats.get("tokens_per_s") is not None]
        codes = [p.language["code"] for p in panes if p.language and p.language.get("code")]
        kept = [p.register["kept"] for p in panes if p.register and isinstance(p.register.get("kept"), bool)]
        cols.append(
            {
                "answers": sum(1 for p in panes if p.ok),
                "errors": sum(1 for p in panes if p.error),
                "tokens": sum((p.stats or {}).get("completion_tokens") or 0 for p in panes),
                "ttft": f"{sum(ttfts) / len(ttfts) * 1000:.0f} ms" if ttfts else "–",
                "rate": f"{sum(rates) / len(rates):.1f}" if rates else "–",
                "time": f"{sum(p.elapsed_s or 0 for p in panes):.1f} s",
                "german": f"{codes.count('de')}/{len(codes)}" if codes else "–",
                "kept": f"{sum(kept)}/{len(kept)}" if kept else "–",
            }
        )
    for key, label in (
        ("answers", "batch_answers"),
        ("errors", "export_error"),
        ("tokens", "export_tokens"),
        ("ttft", "batch_mean_ttft"),
        ("rate", "batch_mean_rate"),
        ("time", "export_total"),
        ("german", "batch_german"),
        ("kept", "batch_register_kept"),
    ):
        lines.append(f"| {t(label, lang)} | " + " | ".join(str(c[key]) for c in cols) + " |")
    return lines


def write_report(
    out: Path,
    rounds: Sequence[Round],
    models: Sequence[str],
    settings: dict[str, Any],
    prompts_file: str,
    lang: str,
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    body = export_markdown(rounds, lang, title=t("batch_title", lang, file=Path(prompts_file).name))
    head, _, rest = body.partition("\n\n## ")
    shown = ", ".join(f"{k} = {v}" for k, v in settings.items() if v is not None) or "–"
    intro = [head, f"- {t('export_model', lang)}: " + ", ".join(f"`{m}`" for m in models)]
    intro.append(f"- {t('export_shared_settings', lang)}: {shown}")
    md_text = "\n".join(intro + summary_markdown(rounds, models, lang)) + "\n\n## " + rest
    md = out / "report.md"
    md.write_text(md_text, encoding="utf-8")
    data = export_dict(rounds, lang, kind="batch")
    data.update({"prompts_file": str(prompts_file), "models": list(models), "settings": settings})
    js = out / "report.json"
    js.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    return md, js


def parse_args(argv: Sequence[str] | None, lang: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m components.features.batch", description=t("batch_description", lang)
    )
    parser.add_argument("--prompts", required=True, help="prompts/german_eval.yaml")
    parser.add_argument("--models", required=True, nargs="+", help="variant/quantization ids (see /models)")
    parser.add_argument("--out", required=True, help="reports/")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", nargs="+", default=None, metavar="ID", help="run only these prompt ids")
    parser.add_argument("--lang", default=lang, choices=["de", "en"])
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, normalize_language(os.environ.get("PLAYGROUND_LANG")))
    lang = normalize_language(args.lang)
    settings = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "seed": args.seed}
    try:
        prompts = load_prompts(args.prompts, lang)
        if args.only:
            unknown = sorted(set(args.only) - {p.id for p in prompts})
            if unknown:
                raise BatchError(t("err_batch_input", lang, detail=f"--only: {', '.join(unknown)}"))
            prompts = [p for p in prompts if p.id in set(args.only)]
        playground = create_playground()
        notes = check_models(playground, args.models, settings, lang)
    except (BatchError, CatalogError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)
    rounds = asyncio.run(run_batch(playground, prompts, args.models, settings, lang, not args.no_progress))
    md, js = write_report(Path(args.out), rounds, args.models, settings, args.prompts, lang)
    print(t("batch_written", lang, md=md, json=js))
    failed = sum(1 for r in rounds for p in r.panes if p.error)
    if failed:
        print(t("batch_failures", lang, count=failed, total=len(rounds) * len(args.models)), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
