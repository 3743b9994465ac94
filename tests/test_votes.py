"""The votes file under load and crashes: concurrent visitors, double clicks, a writer killed mid-line, torn lines."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from components.features.compare import PaneResult, Round, VoteLog, viewer_of, vote_record
from components.vocabulary.generation import InputError

ROOT = Path(__file__).resolve().parent.parent


def blind_round(n: int, text: str = "Antwort") -> Round:
    panes = [PaneResult(0, f"a{n % 3}/q", done=True, text=text), PaneResult(1, "b/q", done=True, text=text)]
    return Round(f"Frage {n}", panes, blind=True, revealed=False)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")


async def test_32_visitors_voting_at_once_lose_no_vote_and_a_second_click_changes_nothing(tmp_path: Path) -> None:
    log = VoteLog(tmp_path / "votes.jsonl")
    rounds = [blind_round(n, "ä" * 20_000) for n in range(32)]  # 40 kB lines: bigger than one page or pipe buffer
    viewers = [viewer_of(f"session-{n}") for n in range(32)]
    # every visitor clicks twice at once (A, then B or Tie before the first is written)
    results = await asyncio.gather(
        *[log.vote(r, "A", v) for r, v in zip(rounds, viewers, strict=True)],
        *[log.vote(r, "B" if n % 2 else "tie", v) for n, (r, v) in enumerate(zip(rounds, viewers, strict=True))],
        return_exceptions=True,
    )
    firsts, seconds = results[:32], results[32:]
    assert firsts == ["A"] * 32
    assert all(isinstance(e, InputError) and e.key == "err_vote_twice" for e in seconds), seconds
    raw = lines_of(log.path)
    assert raw[-1] == b"" and len(raw) == 33
    records = [json.loads(line) for line in raw[:-1]]
    assert sorted(r["round_id"] for r in records) == sorted(r.round_id for r in rounds)
    assert all(r["winner"] == "A" and r["schema"] == 2 for r in records)
    assert {r["viewer"] for r in records} == set(viewers) and "session-1" not in log.path.read_text(encoding="utf-8")
    assert all(r.winner == "A" and r.revealed for r in rounds)
    board = await log.leaderboard(rounds=50)
    assert board.tally.votes == 32 and board.tally.not_counted["duplicate"] == 0


def test_32_threads_appending_at_once_write_whole_lines(tmp_path: Path) -> None:
    log = VoteLog(tmp_path / "votes.jsonl")
    barrier = threading.Barrier(32)
    errors: list[BaseException] = []

    def visitor(n: int) -> None:
        try:
            barrier.wait()
            for k in range(5):
                log.append(vote_record(blind_round(n, f"{n}-{k} " * 8_000), "A", f"v{n}") | {"round_id": f"{n}-{k}"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=visitor, args=(n,)) for n in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    records, broken = log.read_lines()
    assert broken == 0 and len(records) == 160
    assert len({r["round_id"] for r in records}) == 160
    for r in records:  # each line holds exactly its own answer text, never a neighbour's
        n, k = r["round_id"].split("-")
        assert r["panes"][0]["output"] == f"{n}-{k} " * 8_000


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from components.features.compare import VoteLog
    log = VoteLog(sys.argv[2])
    tag, size, count = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    panes = [{"letter": "A", "model": "x/q", "output": "x" * size}, {"letter": "B", "model": "y/q"}]
    for k in range(count):
        log.append({"schema": 2, "round_id": f"{tag}-{k}", "viewer": "v", "panes": panes, "winner": "A"})
        print(k, flush=True)  # acknowledged: the vote is on disk
    """
)


def start_writer(path: Path, tag: str, size: int, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ROOT), str(path), tag, str(size), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_processes_writing_at_once_write_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "votes.jsonl"
    writers = [start_writer(path, f"p{n}", 300_000, 8) for n in range(4)]
    for w in writers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0 and out.split() == [str(k) for k in range(8)]
    records, broken = VoteLog(path).read_lines()
    assert broken == 0 and sorted(r["round_id"] for r in records) == sorted(
        f"p{n}-{k}" for n in range(4) for k in range(8)
    )


