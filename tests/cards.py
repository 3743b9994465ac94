"""The model cards the tests compare against: verbatim copies in tests/cards/ (originals in ../shared/seeds/)."""

from __future__ import annotations

from pathlib import Path

CARDS = Path(__file__).resolve().parent / "cards"
#: where the originals live in the workspace; absent on a bare clone
ORIGINALS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def card_path(prefix: str) -> Path:
    """The card file whose name starts with `prefix` (000 IGEL, 001 EM German, 003 LeoLM)."""
    files = sorted(CARDS.glob(f"{prefix}_*.txt"))
    if not files:
        raise FileNotFoundError(f"model card {prefix}_* not found in {CARDS}")
    return files[0]


def card(prefix: str) -> str:
    """The card's text. The LeoLM card was stored with UTF-8 read as Mac Roman ("ausf√ºhrliche"): undone."""
    text = card_path(prefix).read_text(encoding="utf-8")
    if "√" in text:
        text = text.encode("mac_roman").decode("utf-8")
    return text
