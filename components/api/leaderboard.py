"""The `/leaderboard` and `/votes` API endpoints: ratings from the blind votes, and the votes themselves."""

from __future__ import annotations

from typing import Any

import gradio as gr

from components.api.common import checking
from components.features import ratings, style_control
from components.features.compare import VoteLog, bootstrap_rounds
from components.serving.limits import check_rate, public_profile
from components.vocabulary.generation import InputError

MIN_ROUNDS, MAX_ROUNDS = 50, 10000


def check_rounds(rounds: Any) -> int | None:
    """The `rounds` parameter: None (the default), or a whole number from MIN_ROUNDS to MAX_ROUNDS; in the public
    profile only the configured number (PLAYGROUND_BOOTSTRAP_ROUNDS): each other value is a computation of its own."""
    if rounds is None:
        return None
    if isinstance(rounds, bool) or not isinstance(rounds, (int, float)) or int(rounds) != rounds:
        raise InputError("err_lb_rounds", low=MIN_ROUNDS, high=MAX_ROUNDS)
    if not MIN_ROUNDS <= int(rounds) <= MAX_ROUNDS:
        raise InputError("err_lb_rounds", low=MIN_ROUNDS, high=MAX_ROUNDS)
    fixed = bootstrap_rounds()
    if public_profile() and int(rounds) != fixed:
        raise InputError("err_lb_rounds_fixed", rounds=fixed)
    return int(rounds)


def check_method(method: Any) -> str:
    """The `method` parameter: None or "plain" (Bradley-Terry), "style" (controlled for length and style)."""
    if method is None:
        return style_control.PLAIN
    if not isinstance(method, str) or method.strip().lower() not in style_control.METHODS:
        raise InputError("err_lb_method")
    return method.strip().lower()


def register(votes: VoteLog | None = None) -> None:
    """Adds `/leaderboard`: Bradley-Terry ratings of the blind votes, intervals, battles, win-rate matrix."""
    vote_log = votes or VoteLog()

    async def leaderboard(
        prompt_set: str | None = None,
        category: str | None = None,
        session: str | None = None,
        variant: str | None = None,
        rounds: int | None = None,
        method: str | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
    ) -> dict[str, Any]:
        """Ratings from every counted blind vote (or those of a prompt set, a category, a session, a variant).

        Returns {ratings: [{rank, model, rating, lower, upper, battles, wins, losses, ties,
        not_separable_from, german_share, german_answers, register_kept, register_answers}],
        matrix: {models, win_rate, battles, diff_lower, diff_upper}, counted: {votes, battles,
        outside_selection, not_counted: {reason: n}}, selection, bootstrap_rounds, method, ...}.
        Ratings are on an Elo-like scale (mean 1000); lower/upper are the 95 % bootstrap interval;
        models whose intervals overlap are not separable. `category` "free" means typed prompts.
        `rounds`: bootstrap samples (50 to 10000; default PLAYGROUND_BOOTSTRAP_ROUNDS or 1000; on a public
        Space only that default). `method`: "plain" (default) or "style": ratings controlled for answer length
        and markdown style as Chatbot Arena does (`style_coefficients` then gives each feature's weight).
        `german_share`: the share of the model's answers that are mostly German; `register_kept`: the share that
        kept the system prompt's du/Sie. Rate-limited like every endpoint (PLAYGROUND_RATE_LIMIT).
        """
        with checking(lang, "leaderboard"):
            values = {"prompt_set": prompt_set, "category": category, "session": session, "variant": variant}
            for name, value in values.items():
                if value is not None and not isinstance(value, str):
                    raise InputError("err_lb_filter", name=name)
            n = check_rounds(rounds)
            chosen = check_method(method)
            check_rate(request)
            # computed once per votes-file state and selection, whoever asks; the default board never waits for
            # another selection's (ratings.LeaderboardCache); too many other selections at once: err_lb_busy
            board = await vote_log.leaderboard(ratings.Selection.of(**values), n, chosen)
        return board.as_dict()

    gr.api(leaderboard, api_name="leaderboard", concurrency_limit=None)

    async def votes(request: gr.Request | None = None) -> list[dict[str, Any]]:
        """Every blind vote as a row: time, session, prompt set / id / category, models A-D, winner,
        whether it counts and if not, why. Prompt texts and answers are not part of it."""
        with checking(None, "votes"):
            check_rate(request)
            records, _broken = await vote_log.records()
        return ratings.vote_rows(records, vote_log.known)

    gr.api(votes, api_name="votes", concurrency_limit=None)
