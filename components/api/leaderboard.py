"""The `/leaderboard` and `/votes` API endpoints: ratings from the blind votes, and the votes themselves."""

from __future__ import annotations

from typing import Any

import gradio as gr

from components.core.messages import normalize_language, t
from components.features import ratings
from components.features.compare import VoteLog

MIN_ROUNDS, MAX_ROUNDS = 50, 10000


def register(votes: VoteLog | None = None) -> None:
    """Adds `/leaderboard`: Bradley-Terry ratings of the blind votes, intervals, battles, win-rate matrix."""
    vote_log = votes or VoteLog()

    async def leaderboard(
        prompt_set: str | None = None,
        category: str | None = None,
        session: str | None = None,
        variant: str | None = None,
        rounds: int | None = None,
        lang: str = "de",
    ) -> dict[str, Any]:
        """Ratings from every counted blind vote (or those of a prompt set, a category, a session, a variant).

        Returns {ratings: [{rank, model, rating, lower, upper, battles, wins, losses, ties,
        not_separable_from}], matrix: {models, win_rate, battles, diff_lower, diff_upper}, counted:
        {votes, battles, outside_selection, not_counted: {reason: n}}, selection, bootstrap_rounds, ...}.
        Ratings are on an Elo-like scale (mean 1000); lower/upper are the 95 % bootstrap interval;
        models whose intervals overlap are not separable. `category` "free" means typed prompts.
        `rounds`: bootstrap samples (50 to 10000; default PLAYGROUND_BOOTSTRAP_ROUNDS or 1000).
        """
        language = normalize_language(lang)
        values = {"prompt_set": prompt_set, "category": category, "session": session, "variant": variant}
        for name, value in values.items():
            if value is not None and not isinstance(value, str):
                raise gr.Error(t("err_lb_filter", language, name=name))
        if rounds is not None:
            if isinstance(rounds, bool) or not isinstance(rounds, (int, float)) or int(rounds) != rounds:
                raise gr.Error(t("err_lb_rounds", language, low=MIN_ROUNDS, high=MAX_ROUNDS))
            if not MIN_ROUNDS <= int(rounds) <= MAX_ROUNDS:
                raise gr.Error(t("err_lb_rounds", language, low=MIN_ROUNDS, high=MAX_ROUNDS))
            rounds = int(rounds)
        board = await vote_log.leaderboard(ratings.Selection.of(**values), rounds)
        return board.as_dict()

    gr.api(leaderboard, api_name="leaderboard", concurrency_limit=None)

    async def votes() -> list[dict[str, Any]]:
        """Every blind vote as a row: time, session, prompt set / id / category, models A-D, winner,
        whether it counts and if not, why. Prompt texts and answers are not part of it."""
        records, _broken = await vote_log.records()
        return ratings.vote_rows(records)

    gr.api(votes, api_name="votes", concurrency_limit=None)
