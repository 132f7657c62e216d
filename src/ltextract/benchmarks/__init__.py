"""Benchmarks as data: each is a `Benchmark` entry in `CATALOG` (its splits, published list
files with their pins and mirrors, which source images each split's list points into, and its
classes in label order). No other code names a list URL, a split or a class; adding a benchmark
is adding an entry (and a reader in `sources`, if its images come in a new shape)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

from ltextract.errors import ListError, UsageError


@dataclass(frozen=True)
class Variant:
    """Another published form of a list: the same images and labels, other paths (flat val
    paths, as some codebases ship the test list). Accepted as published, recorded as this."""

    name: str
    size: int
    sha256: str
    mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pin:
    """What the published list of a split must look like, byte for byte and in totals."""

    split: str
    filename: str
    lines: int
    size: int
    sha256: str
    per_class: tuple[int, int]  # (min, max) images per class
    variants: tuple[Variant, ...] = ()

    def variant(self, sha256: str) -> Optional[Variant]:
        return next((v for v in self.variants if v.sha256 == sha256), None)


@dataclass(frozen=True)
class SplitSpec:
    name: str
    #: which of the benchmark's image sets its list points into ("train" or "val": the list
    #: path's first folder), e.g. ILSVRC2012's train images or Places365's val images
    origin: str
    pin: Pin
    mirrors: tuple[str, ...] = ()  # published copies of the list, tried in order
    default: bool = True  # built when no --split is given; else only when asked for
    #: a split whose images include every one of these (then hard-linked from it within OUT)
    subset_of: str = ""
    citation: str = ""  # where the split comes from, when not from the benchmark's own paper


@dataclass(frozen=True)
class Benchmark:
    name: str
    title: str
    splits: tuple[SplitSpec, ...]
    citation: str = ""
    #: the image archives its lists point into; `sources.detect` knows their shapes
    images: str = "ilsvrc2012"
    #: class folder names in label order, one per line, packaged beside this module: labels
    #: come from the published lists, never from sorting folder names
    classes_file: str = "wnids.txt"
    class_pattern: str = r"n[0-9]{8}"  # a class folder name as the lists spell it
    class_noun: str = "wnid"  # what the lists' class folders are: messages, the manifests' column
    class_hint: str = "n + 8 digits"  # what `class_pattern` means, for messages
    class_set: str = ""  # whose classes they are, for messages [default: the title]
    #: file names are unique across classes (ILSVRC2012's are; Places365's train names repeat in
    #: every class folder): where not, a sample needs its class to be named (webdataset keys)
    unique_file_names: bool = True
    homepage: str = ""
    _by_name: dict[str, SplitSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {s.name: s for s in self.splits})

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def default_splits(self) -> tuple[str, ...]:
        """What `build` makes when no --split is given (SADE's test sets only when asked)."""
        return tuple(s.name for s in self.splits if s.default)

    @property
    def origins(self) -> dict[str, str]:
        """split -> the source images it reads ("train" | "val")."""
        return {s.name: s.origin for s in self.splits}

    def split(self, name: str) -> SplitSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise ListError(f"unknown split {name!r} of {self.name} (expected one of"
                            f" {', '.join(self.split_names)})") from None

    @cached_property
    def classes(self) -> tuple[str, ...]:
        """Class folder names in label order (a name's position is its label)."""
        from ltextract.benchmarks.classes import class_names

        return class_names(self.classes_file)

    @cached_property
    def label_of(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.classes)}

    @cached_property
    def class_re(self) -> re.Pattern[str]:
        return re.compile(self.class_pattern)

    def describe_classes(self, what: str = "") -> str:
        """'the 1000 ILSVRC2012 wnids' (or labels, ...), for messages."""
        noun = self.class_noun + ("es" if self.class_noun.endswith("s") else "s")
        return f"the {len(self.classes)} {self.class_set or self.title} {what or noun}"


def github(repo: str, commit: str, branch: str, path: str) -> tuple[str, str]:
    """A list in a GitHub repository as two mirrors: pinned to the commit that last touched it
    (its bytes never change), then on its branch (it survives a history rewrite)."""
    raw = "https://raw.githubusercontent.com"
    return f"{raw}/{repo}/{commit}/{path}", f"{raw}/{repo}/{branch}/{path}"


#: a folder of lists in a GitHub repository: (owner/name, commit, branch, folder)
Folder = tuple[str, str, str, str]


def published(name: str, origin: str, filename: str, lines: int, size: int, sha256: str,
              per_class: tuple[int, int], folders: tuple[Folder, ...], **spec) -> SplitSpec:
    """A split whose list is `filename` in each of `folders`, tried in order."""
    mirrors = tuple(url for repo, commit, branch, folder in folders
                    for url in github(repo, commit, branch, f"{folder}/{filename}"))
    return SplitSpec(name, origin, Pin(name, filename, lines, size, sha256, per_class), mirrors, **spec)


def catalog() -> dict[str, Benchmark]:
    from ltextract.benchmarks.imagenet100_lt import IMAGENET100_LT
    from ltextract.benchmarks.imagenet_lt import IMAGENET_LT
    from ltextract.benchmarks.places_lt import PLACES_LT

    return {b.name: b for b in (IMAGENET_LT, IMAGENET100_LT, PLACES_LT)}


DEFAULT = "imagenet_lt"


def get(name: Optional[str] = None) -> Benchmark:
    found = catalog().get(name or DEFAULT)
    if found is None:
        raise UsageError(f"unknown benchmark {name!r} (expected one of {', '.join(catalog())})")
    return found
