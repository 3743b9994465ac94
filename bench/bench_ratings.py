"""Blind leaderboard: time of the Bradley-Terry fit with bootstrap intervals; one fit for all samples vs one each.

Run from the project root:  python bench/bench_ratings.py [--rounds 1000] [--reps 3] [--record]
Vote files of 400, 4 000 and 40 000 votes between 4 and 8 models are drawn from a Bradley-Terry model
(tests/test_ratings.py's generator); `components.features.ratings.leaderboard` (what `/leaderboard` runs) is
timed, median of `--reps`. For 400 votes between 4 models the same bootstrap is also fitted the way
FastChat's `compute_bootstrap_bt` does it, one scipy `minimize` per sample, against this module's
single `minimize` over all samples at once (the problem separates into one per sample), in one run.
`--record` writes the figures into bench/RESULTS.md under "## Blind leaderboard" (other sections stay).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_startup import replace_section  # noqa: E402

from components.features import ratings  # noqa: E402
from tests.test_ratings import bt_votes  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Blind leaderboard"


def strengths(n: int) -> dict[str, float]:
    return {f"model-{i}/q": 1250.0 - 450.0 * i / max(n - 1, 1) for i in range(n)}


def timed(fn: object, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def schedule(records: list[dict[str, object]], rounds: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(models, pairs, scores, bootstrap draws): the unique battle rows and FastChat's multinomial draws of them."""
    per_vote, _ = ratings.collect(records)
    models = sorted({m for b in per_vote for a, c, _ in b for m in (a, c)})
    index = {m: i for i, m in enumerate(models)}
    rows: dict[tuple[int, int, float], int] = {}
    counts: list[float] = []
    for battles in per_vote:
        for a, b, s in battles:
            key = (index[a], index[b], s) if index[a] < index[b] else (index[b], index[a], 1.0 - s)
            if key not in rows:
                rows[key] = len(rows)
                counts.append(0.0)
            counts[rows[key]] += 1.0
    pairs = np.array([[a, b] for a, b, _ in rows], dtype=np.intp)
    scores = np.array([s for _, _, s in rows])
    weights = np.array(counts)
    draws = np.random.default_rng(0).multinomial(int(weights.sum()), weights / weights.sum(), size=rounds)
    return len(models), pairs, scores, draws.astype(np.float64)


def per_sample_bootstrap(records: list[dict[str, object]], rounds: int) -> np.ndarray:
    """FastChat's way: one minimize per bootstrap sample."""
    n, pairs, scores, draws = schedule(records, rounds)
    return np.array([ratings.fit(n, pairs, scores, d)[0] for d in draws])


def joint_bootstrap(records: list[dict[str, object]], rounds: int) -> np.ndarray:
    """This module's way: every sample in one minimize."""
    n, pairs, scores, draws = schedule(records, rounds)
    return ratings.fit(n, pairs, scores, draws)


def record(section: list[str], path: Path = RESULTS) -> None:
    """Replaces `## Blind leaderboard` in RESULTS.md (or appends it); other sections stay as they are."""
    assert section[0].strip() == HEADING, section[0]
    replace_section(section, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ratings.DEFAULT_ROUNDS)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()

    table = ["| votes | models | leaderboard (fit + bootstrap + matrix) |", "|---|---|---|"]
    for n_votes, n_models in ((400, 4), (4000, 4), (4000, 8), (40000, 8)):
        records = bt_votes(seed=1, n=n_votes, strengths=strengths(n_models))
        took = timed(lambda r=records: ratings.leaderboard(r, rounds=args.rounds), args.reps)
        table.append(f"| {n_votes} | {n_models} | {took:.3f} s |")
        print(table[-1], flush=True)

    records = bt_votes(seed=1, n=400, strengths=strengths(4))
    one_each = timed(lambda: per_sample_bootstrap(records, args.rounds), args.reps)
    joint = timed(lambda: joint_bootstrap(records, args.rounds), args.reps)
    gap = float(np.max(np.abs(per_sample_bootstrap(records, 200) - joint_bootstrap(records, 200)))) * ratings.SCALE
    line = (
        f"{args.rounds} bootstrap samples of 400 votes, 4 models: one `minimize` per sample {one_each:.3f} s, "
        f"all samples in one `minimize` {joint:.3f} s: {one_each / joint:.1f}x faster; largest difference "
        f"between the two sets of ratings {gap:.3f} points."
    )
    print(line)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    section = [
        HEADING,
        "",
        f"`python bench/bench_ratings.py --rounds {args.rounds} --reps {args.reps} --record`",
        "",
        "`components.features.ratings.leaderboard` (what `/leaderboard` and the page run; cached per state of "
        f"the votes file) on votes drawn from a Bradley-Terry model, {args.rounds} bootstrap samples, "
        f"median of {args.reps}.",
        "",
        *table,
        "",
        line,
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.node()}: {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load:.1f} at the end (shared cores).",
    ]
    if args.record:
        record(section)
        print(f"recorded in {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