def test_a_writer_killed_mid_stream_loses_at_most_the_vote_being_written(tmp_path: Path) -> None:
    """kill -9 while it appends 2 MB lines, three times: every acknowledged vote survives, at most one line is torn,
    and the next writer's vote is whole."""
    path = tmp_path / "votes.jsonl"
    acked: set[str] = set()
    for attempt in range(3):
        writer = start_writer(path, f"k{attempt}", 2_000_000, 10_000)
        assert writer.stdout is not None
        for _ in range(3 + attempt * 2):
            acked.add(f"k{attempt}-{int(writer.stdout.readline())}")
        time.sleep(0.005 * attempt)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        records, broken = VoteLog(path).read_lines()
        ids = {r["round_id"] for r in records}
        assert acked <= ids, "an acknowledged vote was lost"
        assert broken <= 1, f"attempt {attempt}: {broken} unreadable lines"
        # the next append first ends a torn line, so its own vote is never glued to it
        after = {"schema": 2, "round_id": f"after-{attempt}", "viewer": "v", "winner": "tie"}
        VoteLog(path).append(after | {"panes": [{"model": "x/q"}, {"model": "y/q"}]})
        acked.add(f"after-{attempt}")
        records, _ = VoteLog(path).read_lines()
        assert f"after-{attempt}" in {r["round_id"] for r in records}
    board = VoteLog(path).board(rounds=50)
    assert board.tally.votes >= len(acked)


def test_a_torn_last_line_is_skipped_and_the_next_vote_is_whole(tmp_path: Path) -> None:
    """What a crash mid-write leaves: half a line without its newline. Before the fix, the next vote was glued to it
    and lost with it."""
    path = tmp_path / "votes.jsonl"
    log = VoteLog(path)
    log.append(vote_record(blind_round(1), "A", "v1"))
    whole = path.read_bytes()
    torn = json.dumps(vote_record(blind_round(2), "B", "v2")).encode()[:-40]
    path.write_bytes(whole + torn)
    records, broken = log.read_lines()
    assert len(records) == 1 and broken == 1
    log.append(vote_record(blind_round(3), "tie", "v3"))
    records, broken = log.read_lines()
    assert [r["winner"] for r in records] == ["A", "tie"] and broken == 1
    assert path.read_bytes().endswith(b"\n") and path.read_bytes().count(b"\n") == 3
    board = log.board(rounds=50)
    assert board.tally.votes == 2 and board.tally.not_counted["unreadable"] == 1


def test_a_failed_write_releases_the_vote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = VoteLog(tmp_path / "votes.jsonl")
    r = blind_round(1)

    def full_disk(record: dict[str, Any]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(log, "append", full_disk)
    with pytest.raises(OSError):
        asyncio.run(log.vote(r, "A", "v"))
    assert r.winner is None and not r.revealed
    monkeypatch.undo()
    assert asyncio.run(log.vote(r, "A", "v")) == "A" and len(log.read()) == 1


def test_commit_scheduler_is_off_without_a_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    from components.features.compare import hub_scheduler

    monkeypatch.delenv("PLAYGROUND_VOTES_HF_REPO", raising=False)
    assert hub_scheduler() is None


def test_appends_hold_the_hub_schedulers_lock(tmp_path: Path) -> None:
    """A CommitScheduler reads the folder while holding its lock; an append must never run meanwhile."""

    class SchedulerLock:
        """The part of huggingface_hub's CommitScheduler the votes file uses: its `lock` (a threading.Lock)."""

        def __init__(self) -> None:
            self.lock = threading.Lock()

    scheduler = SchedulerLock()
    log = VoteLog(tmp_path / "votes.jsonl", scheduler=scheduler)
    with scheduler.lock:
        writer = threading.Thread(target=log.append, args=({"schema": 2, "panes": [], "winner": "A"},))
        writer.start()
        writer.join(0.3)
        assert writer.is_alive() and not log.path.exists(), "the append waited for the upload"
    writer.join(5)
    assert len(log.read()) == 1


HUB_CHECK = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from components.features.compare import hub_scheduler
    start = time.monotonic()
    print(hub_scheduler(Path(sys.argv[2])), round(time.monotonic() - start, 1))
    """
)


@pytest.mark.parametrize("local_file", [False, True])
def test_without_the_hub_votes_stay_local_and_nothing_is_overwritten(tmp_path: Path, local_file: bool) -> None:
    """Offline, huggingface_hub raises LocalEntryNotFoundError, a subclass of EntryNotFoundError: it must not pass
    for "no votes in the repository yet" (the scheduler would then replace the repository's votes with this
    empty file), and the scheduler's own repository check must not crash the start either."""
    path = tmp_path / "votes.jsonl"
    if local_file:
        VoteLog(path).append({"schema": 2, "panes": [], "winner": "A"})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PLAYGROUND_VOTES_HF_REPO": "someone/playground-votes"}
    result = subprocess.run(
        [sys.executable, "-c", HUB_CHECK, str(ROOT), str(path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    scheduler, _seconds = result.stdout.split()
    assert scheduler == "None"
    assert "votes not pushed to someone/playground-votes" in result.stderr
    assert path.exists() == local_file
