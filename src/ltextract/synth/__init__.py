"""ILSVRC2012-shaped tars and long-tailed ImageNet-LT lists, for the demo, tests and benchmark.

The train tar is an outer tar of class tars `<wnid>.tar`; the val tar is flat. Both hold tiny valid
images (plus optional padding), with the header formats, name prefixes, long names and odd members
that real-world copies of the archives show. Output is byte-for-byte deterministic per spec.
Headers of ordinary members are assembled from a template because `tarfile` costs ~10x more per
member, and the benchmark writes over a million of them.
"""
from __future__ import annotations

import contextlib
import math
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ltextract.archives import TRAIN_TAR, VAL_TAR
from ltextract.benchmarks.classes import label_of, wnids
from ltextract.files import atomic_writer
from ltextract.synth.images import Filler, Image
from ltextract.synth.tars import FORMATS, Tar, fill_tar, flush, long_name

PREFIXES = ("", "./", "wnid/")
SPLITS = ("train", "val", "test")

#: (rank fraction, train count) knots of the real ImageNet-LT curve, interpolated in log space:
#: 1280 down to 5, ~115.8K in all, 385 / 479 / 136 classes with >100 / 20-100 / <20 at 1000 classes.
_LT_KNOTS = ((0.0, 1280.0), (0.02, 370.0), (0.385, 100.5), (0.864, 19.5), (1.0, 5.0))

@dataclass(frozen=True)
class SynthSpec:
    """What to generate; the defaults make a small (~300 KB), realistic demo in well under 1 s."""
    classes: int = 10  # spread evenly over the sorted 1000 wnids, always including label 0
    seed: int = 0
    train_max: int = 40  # largest train count; counts fall off along the ImageNet-LT curve
    train_min: int = 2
    val_per_class: int = 4
    test_per_class: int = 5
    unused_per_class: int = 3  # members of each class tar that no list names
    fill_to: int = 0  # if > 0, add unused members until each class tar holds this many images
    payload: int = 0  # 0: tiny images (~300 B); > 0: mean image size, varying +-50%
    fmt: str = "gnu"  # header format of all three tars: ustar | gnu | pax
    prefix: str = ""  # member name prefix inside class tars: "" | "./" | "wnid/"
    long_names: bool = False  # some listed members' names > 100 chars ("././.../<name>")
    extras: bool = False  # dirs, links, a FIFO, an unlisted long-named file, outer README
    counts: tuple[int, ...] | None = None  # explicit train counts per chosen class, in wnid order

    def __post_init__(self) -> None:
        if not 1 <= self.classes <= 1000:
            raise ValueError(f"classes must be 1..1000, not {self.classes}")
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, not {self.fmt!r}")
        if self.prefix not in PREFIXES:
            raise ValueError(f"prefix must be one of {PREFIXES}, not {self.prefix!r}")
        if self.counts is not None and (len(self.counts) != self.classes or min(self.counts) < 0):
            raise ValueError("counts needs one non-negative train count per class")
        if not 0 <= self.train_min <= self.train_max:
            raise ValueError("need 0 <= train_min <= train_max")
        if min(self.val_per_class, self.test_per_class, self.unused_per_class, self.payload) < 0:
            raise ValueError("per-class counts and payload must be non-negative")


@dataclass(frozen=True)
class SynthResult:
    manual_dir: Path
    train_tar: Path
    val_tar: Path
    lists: dict[str, Path]  # split -> list file
    train_counts: dict[str, int]  # wnid -> entries in the train list
    members: int  # image members written across both tars (not counting extras)



def lt_shape(classes: int = 1000, per_class: int = 1250, **overrides: object) -> SynthSpec:
    """The ImageNet-LT shape: train 1280..5, val 20, test 50, class tars filled to `per_class`."""
    fields = dict(classes=classes, train_max=1280, train_min=5, val_per_class=20,
                  test_per_class=50, unused_per_class=0, fill_to=per_class)
    fields.update(overrides)
    return SynthSpec(**fields)  # type: ignore[arg-type]


