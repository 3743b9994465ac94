"""The blind session mode in a real browser: three prompts, each to a random pair, ending with that session's board."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.features.batch import load_prompts
from components.vocabulary.messages import t
from tests.browser import browser_fixture
from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "bench" / "out"
PROMPTS = load_prompts(ROOT / "prompts" / "german_eval.yaml")
#: A vote of another session that must not show up on this session's board.
OTHER = {
    "schema": 2,
    "round_id": "old",
    "viewer": "someone",
    "session": "another-session",
    "panes": [{"letter": "A", "model": "other-variant/x"}, {"letter": "B", "model": "other-variant/y"}],
    "winner": "A",
    "winner_model": "other-variant/x",
}

browser = browser_fixture()


@pytest.fixture
def session_app(tgi_playground: tuple[Any, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import app

    standin, playground = tgi_playground
    votes = tmp_path / "votes.jsonl"
    votes.write_text(json.dumps(OTHER) + "\n", encoding="utf-8")
    monkeypatch.setenv("PLAYGROUND_VOTES_FILE", str(votes))
    monkeypatch.setenv("PLAYGROUND_BOOTSTRAP_ROUNDS", "200")
    demo = app.build_app(playground)
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=app.CSS, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}", standin, votes
    finally:
        demo.close()


def wait_until(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_blind_session_of_three_prompts_ends_with_its_leaderboard(session_app: Any, browser: Any) -> None:
    url, standin, votes = session_app
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="de-DE")
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(url + "/")
        page.get_by_role("tab", name=t("tab_compare", "de")).click()
        page.locator("#session-box").get_by_text(t("session_title", "de")).first.click()
        start = page.locator("#session-start")
        start.wait_for()
        # two TGI builds are chosen by default; add a third model
        models = page.locator("#session-models")
        assert "TGI" in models.inner_text()
        models.locator("input").click()
        models.locator("input").fill("LeoLM hessianai 7B")
        page.locator("[role=option]", has_text="LeoLM hessianai 7B Chat · TGI").first.click()
        page.keyboard.press("Escape")
        wait_until(lambda: models.inner_text().count("TGI") == 3, "three chosen models")
        start.click()

        progress = page.locator("#session-progress")
        reveal = page.locator("#session-reveal")
        board = page.locator("#session-board")
        vote_a = page.locator("#session-vote-a")
        choices = ["#session-vote-a", "#session-vote-b", "#session-vote-tie"]
        seen_models: set[str] = set()
        for n, prompt in enumerate(PROMPTS[:3]):
            wait_until(lambda n=n: f"Prompt {n + 1} von 3" in progress.inner_text(), f"prompt {n + 1}")
            assert prompt.title in progress.inner_text()
            wait_until(lambda: vote_a.is_enabled(), f"the vote buttons of prompt {n + 1}")
            panes = page.locator("#session-pane-1").inner_text() + page.locator("#session-pane-2").inner_text()
            assert "TGI" not in panes and "Modell A" in page.locator("#session-pane-1").inner_text()
            assert board.inner_text().strip() == "", "the board comes only at the end"
            page.locator(choices[n]).click()
            wait_until(lambda: "TGI" in reveal.inner_text(), "the names")
            seen_models |= {line for line in reveal.inner_text().splitlines() if "TGI" in line}
            if n < 2:
                page.locator("#session-next").click()
        wait_until(lambda: t("session_board_title", "de", n=3) in board.inner_text(), "the session's leaderboard")
        text = board.inner_text()
        assert "Gezählte Stimmen: 3 · Vergleiche: 3" in text
        assert "other-variant" not in text, "another session's votes are not on this board"
        assert t("session_done", "de", n=3) in reveal.inner_text()
        assert not page.locator("#session-next").is_enabled() and not vote_a.is_enabled()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "blind_session_de.png"), full_page=True)
        # the same board in English
        page.locator("#lang").get_by_text("English").click()
        wait_until(lambda: t("session_board_title", "en", n=3) in board.inner_text(), "the English board")
        assert "Votes counted: 3 · battles: 3" in board.inner_text()
        assert t("session_done", "en", n=3) in reveal.inner_text()
        assert "Prompt 3 of 3" in progress.inner_text()
        page.screenshot(path=str(SHOTS / "blind_session_en.png"), full_page=True)
    finally:
        context.close()

    records = [json.loads(line) for line in votes.read_text(encoding="utf-8").splitlines()]
    session = [r for r in records if r["session"] != "another-session"]
    assert len(session) == 3 and len({r["session"] for r in session}) == 1
    assert [r["prompt_id"] for r in session] == [p.id for p in PROMPTS[:3]]
    assert [r["category"] for r in session] == [p.category for p in PROMPTS[:3]]
    assert [r["winner"] for r in session] == ["A", "B", "tie"]
    for r in session:
        pair = [p["model"] for p in r["panes"]]
        assert len(set(pair)) == 2 and all(m.endswith("/tgi") for m in pair)
    # each prompt went to the stand-in as the prompt set's text, to both models of its pair
    sent = [call.body["inputs"] for call in standin.generation_calls()]
    for prompt in PROMPTS[:3]:
        assert sum(prompt.text in s for s in sent) == 2, prompt.id
