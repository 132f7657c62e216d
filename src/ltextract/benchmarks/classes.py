"""Class folder names in label order, packaged as text files beside the benchmark entries
(`wnids.txt`: the 1000 ILSVRC2012 wnids, sorted; a name's position is its label)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=None)
def class_names(filename: str) -> tuple[str, ...]:
    """The names in `filename` (one per line), in label order."""
    text = resources.files("ltextract.benchmarks").joinpath(filename).read_text("ascii")
    return tuple(text.split())


def wnids() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 wnids, sorted: a wnid's position is its ImageNet-LT label."""
    return class_names("wnids.txt")


@lru_cache(maxsize=1)
def label_of() -> dict[str, int]:
    return {w: i for i, w in enumerate(wnids())}