def chosen_wnids(classes: int) -> list[str]:
    """Evenly spread so small sets still span the label range, starting at label 0."""
    return [wnids()[i * 1000 // classes] for i in range(classes)]


def lt_counts(classes: int, high: int, low: int) -> list[int]:
    """Train counts from `high` down to `low`, descending, following the ImageNet-LT curve."""
    from ltextract.synth.lists import log_counts

    lo_knot, hi_knot = math.log(_LT_KNOTS[-1][1]), math.log(_LT_KNOTS[0][1])
    out = []
    for log_c in log_counts(classes, _LT_KNOTS):
        frac = (log_c - lo_knot) / (hi_knot - lo_knot)
        out.append(round(low * (high / low) ** frac) if low > 0 else round(high * frac))
    return out



def _member_name(file: str, wnid: str, prefix: str) -> str:
    return f"{wnid}/{file}" if prefix == "wnid/" else prefix + file



def make_manual_dir(out: Path, spec: SynthSpec = SynthSpec()) -> SynthResult:
    """Write both tars and the three lists into `out`; each file appears only when complete."""
    rng = random.Random(spec.seed)
    filler = Filler(random.Random(spec.seed + 1), spec.payload)  # names do not depend on payload
    chosen = chosen_wnids(spec.classes)
    if spec.counts is not None:
        counts = list(spec.counts)
    else:
        counts = lt_counts(spec.classes, spec.train_max, spec.train_min)
        rng.shuffle(counts)  # the head is not the lowest labels, as in ImageNet-LT
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    keys = iter(range(1, 1 << 62))
    odd_done = False
    members = 0
    paths = {s: out / f"ImageNet_LT_{s}.txt" for s in SPLITS}
    with contextlib.ExitStack() as stack:  # no final name changes unless everything was written
        f, val_f, *list_fs = (stack.enter_context(atomic_writer(p))
                              for p in (out / TRAIN_TAR, out / VAL_TAR, *paths.values()))
        outer = Tar(spec.fmt)
        if spec.extras:
            outer.add_special("extras/", tarfile.DIRTYPE)
        for c, (wnid, count) in enumerate(zip(chosen, counts)):
            inner = Tar(spec.fmt)
            members += _class_tar(inner, wnid, count, spec, rng, filler, keys, lines,
                                  odd=not odd_done and count >= 2)
            odd_done = odd_done or count >= 2
            outer.add(f"{wnid}.tar", inner.chunks)
            if spec.extras and c == len(chosen) // 2:
                outer.add("README", [b"Synthetic ILSVRC2012 train tar written by ltextract.\n"])
            flush(f, outer)
        outer.finish()
        flush(f, outer)
        val = Tar(spec.fmt)
        members += _val_tar(val, chosen, spec, rng, filler, keys, lines["test"])
        flush(val_f, val)
        for split, list_f in zip(SPLITS, list_fs):
            list_f.write("".join(lines[split]).encode("ascii"))
    return SynthResult(out, out / TRAIN_TAR, out / VAL_TAR, paths,
                       dict(zip(chosen, counts)), members)


def _class_tar(tar: Tar, wnid: str, count: int, spec: SynthSpec, rng: random.Random,
               filler: Filler, keys: Iterator[int], lines: dict[str, list[str]], odd: bool) -> int:
    """One class tar; its train and val list lines go to `lines`. `odd`: make a PNG and a CMYK."""
    label = label_of()[wnid]
    n_listed = count + spec.val_per_class
    n_unused = max(spec.unused_per_class, spec.fill_to - n_listed)
    total = n_listed + n_unused + 3  # 3 spare names for extras
    names = [f"{wnid}_{n}.JPEG" for n in rng.sample(range(1, 30 * total + 1000), total)]
    listed, unused, spare = names[:n_listed], names[n_listed:-3], names[-3:]
    lines["train"] += (f"train/{wnid}/{file} {label}\n" for file in listed[:count])
    lines["val"] += (f"train/{wnid}/{file} {label}\n" for file in listed[count:])
    kinds = {listed[0]: "png", listed[1]: "cmyk"} if odd else {}
    order = listed + unused
    rng.shuffle(order)  # list order (sample order) and tar order differ, as in ImageNet-LT
    long = set(rng.sample(listed, min(3, len(listed)))) if spec.long_names else set()
    images = []
    for file in order:
        name = _member_name(file, wnid, spec.prefix)
        images.append(Image(long_name(name, rng, spec.fmt) if file in long else name, next(keys),
                             kinds.get(file, "rgb")))
    specials = []
    if spec.extras:
        folder = "./" if spec.prefix == "./" else f"{wnid}/"
        link_to = next((i.name for i in images if len(i.name) <= 100), "missing.JPEG")
        spare = [_member_name(s, wnid, spec.prefix) for s in spare]
        specials = [(folder, tarfile.DIRTYPE, ""), (spare[0], tarfile.SYMTYPE, "../../etc/passwd"),
                    (spare[1], tarfile.LNKTYPE, link_to), (spare[2], tarfile.FIFOTYPE, ""),
                    ("../evil.JPEG", tarfile.SYMTYPE, "/etc/passwd"),
                    ("/etc/evil.JPEG", tarfile.LNKTYPE, link_to)]
    fill_tar(tar, images, specials, filler, rng)
    return len(images)


def _val_tar(tar: Tar, chosen: list[str], spec: SynthSpec, rng: random.Random, filler: Filler,
             keys: Iterator[int], test_lines: list[str]) -> int:
    """The flat val tar; every image is in the test list, classes shuffled across indices."""
    classes = [w for w in chosen for _ in range(spec.test_per_class)]
    rng.shuffle(classes)
    files = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, len(classes) + 1)]
    long = set(rng.sample(files, min(3, len(files)))) if spec.long_names else set()
    images = [Image(long_name(file, rng, spec.fmt) if file in long else file, next(keys))
              for file in files]
    test_lines += sorted(f"val/{w}/{file} {label_of()[w]}\n" for w, file in zip(classes, files))
    specials = []
    if spec.extras:
        spare = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(len(files) + 1, len(files) + 3)]
        specials = [("./", tarfile.DIRTYPE, ""), (spare[1], tarfile.FIFOTYPE, ""),
                    (spare[0], tarfile.SYMTYPE, files[0] if files else "none.JPEG")]
    fill_tar(tar, images, specials, filler, rng)
    return len(images)
