"""Telling the shapes apart: what the manual dir (or an explicit --train-source/--val-source)
holds for each origin. Per origin ("train" / "val"), the first that exists wins:

| kind       | train                                        | val                                  |
|------------|----------------------------------------------|--------------------------------------|
| tar        | ILSVRC2012_img_train.tar (tar of class tars) | ILSVRC2012_img_val.tar (flat)        |
| multipart  | ILSVRC2012_img_train.tar.001, .002, ...      | ILSVRC2012_img_val.tar.001, ...      |
| class-tars | ILSVRC2012_img_train/ or train/: n*.tar      | -                                    |
| tree       | train/ or ILSVRC/Data/CLS-LOC/train/: n*/    | val/ or .../CLS-LOC/val/: flat or n*/|
| hub-parquet| [data/]train-NNNNN-of-NNNNN.parquet          | [data/]validation-NNNNN-of-NNNNN...  |
| hub-tar.gz | [data/]train_images_0.tar.gz ... _4.tar.gz   | [data/]val_images.tar.gz             |

The Hugging Face Hub's shapes (`sources.hub`) are also taken from a folder or a glob naming them;
Places365's shapes (Places-LT's images) are told apart in `sources.places`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from ltextract.archives import TARS, TRAIN_TAR, VAL_TAR
from ltextract.errors import LtError, TarError
from ltextract.sources import Source, hub, is_file
from ltextract.sources.archive import SplitTarSource, StdinSource, TarSource
from ltextract.sources.class_tars import ClassTarsSource
from ltextract.sources.hub_parquet import HubParquetSource
from ltextract.sources.hub_targz import HubTarGzSource
from ltextract.sources.tree import TreeSource
from ltextract.tar import readers

KAGGLE = Path("ILSVRC") / "Data" / "CLS-LOC"
FOLDERS = {"train": ("ILSVRC2012_img_train", "train", KAGGLE / "train"),
           "val": ("ILSVRC2012_img_val", "val", KAGGLE / "val")}
STDIN = Path("-")
_WNID = re.compile(r"n[0-9]{8}")
_PEEK = 64  # folder entries looked at to tell the kinds apart


def default_manual_dir() -> Path:
    """Where TFDS users already keep the tars."""
    env = os.environ.get("LTEXTRACT_MANUAL_DIR")
    if env:
        return Path(env)
    return Path.home() / "tensorflow_datasets" / "downloads" / "manual"


def resolve_manual_dir(manual_dir: Optional[Path]) -> Path:
    path = manual_dir or default_manual_dir()
    if not path.is_dir():
        hint = "" if manual_dir else " (pass --manual-dir or set LTEXTRACT_MANUAL_DIR)"
        raise LtError(f"manual dir {path} does not exist or is not a folder{hint}")
    return path


def resolve(manual: Optional[Path], origin: str, explicit: Optional[Path],
            images: str = "ilsvrc2012") -> Source:
    """The source of `origin`: named explicitly (`-` is stdin), or found in the manual dir;
    `images`: the benchmark's archives (ILSVRC2012's shapes are here, Places365's in `places`)."""
    if images == "places365":
        from ltextract.sources import places

        if explicit == STDIN:
            return places.stdin(origin)
        return places.describe(explicit, origin) if explicit is not None else places.detect(manual, origin)
    if explicit == STDIN:
        return StdinSource(origin, STDIN)
    if explicit is not None:
        return describe_path(explicit, origin)
    assert manual is not None
    return detect(manual, origin)


def detect(manual: Path, origin: str) -> Source:
    """The first source for `origin` found in the manual dir; the error names everything tried."""
    tar = manual / TARS[origin]
    if tar.exists():
        return describe_path(tar, origin)
    if readers.first_part(tar).exists():
        return describe_path(readers.first_part(tar), origin)
    for rel in FOLDERS[origin]:
        if (manual / rel).is_dir():
            return describe_path(manual / rel, origin)
    for folder in (manual, manual / "data"):
        src = hub_source(folder, origin) if folder.is_dir() else None
        if src is not None:
            return src
    tried = ", ".join(f"{rel}/" for rel in FOLDERS[origin])
    split = hub.PARQUET_SPLIT[origin]
    raise TarError(f"{TARS[origin]} not found in {manual} (nor an extracted {origin} folder: {tried};"
                   f" nor the Hugging Face Hub's {split}-*.parquet or {hub.TARGZ_SHARDS[origin][0]}"
                   " shards, there or in data/)")


def hub_source(path: Path, origin: str) -> Optional[Source]:
    """The Hub's shards of `origin` that `path` names (a folder, a glob, a shard), if any."""
    found = hub.find(path, origin)
    if found is None:
        return None
    shape, folder, shards = found
    kind = HubParquetSource if shape == hub.PARQUET else HubTarGzSource
    return kind(origin, folder, shards)


def archives(manual: Path) -> list[TarSource]:
    """The tars (whole or split into parts) in the manual dir: what `ltextract index` indexes;
    ILSVRC2012's and Places365's."""
    from ltextract.sources import places

    found = []
    for origin, name in TARS.items():
        for path in (manual / name, readers.first_part(manual / name)):
            if path.exists():
                src = describe_path(path, origin)
                if isinstance(src, TarSource):
                    found.append(src)
                break
    found += places.archives(manual)
    if not found:
        raise TarError(f"neither {TRAIN_TAR} nor {VAL_TAR} (nor a Places365 tar) is in {manual}")
    return found


def describe_path(path: Path, origin: str) -> Source:
    """What kind of source `path` is: a tar file, a folder of class tars, or a tree."""
    if hub.is_glob(path):
        src = hub_source(path, origin)
        if src is None:
            raise TarError(f"{path} matches none of the Hugging Face Hub's {origin} shards"
                           f" ({hub.PARQUET_SPLIT[origin]}-*.parquet, {hub.TARGZ_SHARDS[origin][0]})")
        return src
    if is_file(path):
        if path.name.endswith((".parquet", ".tar.gz")):
            src = hub_source(path, origin)
            if src is not None:
                return src
        return (SplitTarSource if readers.is_first_part(path) else TarSource)(origin, path)
    src = hub_source(path, origin)
    if src is not None:
        return src
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
        return TreeSource(origin, path)
    if tars and origin == "train":
        return ClassTarsSource(origin, path)
    if files:
        return TreeSource(origin, path, flat=True)
    raise TarError(f"{path} holds no wnid folders, class tars or images")
