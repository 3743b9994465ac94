"""Benchmark: the app's own CPU per answer, thread by thread, beside llama.cpp's decoding threads.

On a 2-core machine every millisecond the app spends while llama.cpp decodes is taken from llama.cpp's two
threads. This starts the app (`python app.py`, tests/app_server.py) with the catalog of bench_llama.py, sends
`--answers` answers through `/chat` with bench_llama's lean client, and reads the CPU time of every thread of
the app's process from /proc before and after: the two busiest threads are llama.cpp's decoding threads, the
rest is the app's own (the event loop, the engine's stream thread, llama-server's threads). It also reads how
often the idle app's threads are switched in (`--idle-s` seconds before the first answer).

    python bench/bench_app_threads.py --answers 6 --record
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_llama import RANDOM_ID, AppClient, Model, bench_catalog, run_app, stat_cpu_s  # noqa: E402
from bench.bench_startup import machine, replace_section  # noqa: E402

SECTION = "## The app's own CPU per answer"


def thread_stats(pid: int) -> dict[str, tuple[float, int]]:
    """Thread id -> (CPU seconds, context switches) of every thread of `pid` (Linux /proc)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        task = Path(f"/proc/{pid}/task/{tid}")
        try:
            cpu = stat_cpu_s(task / "stat")
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended
        out[tid] = (cpu, sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line))
    return out


def deltas(before: dict[str, tuple[float, int]], after: dict[str, tuple[float, int]]) -> list[tuple[float, int]]:
    """Per thread (CPU seconds, switches) between two readings, busiest first."""
    zero = (0.0, 0)
    rows = [(cpu - before.get(tid, zero)[0], sw - before.get(tid, zero)[1]) for tid, (cpu, sw) in after.items()]
    return sorted(rows, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=6, help="answers per model")
    parser.add_argument("--models", default="offline,random")
    parser.add_argument("--tokens", default="offline=200,random=128")
    parser.add_argument("--idle-s", type=float, default=5.0)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()

    from bench.make_random_gguf import ensure
    from components.vocabulary.catalog import load_catalog
    from tests.app_server import running_app

    tokens = dict(item.split("=") for item in args.tokens.split(","))
    catalog = bench_catalog(ensure(), Path(tempfile.mkdtemp(prefix="bench-threads-")))
    ids = {"offline": load_catalog().default.id, "random": RANDOM_ID}
    names = {"offline": "offline SmolLM2-135M Q4_1", "random": "random Llama 1.17B Q4_0"}
    rows: list[str] = []
    started = dt.datetime.now()
    with running_app({"PLAYGROUND_CATALOG": str(catalog)}) as app:
        pid = app.process.pid
        client = AppClient(app.url)
        time.sleep(2)
        before = thread_stats(pid)
        time.sleep(args.idle_s)
        idle = deltas(before, thread_stats(pid))
        idle_line = (
            f"Idle for {args.idle_s:.0f} s before the first answer: {sum(c for c, _ in idle) * 1000:.0f} ms of CPU "
            f"in all threads, the most switched-in thread {max(s for _, s in idle) / args.idle_s:.0f} times a second."
        )
        print(idle_line, flush=True)
        for key in args.models.split(","):
            model = Model(names[key], ids[key], Path(), int(tokens[key]))
            run_app(client, model)  # loads the model, warms up
            before = thread_stats(pid)
            rates = [run_app(client, model).decode_tps or 0 for _ in range(args.answers)]
            spent = deltas(before, thread_stats(pid))
            n = args.answers
            llama = sum(c for c, _ in spent[:2]) / n
            others = spent[2:]
            own = sum(c for c, _ in others) / n
            row = (
                f"| {names[key]} | {model.max_new_tokens} | {statistics.median(rates):.1f} | {llama * 1000:.0f} ms | "
                f"{own * 1000:.0f} ms | "
                + ", ".join(f"{c / n * 1000:.0f} ms ({s / n:.0f})" for c, s in others[:3])
                + f" | {os.getloadavg()[0]:.2f} |"
            )
            rows.append(row)
            print(row, flush=True)
        client.close()
    command = "python bench/bench_app_threads.py " + " ".join(a for a in sys.argv[1:] if a != "--record")
    text = [
        SECTION,
        "",
        f"`{command.strip()} --record`",
        "",
        "CPU time per answer through `/chat` (the app's defaults), from /proc per thread of the app's process: "
        "llama.cpp's two decoding threads, and every other thread together (the app's own work: the event loop, the "
        "engine's stream thread, llama-server's threads), with the three busiest of those (switches per answer in "
        f"brackets). {args.answers} answers per model after a warm-up, greedy, bench_llama's question.",
        "",
        "| model | tokens | decode tokens/s | llama.cpp's two threads | all other threads | the three busiest others "
        "| load average |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        idle_line,
        "",
        f"Measured {started:%Y-%m-%d %H:%M} on {machine()}.",
    ]
    print("\n".join(text))
    if args.record:
        replace_section(text)


if __name__ == "__main__":
    main()
