"""Gradio's queue woken by its news instead of polling every millisecond: idle costs no CPU, decode is not preempted.

Gradio 6's queue (gradio/queueing.py, `Queue.start_processing`) looks for work by sleeping
`sleep_when_free` = 1 ms between looks whenever nothing can start, and its progress loop
(`start_progress_updates`) every 10 ms: the server's event loop wakes about a thousand times a second for
as long as the app runs. Measured on 2 cores: 7 % of a core while idle, and while llama.cpp decodes,
a thousand preemptions a second of one of its two threads, which the other then waits for at its next
barrier. Here the look for work waits instead until there is news (an event pushed, a job finished),
with a fallback of IDLE_CHECK_S, and progress is looked at every PROGRESS_S (nothing in this app
reports progress through Gradio; the engines' own status lines are stream updates).

Gradio's own loops stay as they are: the sleeps they call in `gradio.queueing` end early on news when
the delay is a NewsWait, and are plain sleeps otherwise, so a Gradio that stops calling them only loses
this module's saving, never its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import types
from typing import Any

from gradio import queueing

#: the longest a queued event can wait for a look when its news was somehow not told (none is known)
IDLE_CHECK_S = 0.5
#: how often the progress loop looks for pending progress (Gradio: 10 ms)
PROGRESS_S = 0.1


class NewsWait(float):
    """A sleep's delay that ends early when the queue has news; its value is the longest wait."""

    def __new__(cls, longest: float) -> NewsWait:
        wait = super().__new__(cls, longest)
        wait._news = None
        return wait

    def _event(self) -> asyncio.Event:
        loop = asyncio.get_running_loop()
        if self._news is None or self._news[0] is not loop:
            self._news = (loop, asyncio.Event())
        return self._news[1]

    def tell(self) -> None:
        """There is news: a waiting look ends now (called on the queue's event loop)."""
        self._event().set()

    async def wait(self) -> None:
        """Until news or the longest wait; news told before the wait began ends it at once."""
        news = self._event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(news.wait(), float(self))
        news.clear()


class _QueueingAsyncio(types.ModuleType):
    """asyncio as gradio.queueing sees it: the same module, but a sleep for a NewsWait waits for news."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float, result: Any = None) -> Any:
        if isinstance(delay, NewsWait):
            await delay.wait()
            return result
        return await asyncio.sleep(delay, result)


def quiet_queue(queue: Any, idle_check_s: float = IDLE_CHECK_S) -> NewsWait:
    """Makes a Gradio queue (Blocks._queue, before it starts) wait for news instead of polling; returns its wait."""
    if not isinstance(queueing.asyncio, _QueueingAsyncio):
        queueing.asyncio = _QueueingAsyncio("asyncio")
    news = NewsWait(idle_check_s)
    queue.sleep_when_free = news
    queue.progress_update_sleep_when_free = PROGRESS_S
    push, process_events = queue.push, queue.process_events

    @functools.wraps(push)
    async def push_and_tell(*args: Any, **kwargs: Any) -> Any:
        try:
            return await push(*args, **kwargs)
        finally:
            news.tell()

    @functools.wraps(process_events)
    async def process_and_tell(*args: Any, **kwargs: Any) -> Any:
        try:
            return await process_events(*args, **kwargs)
        finally:
            news.tell()  # a concurrency slot is free again

    queue.push = push_and_tell
    queue.process_events = process_and_tell
    return news
