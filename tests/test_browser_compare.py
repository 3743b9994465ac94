"""The compare tab in a real browser, against TGI stand-ins of different speeds (and a failing one)."""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.vocabulary.catalog import Endpoint, Quantization, QuantKind, load_catalog
from components.vocabulary.messages import t
from tests.browser import browser_fixture, set_slider, stats_pattern
from tests.conftest import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "bench" / "out"
TRACEBACK_MARKERS = ("Traceback (most recent call last)", 'File "/', "gradio.exceptions")

SLOW_REPLY = "Langsam, aber gründlich. "
#: (endpoint id, family id, variant id, family name in the picker, stand-in settings)
SERVERS = {
    "slow": (
        "em-german",
        "em-german-leo-mistral",
        "EM German",
        {"tokens_per_s": 12.0, "endless": True, "reply": SLOW_REPLY},
    ),
    "fast": ("leolm-chat", "leo-hessianai-7b-chat", "LeoLM Chat", {"tokens_per_s": 200.0}),
    "broken": ("igel", "instruct-igel-001", "IGEL", {"tokens_per_s": 40.0, "fail": "generation", "fail_after": 3}),
}
FAST_REPLY = "Berlin ist die Hauptstadt von Deutschland."


STATS_DE = stats_pattern("de", multiline=True)


# ---- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def standins() -> Iterator[dict[str, Any]]:
    from tests.tgi_standin import StandinConfig, StandinServer

    servers = {name: StandinServer(StandinConfig(**spec[3])).start() for name, spec in SERVERS.items()}
    yield {name: server for name, server in servers.items()}
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def votes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("votes") / "sub" / "votes.jsonl"


@pytest.fixture(scope="module")
def app_url(standins: dict[str, Any], votes_file: Path) -> Iterator[str]:
    """The real app in this process, its catalog extended by one remote build per stand-in."""
    import app
    from components.core.service import EngineRegistry, Playground

    saved = {k: os.environ.get(k) for k in ("PLAYGROUND_VOTES_FILE", *[f"COMPARE_{n.upper()}_URL" for n in SERVERS])}
    os.environ["PLAYGROUND_VOTES_FILE"] = str(votes_file)
    catalog = load_catalog()
    for name, (family, variant, _, _) in SERVERS.items():
        env = f"COMPARE_{name.upper()}_URL"
        os.environ[env] = standins[name].url
        catalog.endpoints[name] = Endpoint(id=name, type="tgi", url_env=env, label=f"{name} server")
        quant = Quantization(id=name, kind=QuantKind.remote, label=f"Server {name}", endpoint=name)
        catalog.with_extra(family, variant, quant)
    demo = app.build_app(Playground(catalog, EngineRegistry(catalog)))
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=app.CSS, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        demo.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


browser = browser_fixture()


class ComparePage:
    def __init__(self, page: Any) -> None:
        self.page = page

    def pane(self, n: int) -> Any:
        return self.page.locator(f"#compare-pane-{n}")

    def answers(self, n: int) -> Any:
        return self.pane(n).locator("[data-testid=bot]")

    def answer(self, n: int) -> str:
        bots = self.answers(n)
        return bots.last.inner_text() if bots.count() else ""

    def stats(self, n: int) -> str:
        return self.page.locator(f"#compare-stats-{n}").inner_text()

    def label(self, n: int) -> str:
        return self.pane(n).locator("[data-testid=block-label]").inner_text().strip()

    def choose(self, elem_id: str, option: str) -> None:
        self.page.locator(f"#{elem_id} input").click()
        self.page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()

    def pick(self, pane: int, server: str) -> None:
        self.choose(f"compare-family-{pane}", SERVERS[server][2])
        quant = self.page.locator(f"#compare-quant-{pane} input")
        self.wait_until(lambda: "Server" not in quant.input_value() or server in quant.input_value(), "the family")
        time.sleep(0.3)  # the family's update of the variant and quantization pickers lands first
        self.choose(f"compare-quant-{pane}", f"Server {server}")
        self.wait_until(lambda: f"Server {server}" in quant.input_value(), f"pane {pane} on server {server}")

    def set_number(self, elem_id: str, value: float) -> None:
        set_slider(self.page, elem_id, value)

    def override(self, pane: int, max_new_tokens: int) -> None:
        self.page.locator(f"#compare-override-{pane} input").check()
        self.set_number(f"compare-max-new-tokens-{pane}", max_new_tokens)

    def send(self, text: str) -> None:
        box = self.page.locator("#compare-input textarea")
        box.fill(text)
        box.press("Enter")

    def wait_until(self, check: Any, what: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.03)


