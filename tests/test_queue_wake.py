"""Gradio's queue woken by news (components/serving/queue_wake.py): no polling while idle, no event left waiting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import pytest
from gradio_client import Client

from components.serving.queue_wake import NewsWait, quiet_queue


def test_a_wait_ends_on_news_told_before_or_during_it_and_otherwise_after_its_longest() -> None:
    async def scenario() -> tuple[float, float, float]:
        wait = NewsWait(0.3)
        wait.tell()  # news before the wait began is not lost
        start = time.perf_counter()
        await wait.wait()
        told_before = time.perf_counter() - start
        asyncio.get_running_loop().call_later(0.05, wait.tell)
        start = time.perf_counter()
        await wait.wait()
        told_during = time.perf_counter() - start
        start = time.perf_counter()
        await wait.wait()  # the news was used up: this one waits its longest
        return told_before, told_during, time.perf_counter() - start

    before, during, longest = asyncio.run(scenario())
    assert before < 0.1
    assert 0.04 <= during < 0.25
    assert longest >= 0.29


def context_switches() -> int:
    """Context switches of every thread of this process so far (Linux /proc)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        total += sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches" in line)
    return total


@pytest.fixture(scope="module")
def one_at_a_time() -> Iterator[str]:
    """A Blocks app whose one event runs one at a time, with a quiet queue whose fallback look is 30 s away."""

    def slow_echo(text: str) -> str:
        time.sleep(0.3)
        return text

    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        box.submit(slow_echo, box, out, api_name="echo", concurrency_limit=1)
    demo.queue()
    quiet_queue(demo._queue, idle_check_s=30.0)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts context switches in /proc")
def test_an_idle_queue_does_not_wake_its_event_loop(one_at_a_time: str) -> None:
    time.sleep(0.5)  # the server settles
    before = context_switches()
    time.sleep(2.0)
    switches = context_switches() - before
    # Gradio's own queue looks for work every millisecond: about 2 000 switches in these 2 s
    assert switches < 200, f"{switches} context switches in 2 s of idling"


def test_queued_events_start_when_pushed_and_when_a_slot_frees(one_at_a_time: str) -> None:
    client = Client(one_at_a_time, verbose=False)
    results: dict[int, tuple[str, float]] = {}
    start = time.perf_counter()

    def ask(i: int) -> None:
        results[i] = (client.predict(f"t{i}", api_name="/echo"), time.perf_counter() - start)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(text for text, _ in results.values()) == ["t0", "t1", "t2"]
    # one at a time, 0.3 s each: woken by news, all three are done in seconds; a missed wake-up would leave an
    # event to the 30 s fallback
    assert max(elapsed for _, elapsed in results.values()) < 15, results


def test_only_gradio_queueing_sees_the_changed_sleep(one_at_a_time: str) -> None:
    from gradio import queueing

    assert queueing.asyncio.sleep is not asyncio.sleep
    assert queueing.asyncio.Event is asyncio.Event  # everything else is asyncio's own
    assert asyncio.sleep.__module__ == "asyncio.tasks"
