"""The `/compare` and `/leaderboard` API endpoints: several models at once; the ratings from blind votes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import gradio as gr

from components.api import api_language, failed, refused
from components.core.messages import normalize_language, t
from components.core.service import Playground
from components.core.validation import InputError, check_message
from components.features import ratings
from components.features.compare import MAX_PANES, PaneSpec, VoteLog, new_round, prepare_panes, stream_round
from components.serving.limits import check_rate


def pane_payload(pane: Any) -> dict[str, Any]:
    return {
        "model": pane.model_id,
        "label": pane.model_label,
        "text": pane.text,
        "stats": pane.stats,
        "error": pane.error,
        "error_code": pane.error_key,
        "done": pane.done,
    }


def register_compare_api(playground: Playground, votes: VoteLog | None = None) -> None:
    """Adds `/compare` and `/leaderboard` to the Blocks being built."""
    register_leaderboard_api(votes)
    default_model = playground.catalog.default.id

    async def compare(
        message: str,
        models: list[str] | None = None,
        system_prompt: str | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        max_new_tokens: int | None = None,
        repetition_penalty: float | None = None,
        seed: int | None = None,
        lang: str = "de",
        request: gr.Request | None = None,
    ) -> list[dict[str, Any]]:  # an async generator: streams the list as it grows
        """Streams answers of several models to one message, all generated at once.

        `models` is a list of 1 to 4 `variant/quantization` ids from `/models` (default: the offline
        model twice); `system_prompt` None means each family's default. Yields a list with one
        {model, label, text, stats, error, error_code, done} per model, in the order given; a model
        that fails reports its `error` while the others go on. Bad input is refused as a whole.
        """
        language = normalize_language(lang if isinstance(lang, str) else None)
        try:
            language = api_language(lang)
            if isinstance(models, str):
                models = [models]
            if models is not None and not isinstance(models, (list, tuple)):
                raise InputError("err_wrong_type", name="models", kind=type(models).__name__, expected="list of ids")
            chosen = list(models) if models else [default_model, default_model]
            check_rate(request)
            text = check_message(message)
            if not 1 <= len(chosen) <= MAX_PANES or not all(isinstance(m, str) for m in chosen):
                raise InputError("err_compare_models", count=len(chosen), max=MAX_PANES)
            settings = {
                "temperature": temperature,
                "top_p": top_p,
                "top_k": top_k,
                "max_new_tokens": max_new_tokens,
                "repetition_penalty": repetition_penalty,
                "seed": seed,
            }
            specs = [PaneSpec(m, system_prompt, settings) for m in chosen]
            prepared = await asyncio.to_thread(prepare_panes, playground, specs, text, None, language)
            for spec, prep in zip(specs, prepared, strict=True):
                if isinstance(prep, InputError):
                    raise InputError(
                        "err_compare_model_refused",
                        model=str(spec.model_id)[:80],
                        why=t(prep.key, language, **prep.params),
                    )
        except InputError as exc:
            raise refused(exc, language, "compare") from None
        except Exception as exc:
            raise failed(exc, language, "compare") from None
        round_ = new_round(playground, specs, text, prepared, language, settings)
        async with contextlib.aclosing(stream_round(playground, round_, prepared)) as updates:
            async for update in updates:
                yield [pane_payload(p) for p in update.panes]

    gr.api(compare, api_name="compare", concurrency_limit=None)


MIN_ROUNDS, MAX_ROUNDS = 50, 10000


def register_leaderboard_api(votes: VoteLog | None = None) -> None:
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
