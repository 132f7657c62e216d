"""The 1000 ILSVRC2012 classes: wnids in sorted order, a wnid's position its label."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 wnids, sorted: a wnid's position is its label."""
    text = resources.files("ltextract.benchmarks").joinpath("wnids.txt").read_text("ascii")
    return tuple(text.split())


@lru_cache(maxsize=1)
def label_of() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}
