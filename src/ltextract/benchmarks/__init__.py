"""Benchmarks as data: each is a `Benchmark` entry in `CATALOG` (its splits, published list
files with their pins and mirrors, and which source images each split's list points into).
No other code names a list URL or a split; adding a benchmark is adding an entry."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ltextract.errors import ListError


@dataclass(frozen=True)
class Pin:
    """What the published list of a split must look like, byte for byte and in totals."""

    split: str
    filename: str
    lines: int
    size: int
    sha256: str
    per_class: tuple[int, int]  # (min, max) images per class


@dataclass(frozen=True)
class SplitSpec:
    name: str
    #: the source images its list points into ("train/..." or "val/..."): ILSVRC2012's train or val set
    origin: str
    pin: Pin
    mirrors: tuple[str, ...] = ()  # published copies of the list, tried in order


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    splits: tuple[SplitSpec, ...]
    citation: str = ""
    _by_name: dict[str, SplitSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.splits})

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def origins(self) -> dict[str, str]:
        """split -> the source images it reads ("train" | "val")."""
        return {s.name: s.origin for s in self.splits}

    def split(self, name: str) -> SplitSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise ListError(f"unknown split {name!r} (expected one of"
                            f" {', '.join(self.split_names)})") from None


def catalog() -> dict[str, Benchmark]:
    from ltextract.benchmarks.imagenet_lt import IMAGENET_LT

    return {b.name: b for b in (IMAGENET_LT,)}


DEFAULT = "imagenet_lt"


def get(name: Optional[str] = None) -> Benchmark:
    found = catalog().get(name or DEFAULT)
    if found is None:
        raise ListError(f"unknown benchmark {name!r} (expected one of {', '.join(catalog())})")
    return found
