"""ImageNet as the Hugging Face Hub ships it (`ILSVRC/imagenet-1k`), what its two shapes share:
shard sets found by name (in a folder, by a glob), checked whole before any work, with one journal
identity for the set; and the Hub's file names, `<file>_<wnid>.JPEG`, mapped back to ILSVRC's.

| shape       | train                                  | val                                       |
|-------------|----------------------------------------|-------------------------------------------|
| hub-parquet | train-00000-of-00294.parquet ...       | validation-00000-of-00014.parquet ...     |
| hub-tar.gz  | train_images_0.tar.gz ... _4.tar.gz    | val_images.tar.gz                         |

The Hub's `test` shards are the unlabelled ILSVRC test set, which no list uses (ImageNet-LT's
test split is the ILSVRC *val* set): they are never read."""
from __future__ import annotations

import glob
import hashlib
import os
import re
from pathlib import Path
from typing import Callable, Optional

from ltextract.errors import TarError
from ltextract.sources import Job, Source
from ltextract.tar.index import fingerprint

PARQUET, TARGZ = "hub-parquet", "hub-tar.gz"
#: origin -> the Hub's name of that split in parquet shards
PARQUET_SPLIT = {"train": "train", "val": "validation"}
#: origin -> the names of its .tar.gz shards, all of which the Hub's loading script reads
TARGZ_SHARDS = {"train": tuple(f"train_images_{i}.tar.gz" for i in range(5)), "val": ("val_images.tar.gz",)}
_PARQUET = re.compile(r"(?P<split>[a-z]+)-(?P<i>[0-9]{5})-of-(?P<n>[0-9]{5})\.parquet")
_GLOB = re.compile(r"[*?[]")


class HubSource(Source):
    """A complete set of the Hub's shards for one origin, read shard by shard, each front to back."""
    sharded = True

    def __init__(self, origin: str, path: Path, shards: tuple[Path, ...] = ()):
        super().__init__(origin, path)
        self.shards = shards  # in the set's order

    @property
    def shape(self) -> str:
        return f"{len(self.shards)} Hugging Face Hub {self.kind.partition('-')[2]} shard(s)"

    @property
    def label(self) -> str:
        """The set as messages name it: "the 5 hub-tar.gz shards in DIR"."""
        return f"the {len(self.shards)} {self.kind} shard(s) in {self.path}"

    def identity(self) -> str:
        """Every shard's name, size, mtime and first and last 4 KiB, hashed: the same shards
        keep journaled files without reading; any other set (a shard downloaded again) has
        them re-checked."""
        h = hashlib.sha256()
        for shard in self.shards:
            st = os.stat(shard)
            h.update(f"{shard.name} {st.st_size} {st.st_mtime_ns} {fingerprint(shard)}\n".encode())
        return f"{self.kind} {len(self.shards)} shards {h.hexdigest()[:32]}"


def is_glob(path: Path) -> bool:
    return bool(_GLOB.search(str(path)))


def find(path: Path, origin: str) -> Optional[tuple[str, Path, tuple[Path, ...]]]:
    """The Hub shards of `origin` that `path` names: a folder holding them, a glob (`*`, `?`,
    `[`) matching them, or one shard: (shape, folder, shards in order), checked complete;
    None when it names none. Parquet wins when both shapes are there (no inflating)."""
    if is_glob(path):
        files = [Path(p) for p in sorted(glob.glob(str(path)))]
        folder = Path(os.path.commonpath([str(f.parent) for f in files])) if files else path.parent
    elif path.is_dir():
        with os.scandir(path) as it:
            files = sorted(Path(e.path) for e in it if e.name.endswith((".parquet", ".tar.gz")))
        folder = path
    else:
        files, folder = [path], path.parent
    split = PARQUET_SPLIT[origin]
    parquet = {f: m for f in files if (m := _PARQUET.fullmatch(f.name)) and m["split"] == split}
    if parquet:
        return PARQUET, folder, _whole_parquet(parquet, folder)
    targz = {f.name: f for f in files if f.name in TARGZ_SHARDS[origin]}
    if targz:
        missing = [name for name in TARGZ_SHARDS[origin] if name not in targz]
        if missing:
            raise TarError(f"{folder / missing[0]} is missing (the Hub's {origin} set is"
                           f" {_span(TARGZ_SHARDS[origin])})")
        return TARGZ, folder, tuple(targz[name] for name in TARGZ_SHARDS[origin])
    return None


def _whole_parquet(found: dict[Path, re.Match], folder: Path) -> tuple[Path, ...]:
    """`<split>-00000-of-N.parquet` ... `<split>-(N-1)-of-N.parquet`, every one of them."""
    counts = {m["n"] for m in found.values()}
    if len(counts) > 1:
        raise TarError(f"{folder} mixes parquet sets of {' and '.join(sorted(counts))} shards:"
                       " keep one download of the dataset")
    n = int(counts.pop())
    by_index = {int(m["i"]): f for f, m in found.items()}
    split = next(iter(found.values()))["split"]
    for i in range(n):
        if i not in by_index:
            raise TarError(f"{folder / f'{split}-{i:05d}-of-{n:05d}.parquet'} is missing"
                           f" ({len(by_index)} of the set's {n} shards are there)")
    return tuple(by_index[i] for i in range(n))


def _span(names: tuple[str, ...]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"


def original_name(hub_name: bytes) -> tuple[bytes, bytes]:
    """The Hub's `n01440764_10026_n01440764.JPEG` (or `ILSVRC2012_val_00000293_n01440764.JPEG`),
    behind any folders -> (b"n01440764_10026.JPEG", b"n01440764"): the name the ILSVRC2012 tars
    and the lists use, and the wnid the Hub appended. (b"", b"") for other names."""
    base = hub_name.rpartition(b"/")[2]
    stem, dot, ext = base.rpartition(b".")
    head, _, wnid = stem.rpartition(b"_")
    if not dot or not head or len(wnid) != 9 or wnid[:1] != b"n" or not wnid[1:].isdigit():
        return b"", b""
    return head + b"." + ext, wnid


def wnid_mismatch(shard: object, hub_name: str, hub_wnid: str, file: str, wnid: str) -> TarError:
    """A listed file whose appended wnid is not the list's: another copy, or another dataset."""
    return TarError(f"{shard}: {hub_name} carries wnid {hub_wnid}, but the list puts {file} in"
                    f" {wnid}: not the same ImageNet")


def renamer(by_name: dict[bytes, list[Job]], shard: object) -> Callable[[bytes], bytes]:
    """Member name -> the list's file name, for `stream.copy_members`; a wanted file whose
    appended wnid is not the list's fails here, naming the shard."""
    def rename(name: bytes) -> bytes:
        orig, wnid = original_name(name)
        jobs = by_name.get(orig) if orig else None
        if jobs and jobs[0].wnid.encode() != wnid:
            raise wnid_mismatch(shard, name.decode("utf-8", "replace"), wnid.decode(),
                                orig.decode("utf-8", "replace"), jobs[0].wnid)
        return orig
    return rename
