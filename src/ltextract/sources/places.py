"""Places365 as its archives come, the images of Places-LT: the "easy format" tar
(`places365_standard/{train,val}/<class>/<file>`, sub-categories joined with '-' as the lists
write them), the 256x256 pair and the high-resolution pair (train in
`data_256/<letter>/<category>[/<sub>]/<file>`, val flat in `val_256/`; `data_large`, `val_large`
likewise), and any of them extracted. Per origin ("train" / "val"), the first that exists wins:

| kind | train                                                  | val                           |
|------|--------------------------------------------------------|-------------------------------|
| tar  | places365standard_easyformat.tar, then                 | the same, then val_256.tar,   |
|      | train_256_places365standard.tar, train_large_...tar    | val_large.tar                 |
| tree | places365_standard/train/, data_256/ (or torchvision's | places365_standard/val/,      |
|      | data_256_standard/), data_large(_standard)/, train/    | val_256/, val_large/, val/    |

A val tar or folder is flat: as with ILSVRC2012's, each image's class comes from the list."""
from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from ltextract.archives import PLACES_TARS
from ltextract.errors import TarError
from ltextract.sources import Source, is_file
from ltextract.sources.archive import StdinSource, TarSource
from ltextract.sources.tree import TreeSource

TREES = {"train": ("places365_standard/train", "data_256", "data_256_standard", "data_large",
                   "data_large_standard", "train"),
         "val": ("places365_standard/val", "val_256", "val_large", "val")}
_LETTER = re.compile(r"[a-z]")
_PEEK = 64  # folder entries looked at to tell the layouts apart


def deep_path(cls: str, file: str) -> str:
    """A class folder as the 256 and large trees nest it: `apartment_building-outdoor` ->
    `a/apartment_building/outdoor` (Places365 names hold '-' only before a sub-category)."""
    return f"{cls[0]}/{cls.replace('-', '/')}/{file}"


def member_names(origin: str, cls: str, file: str) -> tuple[str, ...]:
    """Every name the image may have in a Places365 tar, whichever of the three it is."""
    if origin == "train":
        deep = deep_path(cls, file)
        return f"places365_standard/train/{cls}/{file}", f"data_256/{deep}", f"data_large/{deep}"
    return f"places365_standard/val/{cls}/{file}", f"val_256/{file}", f"val_large/{file}"


class PlacesTarSource(TarSource):
    """Any of the Places365 tars: flat tars whose members are found by path."""

    @property
    def shape(self) -> str:
        return "Places365 tar"

    @property
    def nested(self) -> bool:
        return False

    def names_in_tar(self):
        return functools.partial(member_names, self.origin)


class PlacesStdinSource(StdinSource):
    @property
    def nested(self) -> bool:
        return False

    def names_in_tar(self):
        return functools.partial(member_names, self.origin)

    def describe(self) -> str:
        return f"{self.origin} from stdin (Places365 tar)"

    @property
    def label(self) -> str:
        return f"the Places365 {self.origin} tar from stdin"


class PlacesTreeSource(TreeSource):
    """An extracted Places365 folder: class folders (the easy format), letter folders (the 256
    and large trees' train), or flat (their val)."""

    def __init__(self, origin: str, path: Path, layout: str):
        super().__init__(origin, path, flat=layout == "flat")
        self.layout = layout  # "classes" | "letters" | "flat"

    @property
    def shape(self) -> str:
        return {"classes": "folder of Places365 class folders", "flat": "flat folder",
                "letters": "Places365 tree of letter/category[/sub] folders"}[self.layout]

    def relpath(self, cls: str, file: str) -> str:
        return deep_path(cls, file) if self.layout == "letters" else super().relpath(cls, file)


def detect(manual: Path, origin: str) -> Source:
    """The first Places365 source for `origin` in the manual dir; the error names all tried."""
    for name in PLACES_TARS[origin]:
        if (manual / name).exists():
            return describe(manual / name, origin)
    for rel in TREES[origin]:
        if (manual / rel).is_dir():
            return describe(manual / rel, origin)
    raise TarError(f"no Places365 {origin} images in {manual}: none of {', '.join(PLACES_TARS[origin])}"
                   f" nor an extracted {', '.join(f'{rel}/' for rel in TREES[origin])}")


def stdin(origin: str) -> Source:
    return PlacesStdinSource(origin, Path("-"))


def describe(path: Path, origin: str) -> Source:
    """What `path` is: a Places365 tar, or a folder in one of the extracted layouts."""
    if is_file(path):
        return PlacesTarSource(origin, path)
    letters = folders = files = 0
    with os.scandir(path) as it:
        for n, entry in enumerate(it):
            if n >= _PEEK:
                break
            if entry.is_dir():
                letters += bool(_LETTER.fullmatch(entry.name))
                folders += not _LETTER.fullmatch(entry.name)
            elif entry.is_file() and not entry.name.startswith("."):
                files += 1
    if letters and not folders:
        return PlacesTreeSource(origin, path, "letters")
    if folders:
        return PlacesTreeSource(origin, path, "classes")
    if files:
        return PlacesTreeSource(origin, path, "flat")
    raise TarError(f"{path} holds no Places365 class folders, letter folders or images")


def archives(manual: Path) -> list[TarSource]:
    """The Places365 tars in the manual dir, each once: what `ltextract index` indexes."""
    found: dict[str, TarSource] = {}
    for origin, names in PLACES_TARS.items():
        for name in names:
            if (manual / name).is_file() and name not in found:
                found[name] = PlacesTarSource(origin, manual / name)
    return list(found.values())
