"""Leaderboard controlled for length and style: its computation time against the plain Bradley-Terry one.

Run from the project root:  python bench/bench_style_control.py [--rounds 1000] [--reps 3] [--record]
Vote files of 400, 4 000 and 20 000 votes between 4 models, drawn from known strengths plus a pull towards the longer
answer (tests/test_style_control.py's generator), each through `style_control.leaderboard` (what `/leaderboard` and
the page run) with method "plain" and "style", median of `--reps`; printed with whether each recovered the true
order. `--record` writes the table into bench/RESULTS.md under "## Style control" (other sections stay).
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_startup import replace_section  # noqa: E402

from components.features import style_control  # noqa: E402
from tests.test_style_control import TRUE, styled_votes  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Style control"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="*", default=[400, 4000, 20000])
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    started, load_start = dt.datetime.now(), os.getloadavg()[0]
    rows = []
    for size in args.sizes:
        records = styled_votes(seed=1, n=size)
        cells = []
        for method in style_control.METHODS:
            times = []
            board = None
            for _ in range(args.reps):
                t0 = time.perf_counter()
                board = style_control.leaderboard(records, rounds=args.rounds, method=method)
                times.append(time.perf_counter() - t0)
            assert board is not None
            right = [row.model for row in board.rows] == list(TRUE)
            cells.append(f"{statistics.median(times):.2f} s ({'true order' if right else 'not the true order'})")
            print(f"{size} votes, {method}: {cells[-1]}", flush=True)
        rows.append(f"| {size} | {cells[0]} | {cells[1]} |")
    load_end = os.getloadavg()[0]
    if args.record:
        replace_section(
            [
                HEADING,
                "",
                f"`python bench/bench_style_control.py --rounds {args.rounds} --reps {args.reps} --record`: votes "
                "between 4 models drawn from known strengths plus a pull towards the longer answer (the weaker the "
                "model, the longer it writes); `style_control.leaderboard` with its bootstrap intervals, median of "
                f"{args.reps}.",
                "",
                "| votes | plain Bradley-Terry | controlled for length and style |",
                "|---|---|---|",
                *rows,
                "",
                f"Measured {started:%Y-%m-%d %H:%M} on {os.cpu_count()} cores, Python {platform.python_version()}; "
                f"load average {load_start:.1f} at the start, {load_end:.1f} at the end (cores shared with other "
                "work). The controlled fit cannot pool identical battles as the plain one does (each battle has its "
                "own style features), so it costs more per vote; it is computed only when asked for (the page's "
                'switch, `method="style"`), once per votes-file state, on the leaderboard\'s shared lane.',
            ],
            RESULTS,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
