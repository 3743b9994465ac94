"""The card copies in tests/cards/ equal the originals in ../shared/seeds/ wherever those are present."""

from __future__ import annotations

import pytest

from tests.cards import CARDS, ORIGINALS, card


def test_every_card_is_there() -> None:
    for prefix in ("000", "001", "003"):
        assert card(prefix).strip()


@pytest.mark.skipif(not ORIGINALS.is_dir(), reason="../shared/seeds is not in this checkout's workspace")
def test_copies_equal_the_originals() -> None:
    originals = sorted(ORIGINALS.glob("*.txt"))
    assert originals
    for original in originals:
        copy = CARDS / original.name
        assert copy.is_file(), f"{original.name} is not copied into tests/cards/"
        assert copy.read_bytes() == original.read_bytes(), f"tests/cards/{original.name} differs from the seed"
