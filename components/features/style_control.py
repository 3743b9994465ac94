"""Ratings controlled for answer length and markdown style, as Chatbot Arena's style control does, and the
leaderboard's per-model columns (share of answers in German, register kept).

Style control (FastChat, fastchat/serve/monitor/rating_systems.py `compute_style_control`, features from
add_markdown_info.py): a logistic regression of each battle's outcome on the model indicators (+1 for model a, -1
for model b, the Bradley-Terry part) next to the style features' normalised differences,

    P(a beats b) = expit(ln 10 * (R_a - R_b) + sum_k beta_k * x_k),   x_k = (f_k(a) - f_k(b)) / (f_k(a) + f_k(b) + 1)

with f = the answer's length in characters, its headers, list items and bold spans (answer_traits.style_of). The
ratings R are then what a model wins with style held equal; beta says how much each style feature buys. As in
FastChat each feature is scaled to unit spread over the battles; unlike FastChat it is not centred, because a
battle here is written winner first (its orientation carries the outcome) where FastChat's a/b are the panes'
random order, and a centred feature would act as a bias towards the winner's side. Ties count half a win each
side; the same weak normal prior as the plain ratings (ratings.PRIOR_SD_POINTS) holds ratings and coefficients
finite (fitted by Newton's method where FastChat uses L-BFGS: the same maximum, in a few steps). Intervals: the
votes resampled (bootstrap, every sample fitted at once as in ratings.fit), never narrower
than the normal approximation from the likelihood's curvature. A battle whose answers' style is unknown (votes
written before answers' style was stored, without their text) adds no style information (its features are 0).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from components.features import ratings
from components.features.ratings import ALPHA, PRIOR_SD_POINTS, SCALE, Leaderboard, Selection, Tally, Vote

#: The style features, in the order of the coefficients (answer_traits.style_of's keys).
FEATURES = ("chars", "headers", "lists", "bold")
PLAIN = "plain"
STYLE = "style"
METHODS = (PLAIN, STYLE)
#: Bootstrap samples drawn at a time (memory: samples x battles weights).
CHUNK = 100
#: Newton steps at most (from the point estimate a bootstrap sample needs three or four).
NEWTON_STEPS = 50


def pane_style(vote: Vote, model: str) -> dict[str, Any] | None:
    """The style of the first answer of `model` in the vote, or None where the record had none."""
    for name, info in vote.traits:
        if name == model:
            style = info.get("style")
            return style if isinstance(style, dict) else None
    return None


def features(votes: Sequence[Vote], per_vote: Sequence[Sequence[tuple[str, str, float]]]) -> np.ndarray:
    """battles x FEATURES: each battle's normalised style differences (a minus b), scaled to unit root mean square;
    a feature that never differs stays 0."""
    rows: list[list[float]] = []
    for vote, battles in zip(votes, per_vote, strict=True):
        for a, b, _ in battles:
            sa, sb = pane_style(vote, a), pane_style(vote, b)
            if sa is None or sb is None:
                rows.append([0.0] * len(FEATURES))
                continue
            row = []
            for key in FEATURES:
                fa, fb = float(sa.get(key) or 0), float(sb.get(key) or 0)
                row.append((fa - fb) / (fa + fb + 1.0))
            rows.append(row)
    x = np.array(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
    rms = np.sqrt(np.mean(x * x, axis=0)) if len(x) else np.zeros(len(FEATURES))
    return np.divide(x, rms, out=np.zeros_like(x), where=rms > 0)


def _design(pairs: np.ndarray, x: np.ndarray, n_models: int) -> np.ndarray:
    """battles x (models + features): the model indicators and the features over ALPHA (ratings._loss_and_grad
    multiplies every column by ALPHA)."""
    design = np.zeros((len(pairs), n_models + x.shape[1]))
    rows = np.arange(len(pairs))
    design[rows, pairs[:, 0]] = 1.0
    design[rows, pairs[:, 1]] = -1.0
    design[:, n_models:] = x / ALPHA
    return design


def fit(design: np.ndarray, scores: np.ndarray, weights: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Parameters (natural scale ratings, then coefficients over ALPHA) maximising the penalised likelihood, for each
    row of `weights` (one per bootstrap sample): Newton's method, all samples at once. The problem has a dozen
    parameters and is strictly convex (the prior), so a few Newton steps reach what L-BFGS needs hundreds of
    gradient evaluations for (bench/RESULTS.md, "Style control")."""
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    width = design.shape[1]
    prior = (SCALE / PRIOR_SD_POINTS) ** 2
    theta = np.zeros((len(w), width)) if start is None else np.broadcast_to(start, (len(w), width)).copy()
    # samples per block, so that the samples x battles x parameters products stay near 4 million numbers
    block = max(1, 4_000_000 // max(1, design.shape[0] * width))
    for lo in range(0, len(w), block):
        theta[lo : lo + block] = _newton(design, scores, w[lo : lo + block], theta[lo : lo + block], prior)
    return theta


def _newton(design: np.ndarray, scores: np.ndarray, w: np.ndarray, theta: np.ndarray, prior: float) -> np.ndarray:
    eye = np.eye(design.shape[1]) * prior
    for _ in range(NEWTON_STEPS):
        p = expit(ALPHA * (theta @ design.T))  # samples x battles
        grad = ALPHA * ((w * (p - scores)) @ design) + prior * theta
        curvature = ALPHA**2 * w * p * (1.0 - p)
        hessian = np.transpose(curvature[:, :, None] * design[None, :, :], (0, 2, 1)) @ design + eye
        step = np.linalg.solve(hessian, grad[:, :, None])[:, :, 0]
        theta = theta - step
        if float(np.max(np.abs(step))) < 1e-10:
            break
    return theta


def _covariance(params: np.ndarray, design: np.ndarray, weights: np.ndarray, n_models: int) -> np.ndarray:
    """Covariance of the centred ratings (natural scale) from the inverse Hessian of the penalised likelihood."""
    p = expit(ALPHA * (design @ params))
    info = ALPHA**2 * weights * p * (1.0 - p)
    hessian = design.T @ (info[:, None] * design) + np.eye(design.shape[1]) * (SCALE / PRIOR_SD_POINTS) ** 2
    block = np.linalg.inv(hessian)[:n_models, :n_models]
    centre = np.eye(n_models) - 1.0 / n_models
    return centre @ block @ centre


def compute(
    votes: Sequence[Vote],
    per_vote: Sequence[Sequence[tuple[str, str, float]]],
    tally: Tally,
    selection: Selection | None = None,
    rounds: int = ratings.DEFAULT_ROUNDS,
    seed: int = 0,
) -> Leaderboard:
    """The style-controlled ratings of the collected battles with their bootstrap intervals, and the matrices."""
    sel = selection or Selection()
    models = sorted({m for battles in per_vote for a, b, _ in battles for m in (a, b)})
    n = len(models)
    if n < 2:
        return Leaderboard([], [], [], [], [], tally, sel, rounds, method=STYLE)
    index = {m: i for i, m in enumerate(models)}
    pairs = np.array([[index[a], index[b]] for battles in per_vote for a, b, _ in battles], dtype=np.intp)
    scores = np.array([s for battles in per_vote for _, _, s in battles], dtype=np.float64)
    owner = np.repeat(np.arange(len(per_vote)), [len(b) for b in per_vote])  # the vote of each battle
    design = _design(pairs, features(votes, per_vote), n)
    ones = np.ones(len(pairs))
    params = fit(design, scores, ones)[0]
    point = params[:n] - params[:n].mean()
    coefficients = params[n:]  # on the logit scale, per unit of a scaled feature (the design divides by ALPHA)

    rng = np.random.default_rng(seed)
    boots = []
    for done in range(0, max(rounds, 0), CHUNK):
        uniform = np.full(len(per_vote), 1.0 / len(per_vote))
        draws = rng.multinomial(len(per_vote), uniform, size=min(CHUNK, rounds - done))
        fitted = fit(design, scores, draws[:, owner].astype(np.float64), start=params)[:, :n]
        boots.append(fitted - fitted.mean(axis=1, keepdims=True))
    boot = np.vstack(boots) if boots else point[None, :]
    board = ratings.assemble(models, point, boot, _covariance(params, design, ones, n), per_vote, tally, sel, rounds)
    board.method = STYLE
    board.style = {key: round(float(c), 4) for key, c in zip(FEATURES, coefficients, strict=True)}
    return board


def model_columns(votes: Iterable[Vote]) -> dict[str, dict[str, Any]]:
    """Per model over the counted votes' answers: {"german": share of answers whose language is German, "german_n":
    answers with a language reading, "register_kept": share of answers that kept the system prompt's register,
    "register_n": answers where there was one to keep}."""
    counts: dict[str, list[int]] = {}
    for vote in votes:
        for model, info in vote.traits:
            c = counts.setdefault(model, [0, 0, 0, 0])
            german = info.get("german")
            if isinstance(german, bool):
                c[0] += german
                c[1] += 1
            kept = info.get("kept")
            if isinstance(kept, bool):
                c[2] += kept
                c[3] += 1
    return {
        model: {
            "german": c[0] / c[1] if c[1] else None,
            "german_n": c[1],
            "register_kept": c[2] / c[3] if c[3] else None,
            "register_n": c[3],
        }
        for model, c in counts.items()
    }


def leaderboard(
    records: Iterable[Any],
    selection: Selection | None = None,
    rounds: int = ratings.DEFAULT_ROUNDS,
    seed: int = 0,
    unreadable: int = 0,
    known: Container[str] | None = None,
    method: str = PLAIN,
) -> Leaderboard:
    """The whole pipeline with the method chosen: records -> counted battles -> plain or style-controlled ratings,
    with the per-model columns."""
    counted: list[Vote] = []
    per_vote, tally = ratings.collect(records, selection, unreadable, known, counted=counted)
    if method == STYLE:
        board = compute(counted, per_vote, tally, selection, rounds, seed)
    else:
        board = ratings.compute(per_vote, tally, selection, rounds, seed)
    board.columns = model_columns(counted)
    return board
