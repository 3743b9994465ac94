"""Ratings from blind votes: Bradley-Terry maximum likelihood (scipy), bootstrap intervals, win-rate matrix.

The method is that of FastChat's arena (fastchat/serve/monitor/rating_systems.py, `compute_bt` and
`compute_bootstrap_bt`): every vote becomes battles between two models (win, loss, or a tie that
counts as half a win for each side), the ratings r maximise the Bradley-Terry likelihood
P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)) over all battles (scipy's L-BFGS-B), and they are
shown on an Elo-like scale (mean 1000, 400 points = odds of 10 : 1). 95 % intervals come from
refitting on bootstrap samples of the votes, widened where the normal approximation from the
likelihood's curvature is wider (a few identical votes give identical bootstrap samples and an
interval of no width, which would call two models separable after two votes). One more difference:
a weak normal prior on the ratings (standard deviation PRIOR_SD_POINTS) keeps them finite when a
model won or lost every battle, where the plain maximum does not exist (FastChat stops the
optimiser after 100 steps instead); with
hundreds of battles it moves a rating by well under a point.

A vote with more than two answers is a set of battles: the winner beats each other model of the
vote, a tie is a tie between every pair; the losers are not compared with each other.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Container, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit, ndtri

from components.core.answer_traits import style_of
from components.vocabulary.generation import InputError

#: The vote file's schema this code writes; records without "schema" are version 1 (the first blind mode).
VOTE_SCHEMA = 2
SCALE = 400.0
BASE = 10.0
INIT_RATING = 1000.0
ALPHA = math.log(BASE)
#: Standard deviation of the prior on each rating, in rating points.
PRIOR_SD_POINTS = 400.0
DEFAULT_ROUNDS = 1000
CONFIDENCE = 0.95
TIE = "tie"
FREE_CATEGORY = "free"
#: Reasons a vote does not count, in the order the page lists them (message keys lb_reason_<reason>).
REASONS = ("unreadable", "newer_schema", "incomplete", "same_model", "duplicate", "unknown_model")
#: The longest model id a vote may name (the catalog's `variant/quantization` ids are far shorter).
MAX_MODEL_ID_CHARS = 120
#: The most panes a vote may have (the compare tab has at most 4).
MAX_VOTE_PANES = 8
#: Characters kept of each text field of a vote record, when it is written and when it is read: a record written by
#: an older version (or by hand) can make no page, dropdown or export longer than this.
FIELD_CHARS = {
    "ts": 40,
    "round_id": 64,
    "viewer": 64,
    "session": 64,
    "prompt_set": 100,
    "prompt_id": 100,
    "category": 40,
    "lang": 8,
    "winner": 8,
}


# ---- votes -> battles ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Vote:
    """One vote as the ratings see it, from a record of any schema version."""

    models: tuple[str, ...]  # the distinct models of the vote, in pane order
    winner_model: str | None  # None: a tie
    schema: int = 1
    round_id: str | None = None
    viewer: str | None = None
    session: str | None = None
    prompt_set: str | None = None
    prompt_id: str | None = None
    category: str | None = None
    ts: str | None = None
    #: (model, {"style", "german", "kept"}) per pane in pane order (pane_traits): the leaderboard's columns and style
    traits: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def key(self) -> tuple[str, str] | None:
        """One vote per round and viewer: this pair identifies it (votes of schema 1 have none)."""
        return (self.round_id, self.viewer or "") if self.round_id else None

    def battles(self) -> list[tuple[str, str, float]]:
        """(model a, model b, score of a): 1 a won, 0 b won, 0.5 a tie."""
        if self.winner_model is None:
            return [(a, b, 0.5) for i, a in enumerate(self.models) for b in self.models[i + 1 :]]
        return [(self.winner_model, m, 1.0) for m in self.models if m != self.winner_model]


def _text(value: Any, chars: int | None = None) -> str | None:
    """A non-empty text, cut to `chars`; anything else None."""
    if not isinstance(value, str) or not value:
        return None
    return value[:chars] if chars else value


def _field(record: dict[str, Any], name: str) -> str | None:
    return _text(record.get(name), FIELD_CHARS[name])


def pane_traits(pane: dict[str, Any]) -> dict[str, Any]:
    """What the leaderboard's columns and style control read of a pane, from a record as written (its `language`,
    `register`, `style`) or as slimmed: {"style": counts or None, "german": bool or None, "kept": bool or None}."""
    raw = pane.get("style")
    style = None
    if isinstance(raw, dict) and all(_count(raw.get(k)) for k in STYLE_KEYS):
        style = {k: int(raw[k]) for k in STYLE_KEYS}
    german, kept = pane.get("german"), pane.get("kept")
    language, register = pane.get("language"), pane.get("register")
    if not isinstance(german, bool) and isinstance(language, dict) and isinstance(language.get("code"), str):
        german = language["code"] == "de"
    if not isinstance(kept, bool) and isinstance(register, dict):
        kept = register.get("kept")
    return {
        "style": style,
        "german": german if isinstance(german, bool) else None,
        "kept": kept if isinstance(kept, bool) else None,
    }


#: What a pane's style holds (answer_traits.style_of): the answer's length in characters and its markdown elements.
STYLE_KEYS = ("chars", "headers", "lists", "bold")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10**9


def known_model(model: Any, known: Container[str] | None = None) -> bool:
    """A model id a vote may name: a text within MAX_MODEL_ID_CHARS, and in `known` (the catalog) where given."""
    if not isinstance(model, str) or not model or len(model) > MAX_MODEL_ID_CHARS:
        return False
    return known is None or model in known


def parse_vote(record: Any, known: Container[str] | None = None) -> Vote | str:
    """A record of the votes file as a Vote, or the reason (one of REASONS) why it does not count.

    `known`: the model ids that may count (the catalog's); a vote naming any other, or an id longer than
    MAX_MODEL_ID_CHARS, is "unknown_model". Text fields are cut to FIELD_CHARS.
    """
    if not isinstance(record, dict):
        return "incomplete"
    schema = record.get("schema", 1)
    if not isinstance(schema, int) or isinstance(schema, bool):
        return "incomplete"
    if schema > VOTE_SCHEMA:
        return "newer_schema"
    panes = record.get("panes")
    winner = record.get("winner")
    if not isinstance(panes, list) or not isinstance(winner, str) or len(panes) > MAX_VOTE_PANES:
        return "incomplete"
    letters: dict[str, str] = {}
    models: list[str] = []
    traits: list[tuple[str, dict[str, Any]]] = []
    for pane in panes:
        if not isinstance(pane, dict) or not _text(pane.get("model")):
            return "incomplete"
        # a remote build counts as the model its server reported (a misconfigured server is never credited to the
        # build's name); every other build as its catalog id
        served = _text(pane.get("served_model"))
        model = served if served is not None and known_model(served) else str(pane["model"])
        if served is None and not known_model(model, known):
            return "unknown_model"
        if isinstance(pane.get("letter"), str):
            letters[pane["letter"].upper()] = model
        traits.append((model, pane_traits(pane)))
        if model not in models:
            models.append(model)
    if len(models) < 2:
        return "same_model"
    if winner.lower() == TIE:
        winner_model = None
    else:
        winner_model = letters.get(winner.upper()[:8]) or _text(record.get("winner_model"), MAX_MODEL_ID_CHARS + 1)
        if winner_model not in models:
            return "incomplete"
    return Vote(
        models=tuple(models),
        winner_model=winner_model,
        schema=schema,
        round_id=_field(record, "round_id"),
        viewer=_field(record, "viewer"),
        session=_field(record, "session"),
        prompt_set=_field(record, "prompt_set"),
        prompt_id=_field(record, "prompt_id"),
        category=_field(record, "category"),
        ts=_field(record, "ts"),
        traits=tuple(traits),
    )


def slim_record(record: Any) -> Any:
    """What the leaderboard, its filters and its exports read of a record, each text cut to its cap: the prompt, the
    answers and the settings stay in the file only (a poisoned line of megabytes becomes a few hundred bytes)."""
    if not isinstance(record, dict):
        return record
    out: dict[str, Any] = {name: _field(record, name) for name in FIELD_CHARS if name in record}
    schema = record.get("schema", 1)
    out["schema"] = schema if isinstance(schema, int) else None
    if isinstance(record.get("winner"), str):
        out["winner"] = record["winner"][: FIELD_CHARS["winner"]]
    if "winner_model" in record:
        out["winner_model"] = _text(record.get("winner_model"), MAX_MODEL_ID_CHARS + 1)
    panes = record.get("panes")
    if isinstance(panes, list):
        out["panes"] = [
            {
                "letter": _text(p.get("letter"), 8),
                "model": p.get("model")[: MAX_MODEL_ID_CHARS + 1] if isinstance(p.get("model"), str) else None,
                "served_model": _text(p.get("served_model"), MAX_MODEL_ID_CHARS + 1),
                **_slim_traits(p),
            }
            if isinstance(p, dict)
            else None
            for p in panes[: MAX_VOTE_PANES + 1]
        ]
    return out


def _slim_traits(pane: dict[str, Any]) -> dict[str, Any]:
    """pane_traits, with the style measured from the stored answer where the record has none (older votes)."""
    traits = pane_traits(pane)
    if traits["style"] is None and isinstance(pane.get("output"), str):
        traits["style"] = style_of(pane["output"])
    return traits


@dataclass(frozen=True)
class Selection:
    """Which votes a leaderboard counts; None everywhere = all of them.

    `variant` keeps only battles between builds of that variant (e.g. 4-bit against fp16 of one
    model); `category` "free" means prompts typed by hand (no category).
    """

    prompt_set: str | None = None
    category: str | None = None
    session: str | None = None
    variant: str | None = None

    @classmethod
    def of(cls, **values: Any) -> Selection:
        """From API or page values: empty strings and None mean "all"; text is trimmed and capped."""
        clean = {k: (str(v).strip()[:200] or None) if v is not None else None for k, v in values.items()}
        return cls(**clean)

    def keeps(self, vote: Vote) -> bool:
        if self.session is not None and vote.session != self.session:
            return False
        if self.prompt_set is not None and vote.prompt_set != self.prompt_set:
            return False
        return self.category is None or (vote.category or FREE_CATEGORY) == self.category

    def keeps_battle(self, a: str, b: str) -> bool:
        if self.variant is None:
            return True
        return variant_of(a) == self.variant and variant_of(b) == self.variant

    def as_dict(self) -> dict[str, str | None]:
        return {
            "prompt_set": self.prompt_set,
            "category": self.category,
            "session": self.session,
            "variant": self.variant,
        }


def variant_of(model_id: str) -> str:
    """`em-german-leo-mistral/gguf-q4_k_m` -> `em-german-leo-mistral`."""
    return model_id.split("/", 1)[0]


@dataclass
class Tally:
    """What a leaderboard counted and what it did not, and why."""

    votes: int = 0  # votes that count (in the selection, each giving at least one battle)
    battles: int = 0
    outside: int = 0  # readable votes not in the selection
    not_counted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "votes": self.votes,
            "battles": self.battles,
            "outside_selection": self.outside,
            "not_counted": dict(self.not_counted),
        }


def collect(
    records: Iterable[Any],
    selection: Selection | None = None,
    unreadable: int = 0,
    known: Container[str] | None = None,
    counted: list[Vote] | None = None,
) -> tuple[list[list[tuple[str, str, float]]], Tally]:
    """The battles of every vote that counts (one list per vote), and the tally of what did not count; `counted`,
    where given, gets each counted Vote (in the order of the battle lists).

    A second vote for the same round by the same viewer is a duplicate: the first one counts.
    """
    sel = selection or Selection()
    tally = Tally()
    tally.not_counted["unreadable"] += unreadable
    seen: set[tuple[str, str]] = set()
    per_vote: list[list[tuple[str, str, float]]] = []
    for record in records:
        vote = parse_vote(record, known)
        if isinstance(vote, str):
            tally.not_counted[vote] += 1
            continue
        key = vote.key
        if key is not None:
            if key in seen:
                tally.not_counted["duplicate"] += 1
                continue
            seen.add(key)
        if not sel.keeps(vote):
            tally.outside += 1
            continue
        battles = [b for b in vote.battles() if sel.keeps_battle(b[0], b[1])]
        if not battles:
            tally.outside += 1
            continue
        per_vote.append(battles)
        if counted is not None:
            counted.append(vote)
        tally.votes += 1
        tally.battles += len(battles)
    return per_vote, tally


# ---- fitting ------------------------------------------------------------------------------------
def _incidence(pairs: np.ndarray, n_models: int) -> np.ndarray:
    """rows x models: +1 for the row's model a, -1 for its model b (ratings @ D.T = rating differences)."""
    matrix = np.zeros((len(pairs), n_models))
    rows = np.arange(len(pairs))
    matrix[rows, pairs[:, 0]] = 1.0
    matrix[rows, pairs[:, 1]] = -1.0
    return matrix


def _loss_and_grad(
    flat: np.ndarray, incidence: np.ndarray, scores: np.ndarray, weights: np.ndarray, prior: float
) -> tuple[float, np.ndarray]:
    """Negative log-likelihood of the battles (ties as half a win each side) plus the prior, and its gradient.

    `weights` is samples x rows: each sample (the data, or one bootstrap draw) has its own ratings,
    so one optimisation fits them all at once (the problem separates into one per sample).
    """
    ratings = flat.reshape(len(weights), incidence.shape[1])
    logits = ALPHA * (ratings @ incidence.T)
    loss = -float(np.sum(weights * (scores * log_expit(logits) + (1.0 - scores) * log_expit(-logits))))
    loss += 0.5 * prior * float(np.sum(ratings * ratings))
    per_row = -ALPHA * weights * (scores - expit(logits))
    grad = per_row @ incidence + prior * ratings
    return loss, grad.ravel()


def fit(
    n_models: int, pairs: np.ndarray, scores: np.ndarray, weights: np.ndarray, start: np.ndarray | None = None
) -> np.ndarray:
    """Bradley-Terry ratings on the natural scale (mean 0 per sample) for weighted battles; scipy's L-BFGS-B.

    `weights`: one row of battle counts per sample (1-D for a single sample). Returns samples x models.
    """
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    prior = (SCALE / PRIOR_SD_POINTS) ** 2
    x0 = np.zeros((len(w), n_models)) if start is None else np.broadcast_to(start, (len(w), n_models)).copy()
    result = minimize(
        _loss_and_grad,
        x0.ravel(),
        args=(_incidence(pairs, n_models), scores, w, prior),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 2000, "gtol": 1e-7, "ftol": 1e-13},
    )
    x = np.asarray(result.x, dtype=np.float64).reshape(len(w), n_models)
    return x - x.mean(axis=1, keepdims=True)


