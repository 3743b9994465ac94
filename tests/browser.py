"""What the browser tests share: Debian's chromium launched through playwright, and the stats line as a regex."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from components.vocabulary.messages import MESSAGES

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_fixture(scope: str = "module") -> Callable[..., Iterator[Any]]:
    """A pytest fixture factory: `browser = browser_fixture()` gives a launched chromium (skips without it)."""
    import pytest

    @pytest.fixture(scope=scope)  # type: ignore[misc]
    def _browser() -> Iterator[Any]:
        from playwright.sync_api import sync_playwright

        if not Path(CHROMIUM).exists():
            pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()

    return _browser


def stats_pattern(lang: str, multiline: bool = False) -> re.Pattern[str]:
    """The stats line of components/vocabulary/messages.py as a regex with named groups ttft, rate, tokens, reason,
    and `note`: the warnings of the answer's language and register that may follow ("· ⚠ Englisch")."""
    pattern = re.escape(MESSAGES["stats_line"][lang])
    for name in ("ttft", "rate", "tokens", "reason"):
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>[^·\\n]+?)")
    return re.compile(pattern + r"(?: · (?P<note>⚠[^\n]*))?\s*$", re.MULTILINE if multiline else 0)


def set_slider(page: Any, elem_id: str, value: float, timeout_s: float = 20.0) -> None:
    """Types into a slider's number box until the slider holds the value (a value typed while the
    accordion's content is still mounting can be reset to the initial one: type it again)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    track = page.locator(f"#{elem_id} input[type=range]")
    deadline = time.monotonic() + timeout_s
    while True:
        box.fill(str(value))
        box.press("Enter")
        time.sleep(0.4)
        if float(track.input_value()) == float(value) and float(box.input_value()) == float(value):
            return
        assert time.monotonic() < deadline, f"{elem_id} did not take {value}"
