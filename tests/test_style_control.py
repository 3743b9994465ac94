"""Ratings controlled for length and style (components/features/style_control.py), the leaderboard's German and
register columns, and the switch between plain and controlled in /leaderboard and the page's view."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from components.features import ratings, style_control
from components.features.compare import PaneResult, Round, VoteLog, vote_record
from tests.test_ratings import leaderboard_api, write_votes  # noqa: F401 (a fixture)

#: True strengths, strongest first; and the answer lengths, the weakest writing longest.
TRUE = {"m0/q": 1150.0, "m1/q": 1080.0, "m2/q": 1010.0, "m3/q": 940.0}
MEAN_CHARS = {"m0/q": 300.0, "m1/q": 600.0, "m2/q": 1200.0, "m3/q": 2400.0}


def styled_votes(seed: int, n: int = 3000, bias: float = 3.0, with_style: bool = True) -> list[dict[str, Any]]:
    """Votes between random pairs won with P = expit(ln10 (R_a - R_b) / 400 + bias * (l_a - l_b) / (l_a + l_b + 1)):
    known strengths plus a pull towards the longer answer (FastChat's style feature for length)."""
    names = list(TRUE)
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        la, lb = (int(rng.lognormal(math.log(MEAN_CHARS[m]), 0.6)) for m in (a, b))
        logit = math.log(10) * (TRUE[a] - TRUE[b]) / 400 + bias * (la - lb) / (la + lb + 1)
        winner = "A" if rng.random() < 1 / (1 + math.exp(-logit)) else "B"
        panes = []
        for letter, model, chars in (("A", a, la), ("B", b, lb)):
            pane: dict[str, Any] = {"letter": letter, "model": model}
            if with_style:
                pane["style"] = {"chars": chars, "headers": 0, "lists": int(chars > 1000), "bold": 0}
            panes.append(pane)
        out.append(
            {
                "schema": 2,
                "round_id": f"{seed}-{k}",
                "viewer": "v",
                "panes": panes,
                "winner": winner,
                "winner_model": a if winner == "A" else b,
            }
        )
    return out


def order(board: ratings.Leaderboard) -> list[str]:
    return [row.model for row in board.rows]


def test_plain_ratings_follow_length_controlled_ones_recover_the_true_order() -> None:
    records = styled_votes(seed=3)
    plain = style_control.leaderboard(records, rounds=50, method=style_control.PLAIN)
    controlled = style_control.leaderboard(records, rounds=50, method=style_control.STYLE)
    assert order(plain) == list(reversed(TRUE)), "plain ratings follow the answers' length"
    assert order(controlled) == list(TRUE), "controlled ratings recover the true order"
    assert controlled.style is not None and controlled.style["chars"] > 0.5
    # the controlled ratings are the true ones up to a shift (within the noise of 3000 votes: a few standard errors);
    # the plain ones are off by more than the whole true spread at the ends
    true_mean = sum(TRUE.values()) / len(TRUE)
    for row in controlled.rows:
        assert abs(row.rating - 1000 - (TRUE[row.model] - true_mean)) < 40, row
        assert row.lower < row.rating < row.upper
    plain_error = {row.model: row.rating - 1000 - (TRUE[row.model] - true_mean) for row in plain.rows}
    assert plain_error["m0/q"] < -150 and plain_error["m3/q"] > 150, plain_error
    assert plain.as_dict()["method"] == "bradley-terry"
    assert controlled.as_dict()["method"] == "bradley-terry-style-controlled"
    assert set(controlled.as_dict()["style_coefficients"]) == set(style_control.FEATURES)


def test_without_any_style_the_controlled_ratings_are_the_plain_ones() -> None:
    records = styled_votes(seed=5, n=600, bias=0.0, with_style=False)
    plain = style_control.leaderboard(records, rounds=0)
    controlled = style_control.leaderboard(records, rounds=0, method=style_control.STYLE)
    assert order(plain) == order(controlled)
    for a, b in zip(plain.rows, controlled.rows, strict=True):
        assert a.rating == pytest.approx(b.rating, abs=0.05)
    assert controlled.style == dict.fromkeys(style_control.FEATURES, 0.0)


def test_the_style_of_an_older_vote_comes_from_its_stored_answer() -> None:
    record = {
        "schema": 2,
        "panes": [
            {"letter": "A", "model": "a/q", "output": "## Titel\n\n- **eins**\n- zwei"},
            {"letter": "B", "model": "b/q", "output": "kurz"},
        ],
        "winner": "A",
    }
    slim = ratings.slim_record(record)
    assert slim["panes"][0]["style"] == {"chars": 27, "headers": 1, "lists": 2, "bold": 1}
    assert "output" not in slim["panes"][0]
    vote = ratings.parse_vote(slim)
    assert isinstance(vote, ratings.Vote) and style_control.pane_style(vote, "b/q") == {
        "chars": 4,
        "headers": 0,
        "lists": 0,
        "bold": 0,
    }


def _round(texts: dict[str, str], system: str = "Du bist ein hilfreicher Assistent.") -> Round:
    from components.core.answer_traits import assess

    panes = []
    for i, (model, text) in enumerate(texts.items()):
        traits = assess(text, system)
        panes.append(
            PaneResult(
                i,
                model,
                text=text,
                done=True,
                stats={"finish_reason": "stop"},
                language=traits["language"],
                register=traits["register"],
                style=traits["style"],
            )
        )
    return Round(prompt="Frage?", panes=panes, blind=True, revealed=False)


def test_columns_share_of_german_and_register_kept() -> None:
    german = "Gerne erkläre ich dir, wie die Photosynthese funktioniert: Pflanzen machen aus Licht Zucker."
    polite = "Gerne erkläre ich Ihnen, wie die Photosynthese funktioniert: Pflanzen machen aus Licht Zucker."
    english = "Sure! Photosynthesis is how plants turn light, water and carbon dioxide into sugar."
    records = [
        vote_record(_round({"a/q": german, "b/q": english}), "A", "v1"),
        vote_record(_round({"a/q": polite, "b/q": english}), "B", "v2"),
        vote_record(_round({"a/q": german, "b/q": german}), "tie", "v3"),
    ]
    for k, record in enumerate(records):
        record["round_id"] = f"r{k}"
    board = style_control.leaderboard([ratings.slim_record(r) for r in records], rounds=0)
    rows = {row["model"]: row for row in board.as_dict()["ratings"]}
    assert rows["a/q"]["german_share"] == 1.0 and rows["a/q"]["german_answers"] == 3
    assert rows["a/q"]["register_kept"] == pytest.approx(0.667, abs=0.001) and rows["a/q"]["register_answers"] == 3
    assert rows["b/q"]["german_share"] == pytest.approx(0.333, abs=0.001)
    assert rows["b/q"]["register_kept"] == 1.0 and rows["b/q"]["register_answers"] == 1
    csv_text = ratings.board_csv(board)
    assert "german_share" in csv_text.splitlines()[0]


def test_leaderboard_api_switches_between_plain_and_controlled(leaderboard_api: Any) -> None:  # noqa: F811
    from gradio_client.exceptions import AppError

    path, client = leaderboard_api
    write_votes(path, styled_votes(seed=11, n=2000))
    plain = client.predict(rounds=100, api_name="/leaderboard")
    controlled = client.predict(rounds=100, method="style", api_name="/leaderboard")
    assert plain["method"] == "bradley-terry" and plain["style_coefficients"] is None
    assert controlled["method"] == "bradley-terry-style-controlled"
    assert [r["model"] for r in plain["ratings"]] == list(reversed(TRUE))
    assert [r["model"] for r in controlled["ratings"]] == list(TRUE)
    for lang, word in (("de", "method muss"), ("en", "method must")):
        with pytest.raises(AppError, match=word):
            client.predict(method="fancy", lang=lang, api_name="/leaderboard")


async def test_votelog_computes_each_method_once(tmp_path: Any) -> None:
    path = write_votes(tmp_path / "votes.jsonl", styled_votes(seed=13, n=300))
    log = VoteLog(path)
    first = await log.leaderboard(rounds=50, method=style_control.STYLE)
    again = await log.leaderboard(rounds=50, method=style_control.STYLE)
    plain = await log.leaderboard(rounds=50)
    assert first is again and plain is not first
    assert first.method == style_control.STYLE and plain.method == style_control.PLAIN


@pytest.mark.parametrize("lang", ["de", "en"])
def test_page_view_shows_the_columns_and_the_style_note(lang: str) -> None:
    from components.ui.arena import leaderboard_html, method_choices
    from components.vocabulary.messages import t

    records = styled_votes(seed=17, n=400)
    page = leaderboard_html(style_control.leaderboard(records, rounds=0, method=style_control.STYLE), lang)
    assert t("lb_german", lang) in page and t("lb_register_kept", lang) in page
    assert t("lb_method_style_note", lang).split(":")[0] in page
    plain = leaderboard_html(style_control.leaderboard(records, rounds=0), lang)
    assert t("lb_method_style_note", lang).split(":")[0] not in plain
    assert [value for _, value in method_choices(lang)] == list(style_control.METHODS)


def test_newton_reaches_the_maximum_that_lbfgs_finds() -> None:
    """The fit (Newton's method, every bootstrap sample at once) against scipy's L-BFGS-B on the same penalised
    likelihood (ratings._loss_and_grad), for the point estimate and three bootstrap samples."""
    from scipy.optimize import minimize

    records = styled_votes(seed=21, n=500)
    counted: list[ratings.Vote] = []
    per_vote, _ = ratings.collect(records, counted=counted)
    models = sorted({m for b in per_vote for a, c, _ in b for m in (a, c)})
    index = {m: i for i, m in enumerate(models)}
    pairs = np.array([[index[a], index[b]] for b in per_vote for a, b, _ in b])
    scores = np.array([s for b in per_vote for _, _, s in b])
    design = style_control._design(pairs, style_control.features(counted, per_vote), len(models))
    weights = np.vstack([np.ones(len(pairs)), np.random.default_rng(1).poisson(1.0, (3, len(pairs)))])
    newton = style_control.fit(design, scores, weights)
    for row, w in zip(newton, weights, strict=True):
        result = minimize(
            ratings._loss_and_grad,
            np.zeros(design.shape[1]),
            args=(design, scores, w[None, :], 1.0),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15},
        )
        assert np.max(np.abs(row - result.x)) < 1e-4, (row, result.x)
