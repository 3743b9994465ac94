"""Compare mode: does comparing two remote models take about as long as asking one?

Run from the project root:  python bench/bench_compare.py [--runs 5] [--tokens 100] [--rate 50] [--record]
Two TGI stand-ins (tests/tgi_standin.py), each in its own process, answer at `--rate` tokens/s until
`--tokens` tokens. One round through components/features/compare.py with one pane (model A alone) is timed
against a round with two panes (A and B on their own servers, then both on one server), alternating,
median of `--runs`. Target: two panes take at most 1.2x as long as one.
`--record` writes the figures into bench/RESULTS.md under "## Compare mode" (other sections stay).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_startup import replace_section  # noqa: E402

from components.core.service import Playground  # noqa: E402
from components.features.compare import PaneSpec, Round, run_round  # noqa: E402
from components.vocabulary.catalog import Endpoint, Quantization, QuantKind, load_catalog  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
HEADING = "## Compare mode"
TARGET = 1.2
QUESTION = "Erkläre mir wie die Fahrradwegesituation in Hamburg ist."
#: (endpoint id, family, variant) of the two compared models
MODELS = (("bench-a", "em-german", "em-german-leo-mistral"), ("bench-b", "leolm-chat", "leo-hessianai-7b-chat"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def standin(rate: float) -> Iterator[str]:
    """A TGI stand-in in its own process (so it does not share this process's GIL); yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "tests/tgi_standin.py", "--port", str(port), "--tokens-per-s", str(rate), "--endless"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the stand-in exited with {proc.returncode}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def playground_for(urls: dict[str, str]) -> Playground:
    """The real catalog plus one remote build per stand-in, served by the real TgiEngine."""
    catalog = load_catalog()
    for endpoint_id, family, variant in MODELS:
        env = endpoint_id.upper().replace("-", "_") + "_URL"
        os.environ[env] = urls[endpoint_id]
        catalog.endpoints[endpoint_id] = Endpoint(id=endpoint_id, type="tgi", url_env=env)
        catalog.with_extra(family, variant, Quantization(id=endpoint_id, kind=QuantKind.remote, endpoint=endpoint_id))
    return Playground(catalog)


async def timed_round(playground: Playground, models: list[str], tokens: int) -> tuple[float, Round]:
    specs = [PaneSpec(m, None, {"max_new_tokens": tokens}) for m in models]
    start = time.perf_counter()
    last = None
    async for r in run_round(playground, specs, QUESTION):
        last = r
    took = time.perf_counter() - start
    assert last is not None
    for pane in last.panes:
        if pane.error or not pane.stats or pane.stats["completion_tokens"] != tokens:
            raise RuntimeError(f"{pane.model_id}: {pane.error or pane.stats}")
    return took, last


async def measure(playground: Playground, runs: int, tokens: int, same_server: bool) -> dict[str, list[float]]:
    a = f"{MODELS[0][2]}/{MODELS[0][0]}"
    b = f"{MODELS[1][2]}/{MODELS[1][0]}"
    other = a if same_server else b
    await timed_round(playground, [a, other], 5)  # warm-up: /info, connections
    out: dict[str, list[float]] = {"one": [], "two": [], "ttft_one": [], "ttft_two": []}
    for _ in range(runs):
        took, r = await timed_round(playground, [a], tokens)
        out["one"].append(took)
        out["ttft_one"].append(r.panes[0].stats["ttft_s"])
        took, r = await timed_round(playground, [a, other], tokens)
        out["two"].append(took)
        out["ttft_two"].append(max(p.stats["ttft_s"] for p in r.panes))
    return out


def record(section: list[str], path: Path = RESULTS) -> None:
    """Replaces `## Compare mode` in RESULTS.md (or appends it); other sections stay as they are."""
    assert section[0].strip() == HEADING, section[0]
    replace_section(section, path)


async def main_async(args: argparse.Namespace) -> tuple[list[str], bool]:
    with standin(args.rate) as url_a, standin(args.rate) as url_b:
        playground = playground_for({"bench-a": url_a, "bench-b": url_b})
        two_servers = await measure(playground, args.runs, args.tokens, same_server=False)
        one_server = await measure(playground, args.runs, args.tokens, same_server=True)
    ideal = args.tokens / args.rate
    rows = []
    ok = True
    for name, res in (("two models, two servers", two_servers), ("two models, one server", one_server)):
        one = statistics.median(res["one"])
        two = statistics.median(res["two"])
        ratio = two / one
        ok = ok and ratio <= TARGET
        rows.append((name, one, two, ratio, statistics.median(res["ttft_one"]), statistics.median(res["ttft_two"])))
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "?"
    section = [
        HEADING,
        "",
        f"`python bench/bench_compare.py --runs {args.runs} --tokens {args.tokens} --rate {args.rate:g} --record`",
        "",
        f"TGI stand-ins (tests/tgi_standin.py, each in its own process) at {args.rate:g} tokens/s, "
        f"{args.tokens} tokens per answer (ideal {ideal:.2f} s); one comparison round through "
        "`components/features/compare.py` (the Compare tab's and `/compare`'s path, real TgiEngine) with one pane vs "
        f"two panes at once, alternating, median of {args.runs}.",
        "",
        "| setup | one model | two models at once | ratio (target ≤ 1.2) | first token, one | first token, two |",
        "|---|---|---|---|---|---|",
    ]
    for name, one, two, ratio, t1, t2 in rows:
        verdict = "ok" if ratio <= TARGET else "NOT within target"
        ttfts = f"{t1 * 1000:.0f} ms | {t2 * 1000:.0f} ms"
        section.append(f"| {name} | {one:.2f} s | {two:.2f} s | {ratio:.3f} ({verdict}) | {ttfts} |")
    section += [
        "",
        f"Measured {dt.date.today().isoformat()} on {platform.node() or 'this machine'}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load} at the end (shared cores).",
    ]
    return section, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--record", action="store_true", help="write the figures into bench/RESULTS.md")
    args = parser.parse_args()
    section, ok = asyncio.run(main_async(args))
    print("\n".join(section))
    if args.record:
        record(section)
        print(f"recorded in {RESULTS.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
