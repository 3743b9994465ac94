"""The named API endpoints (gradio_client): one module per endpoint group, each with one `register` function."""

from __future__ import annotations

from components.api import chat_models, compare, leaderboard, retrieval, structured
from components.core.service import Playground
from components.features.compare import CatalogIds, VoteLog


def register_api(playground: Playground, votes: VoteLog | None = None) -> None:
    """Adds every named endpoint to the Blocks being built: /chat, /models, /retrieve, /structured, /leaderboard,
    /votes, /compare (in this order, as before)."""
    chat_models.register(playground)
    retrieval.register(playground)
    structured.register(playground)
    # the votes it reads count only for builds of this playground's catalog (remote builds from the environment too)
    leaderboard.register(votes or VoteLog(known=CatalogIds(playground.catalog)))
    compare.register(playground)