@pytest.fixture
def open_compare(app_url: str, browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []
    pages: list[ComparePage] = []

    def _open() -> ComparePage:
        context = browser.new_context(viewport={"width": 1500, "height": 1100}, locale="de-DE", accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(app_url + "/")
        page.get_by_role("tab", name=t("tab_compare", "de")).click()
        page.locator("#compare-input textarea").wait_for()
        cp = ComparePage(page)
        pages.append(cp)
        return cp

    yield _open
    try:
        for cp in pages:
            body = cp.page.locator("body").inner_text()
            for marker in TRACEBACK_MARKERS:
                assert marker not in body, f"{marker!r} is in the page"
    finally:
        for context in contexts:
            context.close()


# ---- tests -------------------------------------------------------------------------------------------
def test_fast_pane_finishes_first_while_slow_pane_streams(open_compare: Any, standins: dict[str, Any]) -> None:
    cp = open_compare()
    cp.pick(1, "slow")
    cp.pick(2, "fast")
    cp.override(1, 30)  # 30 tokens at 12 tokens/s: about 2.5 s
    start = time.monotonic()
    cp.send("Wie ist das Wetter?")
    slow_texts: list[str] = []
    fast_done_at = slow_done_at = None
    slow_at_fast_done = ""
    while slow_done_at is None:
        now = time.monotonic() - start
        slow_text = cp.answer(1)
        if slow_text and (not slow_texts or slow_texts[-1] != slow_text):
            slow_texts.append(slow_text)
        if fast_done_at is None and STATS_DE.search(cp.answer(2)):
            fast_done_at = now
            slow_at_fast_done = slow_text
        if STATS_DE.search(cp.answer(1)):
            slow_done_at = now
        assert now < 60, "the comparison never finished"
        time.sleep(0.03)
    assert fast_done_at is not None and fast_done_at < slow_done_at
    assert FAST_REPLY in cp.answer(2)
    # the slow pane did not wait for the fast one: it was already on screen, and kept growing after
    assert STATS_DE.search(cp.answer(1)) and not STATS_DE.search(slow_at_fast_done)
    growing = [s for s in slow_texts if not STATS_DE.search(s)]
    assert len(growing) >= 3, f"the slow pane was not streamed: {growing!r}"
    slow_stats = STATS_DE.search(cp.answer(1))
    assert slow_stats and slow_stats["tokens"].strip() == "30"
    assert slow_stats["reason"].strip() == t("finish_length", "de")
    assert re.fullmatch(r"\d+ ms", STATS_DE.search(cp.answer(2))["ttft"].strip())
    # each answer's figures once, in its bubble: the line under the pane no longer repeats them
    for n in (1, 2):
        assert cp.stats(n).strip() == ""
        assert len(STATS_DE.findall(cp.page.locator(f"#compare-col-{n}").inner_text())) == 1
    # Stop is idle again once the round has ended (it was red and "active" with nothing running)
    cp.wait_until(lambda: cp.page.locator("#compare-stop").is_disabled(), "Stop idle after the round")
    # chatbot headings name the models
    assert "Server slow" in cp.label(1) and "Server fast" in cp.label(2)
    SHOTS.mkdir(parents=True, exist_ok=True)
    cp.page.screenshot(path=str(SHOTS / "compare_de.png"), full_page=True)

    # a second prompt continues each pane's own conversation
    slow_first = cp.answer(1)
    slow_calls = len(standins["slow"].standin.generation_calls())
    cp.send("Und morgen?")
    cp.wait_until(lambda: cp.pane(1).locator("[data-testid=user]").count() == 2, "the second question")
    cp.wait_until(lambda: cp.answers(2).count() == 2 and STATS_DE.search(cp.answer(1)) is not None, "second answers")
    cp.wait_until(lambda: len(STATS_DE.findall(cp.pane(1).inner_text())) == 2, "second slow answer", 60)
    slow_prompt = standins["slow"].standin.generation_calls()[slow_calls].body["inputs"]
    fast_prompt = standins["fast"].standin.generation_calls()[-1].body["inputs"]
    assert "Wie ist das Wetter?" in slow_prompt and "Und morgen?" in slow_prompt
    assert slow_first.split()[0] == "Langsam," and "Langsam, aber" in slow_prompt and FAST_REPLY not in slow_prompt
    assert "Langsam" not in fast_prompt
    assert FAST_REPLY in fast_prompt


def test_failing_pane_shows_its_error_while_the_other_finishes(open_compare: Any) -> None:
    cp = open_compare()
    cp.pick(1, "broken")
    cp.pick(2, "fast")
    cp.send("Was ist los?")
    cp.wait_until(lambda: STATS_DE.search(cp.answer(2)) is not None, "the healthy pane's answer")
    cp.wait_until(lambda: t("err_prefix", "de").strip() in cp.answer(1), "the failing pane's error")
    broken = cp.answer(1)
    assert "CUDA out of memory" in broken or "broken" in broken, broken
    assert FAST_REPLY in cp.answer(2)
    assert "Traceback" not in broken


def test_stop_stops_every_pane(open_compare: Any, standins: dict[str, Any]) -> None:
    cp = open_compare()
    cp.pick(1, "slow")
    cp.pick(2, "slow")
    cp.send("Erzähl eine lange Geschichte.")
    cp.wait_until(lambda: len(cp.answer(1)) > 20 and len(cp.answer(2)) > 20, "both panes streaming")
    clicked = time.monotonic()
    cp.page.locator("#compare-stop").click()
    cp.wait_until(
        lambda: STATS_DE.search(cp.answer(1)) is not None and STATS_DE.search(cp.answer(2)) is not None,
        "both panes stopped",
        10,
    )
    assert time.monotonic() - clicked < 5
    for n in (1, 2):
        assert STATS_DE.search(cp.answer(n))["reason"].strip() == t("finish_stopped", "de")
    assert len(standins["slow"].standin.disconnects) >= 2, "both HTTP streams must be closed"


def test_blind_vote_reveals_names_and_fills_the_leaderboard(open_compare: Any, votes_file: Path) -> None:
    cp = open_compare()
    cp.pick(1, "slow")
    cp.pick(2, "fast")
    cp.override(1, 8)
    cp.page.locator("#compare-blind input").check()
    cp.send("Wer antwortet besser?")
    vote_a = cp.page.locator("#compare-vote-a")
    cp.wait_until(lambda: vote_a.is_visible() and vote_a.is_enabled(), "the vote buttons", 30)
    assert cp.label(1) == "Modell A" and cp.label(2) == "Modell B"
    body = cp.page.locator("#compare-pane-1").inner_text() + cp.page.locator("#compare-pane-2").inner_text()
    assert "Server" not in body
    pane_a_text = cp.answer(1)
    vote_a.click()
    cp.wait_until(lambda: "Server" in cp.page.locator("#compare-reveal").inner_text(), "the reveal")
    assert cp.label(1).startswith("Modell A: ")
    assert not vote_a.is_enabled()
    cp.wait_until(lambda: votes_file.exists(), "the votes file")
    (record,) = [json.loads(line) for line in votes_file.read_text(encoding="utf-8").splitlines()]
    assert record["winner"] == "A" and record["prompt"] == "Wer antwortet besser?"
    models = [p["model"] for p in record["panes"]]
    assert sorted(models) == ["em-german-leo-mistral/slow", "leo-hessianai-7b-chat/fast"]
    assert record["winner_model"] == models[0]
    assert record["panes"][0]["output"].split()[0] in pane_a_text
    cp.page.locator("#compare-leaderboard-box").get_by_text(t("compare_leaderboard", "de")).first.click()
    board = cp.page.locator("#compare-leaderboard")
    named = board.locator(f'[title="{models[0]}"]')  # shown by its name, the id as the tooltip
    cp.wait_until(lambda: named.count() > 0, "the leaderboard")
    # the blind round shuffles the panes: pane A (the winner) is either model
    names = {"em-german-leo-mistral/slow": "EM German LeoLM Mistral", "leo-hessianai-7b-chat/fast": "LeoLM hessianai"}
    assert models[0] not in board.inner_text() and named.first.inner_text().startswith(names[models[0]])
    assert "100 %" in board.inner_text()
    assert "Gezählte Stimmen: 1 · Vergleiche: 1 · Modelle: 2." in board.inner_text()
    # votes of one model against itself left "– 0 0 0 0 –" with no reason, also after a refresh
    same = {**record, "round_id": "same", "panes": [record["panes"][0], {**record["panes"][0], "letter": "B"}]}
    with votes_file.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(same) + "\n")
    cp.page.locator("#compare-leaderboard-refresh").click()
    reason = "Nicht gezählt: dasselbe Modell auf beiden Seiten (kein Vergleich): 1."
    cp.wait_until(lambda: reason in board.inner_text(), "the reason a vote did not count")
    assert "Gezählte Stimmen: 1 ·" in board.inner_text()


def test_export_downloads_markdown_and_json(open_compare: Any) -> None:
    cp = open_compare()
    cp.pick(1, "fast")
    cp.pick(2, "slow")
    cp.override(2, 5)
    cp.send("Bitte exportieren.")
    button = cp.page.locator("#compare-export-md")
    cp.wait_until(lambda: button.is_enabled(), "the Markdown download", 30)
    with cp.page.expect_download() as info:
        button.click()
    md = Path(info.value.path()).read_text(encoding="utf-8")
    assert md.startswith("# Modellvergleich") and "> Bitte exportieren." in md
    assert "`leo-hessianai-7b-chat/fast`" in md and "`em-german-leo-mistral/slow`" in md
    assert FAST_REPLY in md and "| Neue Tokens |" in md
    with cp.page.expect_download() as info:
        cp.page.locator("#compare-export-json").click()
    data = json.loads(Path(info.value.path()).read_text(encoding="utf-8"))
    panes = data["rounds"][0]["panes"]
    assert [p["model_id"] for p in panes] == ["leo-hessianai-7b-chat/fast", "em-german-leo-mistral/slow"]
    assert panes[1]["stats"]["completion_tokens"] == 5


def test_compare_api_streams_per_model_results(app_url: str) -> None:
    from gradio_client import Client

    client = Client(app_url, verbose=False, analytics_enabled=False)
    job = client.submit(
        message="Hallo?",
        models=["leo-hessianai-7b-chat/fast", "instruct-igel-001/broken"],
        max_new_tokens=20,
        api_name="/compare",
    )
    updates = list(job)
    final = job.result()
    assert len(updates) >= 2
    assert [r["model"] for r in final] == ["leo-hessianai-7b-chat/fast", "instruct-igel-001/broken"]
    assert FAST_REPLY in final[0]["text"] and final[0]["error"] is None and final[0]["stats"]["completion_tokens"] >= 1
    assert final[1]["error"] and final[1]["error_code"] == "err_remote_generation"