def _covariance(point: np.ndarray, pairs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Covariance of the centred ratings (natural scale) from the inverse Hessian of the penalised likelihood."""
    n = len(point)
    p = expit(ALPHA * (point[pairs[:, 0]] - point[pairs[:, 1]]))
    info = ALPHA**2 * weights * p * (1.0 - p)
    hessian = np.eye(n) * (SCALE / PRIOR_SD_POINTS) ** 2
    np.add.at(hessian, (pairs[:, 0], pairs[:, 0]), info)
    np.add.at(hessian, (pairs[:, 1], pairs[:, 1]), info)
    np.add.at(hessian, (pairs[:, 0], pairs[:, 1]), -info)
    np.add.at(hessian, (pairs[:, 1], pairs[:, 0]), -info)
    centre = np.eye(n) - 1.0 / n
    return centre @ np.linalg.inv(hessian) @ centre


def to_points(natural: np.ndarray) -> np.ndarray:
    return INIT_RATING + SCALE * natural


@dataclass
class Row:
    model: str
    rank: int
    rating: float
    lower: float
    upper: float
    battles: int
    wins: int
    losses: int
    ties: int
    not_separable_from: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "model": self.model,
            "rating": round(self.rating, 1),
            "lower": round(self.lower, 1),
            "upper": round(self.upper, 1),
            "battles": self.battles,
            "wins": self.wins,
            "losses": self.losses,
            "ties": self.ties,
            "not_separable_from": list(self.not_separable_from),
        }


@dataclass
class Leaderboard:
    """Ratings with intervals, the pairwise matrices in rating order, and the tally of votes."""

    rows: list[Row]
    win_rate: list[list[float | None]]  # [i][j]: share of battles row i won against column j, ties half
    pair_battles: list[list[int]]
    diff_lower: list[list[float | None]]  # bootstrap interval of rating[i] - rating[j]
    diff_upper: list[list[float | None]]
    tally: Tally
    selection: Selection
    rounds: int
    #: "plain" (Bradley-Terry) or "style" (controlled for length and markdown style: features/style_control.py)
    method: str = "plain"
    #: the style features' coefficients (logit per unit of a scaled feature) where method is "style"
    style: dict[str, float] | None = None
    #: per model: share of answers in German, share that kept the system prompt's register (style_control)
    columns: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [r.model for r in self.rows]

    def column_values(self, model: str) -> dict[str, Any]:
        """The model's columns beside its rating: german_share, register_kept (None where nothing was measured)."""
        c = self.columns.get(model) or {}
        german, kept = c.get("german"), c.get("register_kept")
        return {
            "german_share": None if german is None else round(german, 3),
            "german_answers": c.get("german_n", 0),
            "register_kept": None if kept is None else round(kept, 3),
            "register_answers": c.get("register_n", 0),
        }

    def as_dict(self) -> dict[str, Any]:
        def rounded(matrix: list[list[float | None]], digits: int) -> list[list[float | None]]:
            return [[None if v is None else round(v, digits) for v in row] for row in matrix]

        return {
            "format": "german-llm-playground/leaderboard",
            "version": 1,
            "method": "bradley-terry" if self.method == "plain" else "bradley-terry-style-controlled",
            "style_coefficients": self.style,
            "scale": {"base": BASE, "points": SCALE, "mean": INIT_RATING, "prior_sd": PRIOR_SD_POINTS},
            "confidence": CONFIDENCE,
            "bootstrap_rounds": self.rounds,
            "selection": self.selection.as_dict(),
            "counted": self.tally.as_dict(),
            "ratings": [r.as_dict() | self.column_values(r.model) for r in self.rows],
            "matrix": {
                "models": self.models,
                "win_rate": rounded(self.win_rate, 4),
                "battles": self.pair_battles,
                "diff_lower": rounded(self.diff_lower, 1),
                "diff_upper": rounded(self.diff_upper, 1),
            },
        }


def compute(
    per_vote: Sequence[Sequence[tuple[str, str, float]]],
    tally: Tally,
    selection: Selection | None = None,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
) -> Leaderboard:
    """Ratings of the collected battles, their bootstrap intervals (votes resampled) and the matrices."""
    sel = selection or Selection()
    models = sorted({m for battles in per_vote for a, b, _ in battles for m in (a, b)})
    index = {m: i for i, m in enumerate(models)}
    n = len(models)
    if n < 2:
        return Leaderboard([], [], [], [], [], tally, sel, rounds)
    # unique (a, b, score) rows with their counts, and how often each vote pattern adds to each row
    row_ids: dict[tuple[int, int, float], int] = {}
    patterns: Counter[tuple[tuple[int, int], ...]] = Counter()
    for battles in per_vote:
        ids = []
        for a, b, s in battles:
            ia, ib = index[a], index[b]
            if ia > ib:  # one orientation per pair keeps the rows few
                ia, ib, s = ib, ia, 1.0 - s
            ids.append(row_ids.setdefault((ia, ib, s), len(row_ids)))
        patterns[tuple(sorted(Counter(ids).items()))] += 1
    keys = list(row_ids)
    pairs = np.array([[a, b] for a, b, _ in keys], dtype=np.intp)
    scores = np.array([s for _, _, s in keys], dtype=np.float64)
    pattern_list = list(patterns)
    counts = np.array([patterns[p] for p in pattern_list], dtype=np.float64)
    contrib = np.zeros((len(pattern_list), len(keys)))
    for k, pattern in enumerate(pattern_list):
        for row, times in pattern:
            contrib[k, row] = times
    weights = counts @ contrib
    point = fit(n, pairs, scores, weights)[0]

    rng = np.random.default_rng(seed)
    n_votes = int(counts.sum())
    draws = rng.multinomial(n_votes, counts / counts.sum(), size=max(rounds, 0))
    boot = fit(n, pairs, scores, draws @ contrib, start=point) if rounds > 0 else point[None, :]
    return assemble(models, point, boot, _covariance(point, pairs, weights), per_vote, tally, sel, rounds)


def assemble(
    models: list[str],
    point: np.ndarray,
    boot: np.ndarray,
    cov: np.ndarray,
    per_vote: Sequence[Sequence[tuple[str, str, float]]],
    tally: Tally,
    sel: Selection,
    rounds: int,
) -> Leaderboard:
    """The leaderboard of fitted ratings (natural scale: `point`, bootstrap samples `boot`, covariance `cov` of the
    normal approximation): intervals, rows in rating order, the win-rate and difference matrices."""
    n = len(models)
    index = {m: i for i, m in enumerate(models)}
    tail = (1.0 - CONFIDENCE) / 2.0
    # the normal approximation from the curvature at the maximum: with a handful of identical votes
    # every bootstrap sample is the same and its interval has no width; the interval is never narrower
    z = float(ndtri(1.0 - tail))
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    d_sd = np.sqrt(np.clip(np.diag(cov)[:, None] + np.diag(cov)[None, :] - 2.0 * cov, 0.0, None))
    lower = to_points(np.minimum(np.quantile(boot, tail, axis=0), point - z * sd))
    upper = to_points(np.maximum(np.quantile(boot, 1.0 - tail, axis=0), point + z * sd))
    diffs = boot[:, :, None] - boot[:, None, :]
    point_diff = point[:, None] - point[None, :]
    d_low = SCALE * np.minimum(np.quantile(diffs, tail, axis=0), point_diff - z * d_sd)
    d_up = SCALE * np.maximum(np.quantile(diffs, 1.0 - tail, axis=0), point_diff + z * d_sd)
    rating = to_points(point)

    wins = np.zeros((n, n))
    played = np.zeros((n, n), dtype=np.int64)
    record = {m: [0, 0, 0] for m in models}  # wins, losses, ties
    for battles in per_vote:
        for a, b, s in battles:
            ia, ib = index[a], index[b]
            wins[ia, ib] += s
            wins[ib, ia] += 1.0 - s
            played[ia, ib] += 1
            played[ib, ia] += 1
            if s == 0.5:
                record[a][2] += 1
                record[b][2] += 1
            else:
                winner, loser = (a, b) if s == 1.0 else (b, a)
                record[winner][0] += 1
                record[loser][1] += 1

    order = sorted(range(n), key=lambda i: (-rating[i], models[i]))
    rows = []
    for rank, i in enumerate(order, 1):
        overlapping = [models[j] for j in order if j != i and lower[i] <= upper[j] and lower[j] <= upper[i]]
        w, lo, ti = record[models[i]]
        rows.append(
            Row(
                models[i], rank, float(rating[i]), float(lower[i]), float(upper[i]), w + lo + ti, w, lo, ti, overlapping
            )
        )

    def matrix(values: np.ndarray, missing: bool) -> list[list[float | None]]:
        return [
            [None if (i == j or (missing and not played[i, j])) else float(values[i, j]) for j in order] for i in order
        ]

    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(played > 0, wins / np.maximum(played, 1), np.nan)
    return Leaderboard(
        rows=rows,
        win_rate=matrix(share, True),
        pair_battles=[[int(played[i, j]) for j in order] for i in order],
        diff_lower=matrix(d_low, False),
        diff_upper=matrix(d_up, False),
        tally=tally,
        selection=sel,
        rounds=rounds,
    )


class LeaderboardBusy(InputError):
    """Too many leaderboards of other selections are being computed already: try again in a moment."""

    def __init__(self, waiting: int) -> None:
        super().__init__("err_lb_busy", n=waiting)


class LeaderboardCache:
    """Leaderboards by key (file state, selection, rounds), the last `size` of them.

    Each key is computed once however many callers ask at once (single flight): later callers of that key wait for
    that computation alone, never for another key's. Computations run off the caller's thread on two lanes of one
    thread each: `priority` (the default leaderboard every page load shows) has a lane of its own, so that no
    filter, session or other `rounds` ever queues in front of it; the other lane takes at most `max_waiting`
    computations, more raise LeaderboardBusy.
    """

    def __init__(self, size: int = 32, max_waiting: int = 8) -> None:
        self._size = size
        self._max_waiting = max_waiting
        self._items: OrderedDict[Any, Leaderboard] = OrderedDict()
        self._flights: dict[Any, Future[Leaderboard]] = {}
        self._waiting = 0
        self._lanes: dict[bool, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()

    def submit(self, key: Any, make: Callable[[], Leaderboard], priority: bool = False) -> Future[Leaderboard]:
        """The key's leaderboard as a future: done at once from the cache, else the running or a new computation."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                done: Future[Leaderboard] = Future()
                done.set_result(hit)
                return done
            flight = self._flights.get(key)
            if flight is not None:
                return flight
            if not priority:
                if self._waiting >= self._max_waiting:
                    raise LeaderboardBusy(self._waiting)
                self._waiting += 1
            lane = self._lanes.get(priority)
            if lane is None:
                name = "leaderboard-default" if priority else "leaderboard-other"
                lane = self._lanes[priority] = ThreadPoolExecutor(1, thread_name_prefix=name)
            flight = lane.submit(self._compute, key, make, priority)
            self._flights[key] = flight
            return flight

    def _compute(self, key: Any, make: Callable[[], Leaderboard], priority: bool) -> Leaderboard:
        try:
            board = make()
            with self._lock:
                self._items[key] = board
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
            return board
        finally:
            with self._lock:
                self._flights.pop(key, None)
                if not priority:
                    self._waiting -= 1

    def get(self, key: Any, make: Callable[[], Leaderboard], priority: bool = False) -> Leaderboard:
        """The key's leaderboard, waiting for its computation (never call it from a lane's own thread)."""
        return self.submit(key, make, priority).result()

    def __len__(self) -> int:
        return len(self._items)


def leaderboard(
    records: Iterable[Any],
    selection: Selection | None = None,
    rounds: int = DEFAULT_ROUNDS,
    seed: int = 0,
    unreadable: int = 0,
    known: Container[str] | None = None,
) -> Leaderboard:
    """The whole pipeline: records of the votes file -> counted battles -> ratings."""
    per_vote, tally = collect(records, selection, unreadable, known)
    return compute(per_vote, tally, selection, rounds, seed)


def sessions(records: Iterable[Any], known: Container[str] | None = None) -> list[str]:
    """Session ids in the order of their first vote."""
    seen: dict[str, None] = {}
    for record in records:
        vote = parse_vote(record, known)
        if isinstance(vote, Vote) and vote.session:
            seen.setdefault(vote.session, None)
    return list(seen)


# ---- export -------------------------------------------------------------------------------------
#: Columns of the votes export: who met whom and who won, never the prompt text or the answers
#: (visitors typed those; the votes file keeps them, the export that any visitor can download does not).
VOTE_COLUMNS = (
    "ts",
    "schema",
    "session",
    "prompt_set",
    "prompt_id",
    "category",
    "model_a",
    "model_b",
    "model_c",
    "model_d",
    "winner",
    "winner_model",
    "counted",
    "reason",
)
BOARD_COLUMNS = (
    "rank",
    "model",
    "rating",
    "lower",
    "upper",
    "battles",
    "wins",
    "losses",
    "ties",
    "german_share",
    "register_kept",
    "not_separable_from",
)


def vote_rows(records: Iterable[Any], known: Container[str] | None = None) -> list[dict[str, Any]]:
    """One row per record of the votes file (VOTE_COLUMNS), with whether it counts and if not, why; every text cut to
    its cap (FIELD_CHARS, MAX_MODEL_ID_CHARS)."""
    rows = []
    seen: set[tuple[str, str]] = set()
    for record in records:
        vote = parse_vote(record, known)
        rec = record if isinstance(record, dict) else {}
        panes = rec.get("panes") if isinstance(rec.get("panes"), list) else []
        models = [
            str(p.get("served_model") or p.get("model") or "")[:MAX_MODEL_ID_CHARS] if isinstance(p, dict) else ""
            for p in panes
        ][:4]
        reason = vote if isinstance(vote, str) else None
        if isinstance(vote, Vote) and vote.key is not None:
            if vote.key in seen:
                reason = "duplicate"
            seen.add(vote.key)
        schema = rec.get("schema", 1)
        row: dict[str, Any] = {
            "ts": _field(rec, "ts"),
            "schema": schema if isinstance(schema, int) else None,
            "session": _field(rec, "session"),
            "prompt_set": _field(rec, "prompt_set"),
            "prompt_id": _field(rec, "prompt_id"),
            "category": _field(rec, "category"),
            "winner": _field(rec, "winner"),
            "winner_model": vote.winner_model
            if isinstance(vote, Vote)
            else _text(rec.get("winner_model"), MAX_MODEL_ID_CHARS),
            "counted": reason is None,
            "reason": reason,
        }
        for letter, model in zip("abcd", [*models, "", "", "", ""], strict=False):
            row[f"model_{letter}"] = model or None
        rows.append({k: row.get(k) for k in VOTE_COLUMNS})
    return rows


#: First characters with which a spreadsheet takes a cell for a formula (OWASP, "CSV Injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with `'` (OWASP): it shows as the text it is.
    Numbers stay numbers (a negative rating is no formula)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    import csv
    import io

    out = io.StringIO()
    # RFC 4180's line end: with it, csv quotes a cell holding a lone CR too (with "\n" it did not, and a spreadsheet
    # started a new row at that CR, whose next cell then began with whatever followed it)
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if row.get(k) is None else spreadsheet_safe(row.get(k)) for k in columns})
    return out.getvalue()


def votes_csv(records: Iterable[Any], known: Container[str] | None = None) -> str:
    return _csv(VOTE_COLUMNS, vote_rows(records, known))


def board_csv(board: Leaderboard) -> str:
    rows = []
    for row in board.rows:
        item = row.as_dict() | board.column_values(row.model)
        item["not_separable_from"] = " ".join(item["not_separable_from"])
        rows.append(item)
    return _csv(BOARD_COLUMNS, rows)
