"""Where the ILSVRC2012 images are: the shapes users keep them in, detected in the manual dir.

Per list top ("train" / "val"), the first that exists wins:

| kind       | train                                        | val                                  |
|------------|----------------------------------------------|--------------------------------------|
| tar        | ILSVRC2012_img_train.tar (tar of class tars) | ILSVRC2012_img_val.tar (flat)        |
| multipart  | ILSVRC2012_img_train.tar.001, .002, ...      | ILSVRC2012_img_val.tar.001, ...      |
| class-tars | ILSVRC2012_img_train/ or train/: n*.tar      | -                                    |
| tree       | train/ or ILSVRC/Data/CLS-LOC/train/: n*/    | val/ or .../CLS-LOC/val/: flat or n*/|

A tree's flat val (as Kaggle ships it) has no wnid folders, so, as for the val tar, the wnid comes
from the list. Every kind resolves a list entry to (file, offset, size), so planning, copying,
manifests and verify are the same whatever the source.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ltextract import extract, multipart, outdir
from ltextract.base import TRAIN_TAR, VAL_TAR, TarError, official_size_hint
from ltextract.extract import Job
from ltextract.splits import SplitList
from ltextract.tarindex import ArchiveIndex
from ltextract.tarwalk import normalise

INDEXED = ("tar", "multipart")  # located through the header index of one (split) archive
TARS = {"train": TRAIN_TAR, "val": VAL_TAR}
KAGGLE = Path("ILSVRC") / "Data" / "CLS-LOC"
FOLDERS = {"train": ("ILSVRC2012_img_train", "train", KAGGLE / "train"),
           "val": ("ILSVRC2012_img_val", "val", KAGGLE / "val")}
_WNID = re.compile(r"n[0-9]{8}")
_PEEK = 64  # folder entries looked at to tell the kinds apart

Key = tuple[str, str]  # (wnid, file name) as a list names it
Where = tuple[Path, int, int]  # (file holding the bytes, payload offset, size)


@dataclass(frozen=True)
class Source:
    top: str
    kind: str
    path: Path  # the tar, the folder of class tars, or the tree's split folder
    flat: bool = False  # tree only: images directly in `path`, no wnid folders

    def describe(self) -> str:
        if self.kind == "stdin":
            return f"{self.top} from stdin (tar)"
        if self.kind == "multipart":
            what = f"tar in {len(multipart.parts_of(self.path))} parts"
        else:
            what = {"tar": "tar", "class-tars": "folder of class tars",
                    "tree": "flat folder" if self.flat else "folder of wnid folders"}[self.kind]
        return f"{self.top} from {self.path} ({what})"


def detect(manual: Path, top: str) -> Source:
    """The first source for `top` found in the manual dir; the error names everything tried."""
    tar = manual / TARS[top]
    if tar.exists():
        return describe_path(tar, top)
    if multipart.first_part(tar).exists():
        return describe_path(multipart.first_part(tar), top)
    for rel in FOLDERS[top]:
        if (manual / rel).is_dir():
            return describe_path(manual / rel, top)
    tried = ", ".join(f"{rel}/" for rel in FOLDERS[top])
    raise TarError(f"{TARS[top]} not found in {manual} (nor an extracted {top} folder: {tried})")


def describe_path(path: Path, top: str) -> Source:
    """What kind of source `path` is: a tar file, a folder of class tars, or a tree."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TarError(f"{path} not found") from None
    if stat.S_ISREG(st.st_mode):
        if not os.access(path, os.R_OK):
            raise TarError(f"{path} is not readable")
        return Source(top, "multipart" if multipart.is_first_part(path) else "tar", path)
    if not stat.S_ISDIR(st.st_mode):
        raise TarError(f"{path} is neither a tar nor a folder")
    dirs = tars = files = 0
    with os.scandir(path) as it:
        for n, entry in enumerate(it):
            if n >= _PEEK:
                break
            if entry.is_dir() and _WNID.fullmatch(entry.name):
                dirs += 1
            elif entry.is_file() and entry.name.endswith(".tar") and _WNID.fullmatch(entry.name[:-4]):
                tars += 1
            elif entry.is_file() and not entry.name.startswith("."):
                files += 1
    if dirs:
        return Source(top, "tree", path)
    if tars and top == "train":
        return Source(top, "class-tars", path)
    if files:
        return Source(top, "tree", path, flat=True)
    raise TarError(f"{path} holds no wnid folders, class tars or images")


def identity(src: Source, link: str) -> str:
    """Journal header for non-tar sources: another source or link mode redoes the files."""
    return f"{src.kind} {os.path.realpath(src.path)} link={link}"


def locate(src: Source, keys: set[Key], class_index: Callable[[Path], ArchiveIndex]) -> dict[Key, Where]:
    """Where each wanted image is; keys not found are left out (the planner reports them)."""
    if src.kind == "tree":
        return _locate_tree(src, keys)
    if src.kind == "class-tars":
        return _locate_class_tars(src, keys, class_index)
    raise ValueError(f"{src.kind} sources are located through their tar index")


def _locate_tree(src: Source, keys: set[Key]) -> dict[Key, Where]:
    found: dict[Key, Where] = {}
    for wnid, name in keys:
        path = src.path / name if src.flat else src.path / wnid / name
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode):
            found[(wnid, name)] = (path, 0, st.st_size)
    return found


def _locate_class_tars(src: Source, keys: set[Key], class_index: Callable[[Path], ArchiveIndex]
                       ) -> dict[Key, Where]:
    """Each needed class tar is indexed like the flat val tar (headers only, cached)."""
    found: dict[Key, Where] = {}
    for wnid in sorted({w for w, _ in keys}):
        tar = src.path / f"{wnid}.tar"
        if not tar.is_file():
            continue
        index = class_index(tar)
        for _, members in index.iter_groups():
            for m in members:
                key = (wnid, normalise(m.name, wnid))
                if key in keys:
                    found[key] = (tar, m.offset, m.size)  # the last copy wins, as in tar
    return found


def plan(lists: dict[str, SplitList], srcs: dict[str, Source],
         tar_index: Callable[[Source], ArchiveIndex], class_index: Callable[[Path], ArchiveIndex],
         link: str) -> tuple[dict[str, list[Job]], dict[str, str], dict[str, str]]:
    """Jobs per split, each top's source identity for the journal, and the damage of each top
    whose tar is truncated (its jobs are then only the files before the cut)."""
    where, names, identities, damage = {}, {}, {}, {}
    for top, keys in extract.wanted(lists).items():
        src = srcs[top]
        if src.kind in INDEXED:
            index = tar_index(src)
            where[top] = extract.locate(index, keys)
            identities[top] = outdir.tar_identity(index)
            if index.damage:
                damage[top] = index.damage
            names[top] = f"{src.path}{official_size_hint(src.path.name, index.size)}"
        else:
            where[top] = locate(src, keys, class_index)
            identities[top] = identity(src, link if src.kind == "tree" else "copy")
            names[top] = str(src.path)
    return extract.plan_located(lists, where, names, partial=set(damage)), identities, damage


def resolve(manual: Optional[Path], top: str, explicit: Optional[Path]) -> Source:
    if explicit == Path("-"):
        return Source(top, "stdin", explicit)  # read once, front to back (the stream strategy)
    if explicit is not None:
        return describe_path(explicit, top)
    assert manual is not None
    return detect(manual, top)
