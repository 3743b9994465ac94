"""Bradley-Terry ratings of blind votes: known strengths recovered through /leaderboard, intervals, ties, filters."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from components.features import ratings
from components.features.compare import VoteLog
from components.features.ratings import Selection, leaderboard, parse_vote

#: Known strengths on the rating scale (the test draws battles from exactly this Bradley-Terry model).
TRUE = {
    "em-german-leo-mistral/fp16": 1250.0,
    "leo-hessianai-13b-chat/fp16": 1100.0,
    "instruct-igel-001/fp16": 950.0,
    "tiny/q": 800.0,
}


def bt_votes(seed: int, n: int = 400, strengths: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """`n` blind votes (schema 2) between random pairs, each won with the Bradley-Terry probability."""
    true = strengths or TRUE
    names = list(true)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a, b = rng.choice(len(names), 2, replace=False)
        model_a, model_b = names[a], names[b]
        p_a = 1.0 / (1.0 + 10.0 ** ((true[model_b] - true[model_a]) / 400.0))
        winner = "A" if rng.random() < p_a else "B"
        out.append(
            {
                "schema": 2,
                "ts": f"2026-12-01T10:{k // 60:02d}:{k % 60:02d}+00:00",
                "round_id": f"{seed}-{k}",
                "viewer": f"v{k % 7}",
                "session": None,
                "prompt_set": "german_eval",
                "prompt_id": "buch-500-seiten",
                "category": "reasoning",
                "prompt": "…",
                "panes": [{"letter": "A", "model": model_a}, {"letter": "B", "model": model_b}],
                "winner": winner,
                "winner_model": model_a if winner == "A" else model_b,
            }
        )
    return out


def write_votes(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def leaderboard_api(tmp_path: Path) -> Any:
    """The real /leaderboard endpoint of a served Blocks, reading a votes file in tmp_path."""
    import gradio as gr
    from gradio_client import Client

    from components.api.leaderboard import register as register_leaderboard_api
    from tests.conftest import free_port

    path = tmp_path / "votes.jsonl"
    with gr.Blocks() as demo:
        register_leaderboard_api(VoteLog(path))
    demo.queue(default_concurrency_limit=None)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield path, Client(f"http://127.0.0.1:{port}", verbose=False, analytics_enabled=False)
    finally:
        demo.close()


def true_diff(a: str, b: str) -> float:
    return TRUE[a] - TRUE[b]


def test_leaderboard_api_recovers_known_strengths(leaderboard_api: Any) -> None:
    path, client = leaderboard_api
    write_votes(path, bt_votes(seed=7))
    result = client.predict(api_name="/leaderboard")
    order = [r["model"] for r in result["ratings"]]
    assert order == list(TRUE), "the true order"
    assert result["counted"] == {
        "votes": 400,
        "battles": 400,
        "outside_selection": 0,
        "not_counted": dict.fromkeys(ratings.REASONS, 0),
    }
    assert result["bootstrap_rounds"] == ratings.DEFAULT_ROUNDS
    assert sum(r["battles"] for r in result["ratings"]) == 800
    for row in result["ratings"]:
        assert row["lower"] < row["rating"] < row["upper"]
        # with 400 battles and 150 points between neighbours, every model is separable
        assert row["not_separable_from"] == []
    matrix = result["matrix"]
    assert matrix["models"] == order
    n = len(order)
    for i in range(n):
        assert matrix["win_rate"][i][i] is None and matrix["battles"][i][i] == 0
        for j in range(n):
            if i != j:
                assert matrix["battles"][i][j] == matrix["battles"][j][i] > 40
                assert matrix["win_rate"][i][j] + matrix["win_rate"][j][i] == pytest.approx(1.0)
                assert (matrix["win_rate"][i][j] > 0.5) == (i < j)
    # 20 more vote files from the same strengths through the API: order and coverage of the true differences
    hits = checks = right_order = 0
    for seed in range(20):
        write_votes(path, bt_votes(seed=500 + seed))
        result = client.predict(rounds=300, api_name="/leaderboard")
        order = [r["model"] for r in result["ratings"]]
        right_order += order == list(TRUE)
        matrix = result["matrix"]
        for i, a in enumerate(order):
            for j, b in enumerate(order):
                if i < j:
                    checks += 1
                    hits += matrix["diff_lower"][i][j] <= true_diff(a, b) <= matrix["diff_upper"][i][j]
    assert right_order >= 19 and hits / checks >= 0.90, (right_order, hits, checks)
    # a filter through the API: the session filter keeps nothing of these session-less votes
    empty = client.predict(session="nope", api_name="/leaderboard")
    assert empty["ratings"] == [] and empty["counted"]["outside_selection"] == 400
    # bad input is refused with the allowed range
    with pytest.raises(Exception, match="50"):
        client.predict(rounds=5, api_name="/leaderboard")


def test_intervals_contain_the_true_differences_in_90_percent_of_checks() -> None:
    """40 vote files drawn from the same known strengths; each gives 6 pairwise and 4 per-model checks."""
    diff_hits = diff_checks = model_hits = model_checks = right_order = 0
    mean = np.mean(list(TRUE.values()))
    for seed in range(40):
        board = leaderboard(bt_votes(seed=1000 + seed), rounds=300)
        models = board.models
        right_order += models == list(TRUE)
        for i, a in enumerate(models):
            for j, b in enumerate(models):
                if i < j:
                    diff_checks += 1
                    diff_hits += board.diff_lower[i][j] <= true_diff(a, b) <= board.diff_upper[i][j]
        for row in board.rows:
            model_checks += 1
            model_hits += row.lower <= TRUE[row.model] - mean + ratings.INIT_RATING <= row.upper
    assert diff_hits / diff_checks >= 0.90, (diff_hits, diff_checks)
    assert model_hits / model_checks >= 0.90, (model_hits, model_checks)
    assert right_order >= 38


def test_fit_satisfies_the_likelihood_equations() -> None:
    """At the maximum, each model's expected score equals its actual score (up to the weak prior's term)."""
    records = bt_votes(seed=3, n=300)
    per_vote, tally = ratings.collect(records)
    board = ratings.compute(per_vote, tally, rounds=0)
    rating = {r.model: (r.rating - ratings.INIT_RATING) / ratings.SCALE for r in board.rows}
    prior = (ratings.SCALE / ratings.PRIOR_SD_POINTS) ** 2
    residual = dict.fromkeys(rating, 0.0)
    for battles in per_vote:
        for a, b, s in battles:
            p = 1.0 / (1.0 + math.exp(-ratings.ALPHA * (rating[a] - rating[b])))
            residual[a] += ratings.ALPHA * (s - p)
            residual[b] -= ratings.ALPHA * (s - p)
    for model, value in residual.items():
        assert value == pytest.approx(prior * rating[model], abs=1e-4)


def test_ties_count_half_a_win_each() -> None:
    def rec(k: int, winner: str, a: str = "m1", b: str = "m2") -> dict[str, Any]:
        panes = [{"letter": "A", "model": a}, {"letter": "B", "model": b}]
        return {"schema": 2, "round_id": str(k), "viewer": "v", "panes": panes, "winner": winner}

    ties = leaderboard([rec(k, "tie") for k in range(6)], rounds=100)
    assert [r.rating for r in ties.rows] == pytest.approx([1000.0, 1000.0])
    assert ties.win_rate[0][1] == pytest.approx(0.5) and ties.rows[0].ties == 6
    assert set(ties.rows[0].not_separable_from) == {ties.rows[1].model}
    split = leaderboard([rec(k, "A" if k % 2 else "B") for k in range(6)], rounds=0)
    assert [r.rating for r in split.rows] == pytest.approx([r.rating for r in ties.rows])
    # 2 wins + 2 ties rate exactly like 3 wins + 1 loss
    mixed = leaderboard([rec(0, "A"), rec(1, "A"), rec(2, "tie"), rec(3, "tie")], rounds=0)
    plain = leaderboard([rec(0, "A"), rec(1, "A"), rec(2, "A"), rec(3, "B")], rounds=0)
    assert mixed.rows[0].rating == pytest.approx(plain.rows[0].rating, abs=1e-3)


def test_a_model_that_won_every_battle_gets_a_finite_rating_and_is_not_separable_yet() -> None:
    records = [
        {"schema": 2, "round_id": str(k), "viewer": "v", "winner": "A", "panes": [{"model": "a"}, {"model": "b"}]}
        for k in range(2)
    ]
    for record in records:
        record["winner_model"] = "a"
    board = leaderboard(records, rounds=200)
    top, bottom = board.rows
    assert top.model == "a" and math.isfinite(top.rating) and top.rating > bottom.rating
    assert top.upper - top.lower > 100  # two votes say little
    assert top.not_separable_from == ["b"], "two votes do not separate two models"


def test_votes_of_every_schema_version_load_and_bad_ones_are_counted_with_a_reason() -> None:
    v1 = {  # the first blind mode's line (no schema, no round id)
        "ts": "2026-11-30T10:00:00+00:00",
        "prompt": "Hallo",
        "lang": "de",
        "shared_settings": {},
        "panes": [{"letter": "A", "model": "x/q"}, {"letter": "B", "model": "y/q"}],
        "winner": "B",
        "winner_model": "y/q",
    }
    v1_no_winner_model = {k: v for k, v in v1.items() if k != "winner_model"}
    v2 = {**v1, "schema": 2, "round_id": "r1", "viewer": "v1", "winner": "A", "winner_model": "x/q"}
    same = {**v2, "round_id": "r2", "panes": [{"letter": "A", "model": "x/q"}, {"letter": "B", "model": "x/q"}]}
    duplicate = {**v2, "winner": "B", "winner_model": "y/q"}  # the same viewer again for round r1
    other_viewer = {**duplicate, "viewer": "v2"}
    future = {**v2, "schema": 99, "round_id": "r9"}
    assert isinstance(parse_vote(v1), ratings.Vote) and parse_vote(v1_no_winner_model).winner_model == "y/q"
    assert parse_vote(v2).schema == 2 and parse_vote(v1).schema == 1
    board = leaderboard([v1, v1_no_winner_model, v2, same, duplicate, other_viewer, future, "x", {}], rounds=50)
    assert board.tally.votes == 4
    assert board.tally.not_counted == {
        "unreadable": 0,
        "newer_schema": 1,
        "incomplete": 2,
        "same_model": 1,
        "duplicate": 1,
        "unknown_model": 0,
    }
    rows = {r.model: r for r in board.rows}
    assert (rows["y/q"].wins, rows["x/q"].wins) == (3, 1)


def test_filters_by_prompt_set_category_session_and_variant() -> None:
    def rec(k: int, a: str, b: str, **extra: Any) -> dict[str, Any]:
        panes = [{"letter": "A", "model": a}, {"letter": "B", "model": b}]
        return {"schema": 2, "round_id": str(k), "viewer": "v", "panes": panes, "winner": "A", **extra}

    records = [
        rec(1, "em/gguf-q4", "em/fp16", session="s1", prompt_set="german_eval", category="writing"),
        rec(2, "em/fp16", "leo/fp16", session="s1", prompt_set="german_eval", category="reasoning"),
        rec(3, "leo/fp16", "em/gguf-q4", session="s2", prompt_set="other", category="writing"),
        rec(4, "em/fp16", "em/gguf-q4"),  # typed prompt, no session
    ]

    def counted(**sel: Any) -> int:
        return leaderboard(records, Selection.of(**sel), rounds=0).tally.votes

    assert counted() == 4
    assert counted(session="s1") == 2 and counted(session="s2") == 1
    assert counted(prompt_set="german_eval") == 2
    assert counted(category="writing") == 2 and counted(category="free") == 1
    assert counted(session="", category=None) == 4
    quant = leaderboard(records, Selection(variant="em"), rounds=0)
    assert quant.models and set(quant.models) == {"em/gguf-q4", "em/fp16"}
    assert quant.tally.votes == 2 and quant.tally.outside == 2
    assert ratings.variant_of("em-german-leo-mistral/gguf-q4_k_m") == "em-german-leo-mistral"


def test_exports_of_votes_and_leaderboard(tmp_path: Path) -> None:
    from components.ui.arena import leaderboard_html, write_board_exports

    records = bt_votes(seed=5, n=40)
    records.append({"schema": 2, "round_id": "x", "panes": [{"model": "a"}, {"model": "a"}], "winner": "A"})
    board = leaderboard(records, rounds=100)
    paths = [Path(p) for p in write_board_exports(board, records)]
    assert [p.suffix for p in paths] == [".csv", ".json", ".csv", ".json"]
    votes = list(csv.DictReader(io.StringIO(paths[0].read_text(encoding="utf-8"))))
    assert len(votes) == 41 and tuple(votes[0]) == ratings.VOTE_COLUMNS
    assert votes[-1]["counted"] == "False" and votes[-1]["reason"] == "same_model"
    assert "prompt" not in votes[0] and "…" not in paths[0].read_text(encoding="utf-8")
    assert json.loads(paths[1].read_text(encoding="utf-8"))[0]["model_a"] == records[0]["panes"][0]["model"]
    board_rows = list(csv.DictReader(io.StringIO(paths[2].read_text(encoding="utf-8"))))
    assert [r["model"] for r in board_rows] == board.models and board_rows[0]["rank"] == "1"
    data = json.loads(paths[3].read_text(encoding="utf-8"))
    assert data["ratings"][0]["model"] == board.models[0] and data["counted"]["not_counted"]["same_model"] == 1
    page = leaderboard_html(board, "de")
    assert "dasselbe Modell auf beiden Seiten (kein Vergleich): 1" in page and "Gezählte Stimmen: 40 ·" in page


def test_empty_leaderboard_says_what_it_counts_and_why_votes_did_not_count() -> None:
    """Issue 13, point 3: after two votes of SmolLM2 against SmolLM2 the board showed "– 0 0 0 0 –" and no reason."""
    from components.features.compare import PaneResult, Round
    from components.ui.arena import leaderboard_html, vote_note

    same = [
        {"panes": [{"letter": "A", "model": "smollm2/q"}, {"letter": "B", "model": "smollm2/q"}], "winner": w}
        for w in ("A", "tie")
    ]
    for lang, counted, reason, empty in (
        (
            "de",
            "Gezählte Stimmen: 0 ·",
            "Nicht gezählt: dasselbe Modell auf beiden Seiten (kein Vergleich): 2.",
            "Noch keine Rangliste",
        ),
        (
            "en",
            "Votes counted: 0 ·",
            "Not counted: the same model on both sides (no comparison): 2.",
            "No leaderboard yet",
        ),
    ):
        page = leaderboard_html(leaderboard(same), lang)
        assert counted in page and reason in page and empty in page
        assert "Bradley-Terry" in page
    round_ = Round("x", [PaneResult(0, "smollm2/q", done=True), PaneResult(1, "smollm2/q", done=True)], blind=True)
    round_.winner = "A"
    assert "dasselbe Modell" in vote_note(round_, "de")
    round_.panes[1].model_id = "other/q"
    assert vote_note(round_, "de") == ""


def test_bootstrap_is_reproducible_and_cached(tmp_path: Path) -> None:
    path = write_votes(tmp_path / "votes.jsonl", bt_votes(seed=11, n=60))
    log = VoteLog(path)
    first = log.board(rounds=200)
    assert log.board(rounds=200) is first, "the same file state is fitted once"
    again = leaderboard(log.read(), rounds=200)
    assert [r.as_dict() for r in again.rows] == [r.as_dict() for r in first.rows]
    log.append(bt_votes(seed=12, n=1)[0] | {"round_id": "new"})
    assert log.board(rounds=200) is not first and log.board(rounds=200).tally.votes == 61


def test_votes_api_lists_votes_without_texts(leaderboard_api: Any) -> None:
    path, client = leaderboard_api
    records = bt_votes(seed=2, n=5)
    records.append({**records[0], "round_id": records[0]["round_id"]})  # the same viewer again: a duplicate
    write_votes(path, records)
    rows = client.predict(api_name="/votes")
    assert len(rows) == 6 and set(rows[0]) == set(ratings.VOTE_COLUMNS)
    assert [r["counted"] for r in rows] == [True] * 5 + [False] and rows[-1]["reason"] == "duplicate"
    assert all(r["model_a"] and r["model_b"] and r["model_c"] is None for r in rows)


def test_a_typed_prompt_of_a_prompt_set_counts_for_its_category() -> None:
    from components.features.batch import load_prompts
    from components.features.compare import PaneResult, Round
    from components.ui.arena import tag_prompt

    prompts = load_prompts(Path(__file__).resolve().parent.parent / "prompts" / "german_eval.yaml")
    assert {p.category for p in prompts} == {"reasoning", "explanation", "writing", "retrieval", "known_limitations"}
    typed = Round(f"  {prompts[5].text}\n", [PaneResult(0, "a/q"), PaneResult(1, "b/q")], blind=True)
    tag_prompt(typed)
    assert (typed.prompt_set, typed.prompt_id, typed.category) == ("german_eval", "bundeskanzler", "known_limitations")
    free = Round("Wie geht es dir?", [PaneResult(0, "a/q"), PaneResult(1, "b/q")], blind=True)
    tag_prompt(free)
    assert free.prompt_id is None and free.category is None


def test_every_message_of_the_leaderboard_and_session_exists_in_both_languages() -> None:
    import re

    from components.features.batch import CATEGORIES
    from components.vocabulary.messages import MESSAGES

    root = Path(__file__).resolve().parent.parent / "components"
    keys = set()
    for name in ("ui/arena.py", "api/compare.py", "api/leaderboard.py"):
        keys |= set(re.findall(r"\bt\(\s*\"([a-z0-9_]+)\"", (root / name).read_text(encoding="utf-8")))
    keys |= {f"lb_reason_{r}" for r in ratings.REASONS} | {f"category_{c}" for c in (*CATEGORIES, "free")}
    assert len(keys) > 40
    missing = sorted(k for k in keys if set(MESSAGES.get(k, {})) != {"de", "en"})
    assert not missing, missing
