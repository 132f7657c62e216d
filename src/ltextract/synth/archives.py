"""Archives around given lists (synthetic ones from `synth.lists`, or the real published ones):
ILSVRC2012's two tars (class tars in the train tar, the val tar flat) and Places365's tars in
both shapes (the easy format: `places365_standard/{train,val}/<class>/`; the 256 and large pairs:
`data_256/<letter>/<category>[/<sub>]/` and flat `val_256/`), each holding every listed image
(tiny valid JPEGs, or padded to a size) plus members no list names. Deterministic per spec; each
file appears only when complete."""
from __future__ import annotations

import contextlib
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional

from ltextract.archives import PLACES_EASY_TAR, TRAIN_TAR, VAL_TAR
from ltextract.benchmarks import Benchmark
from ltextract.files import atomic_writer
from ltextract.sources.places import deep_path
from ltextract.synth.images import Filler, Image
from ltextract.synth.lists import Line, ListsSpec, make_lists, read_lists, subset_of_test, write_lists
from ltextract.synth.tars import FORMATS, Tar, flush

#: shape -> (train tar, val tar, train folder, val folder) of Places365's 256 and large pairs
PLACES_PAIRS = {"256": ("train_256_places365standard.tar", "val_256.tar", "data_256", "val_256"),
                "large": ("train_large_places365standard.tar", "val_large.tar", "data_large", "val_large")}
PLACES_SHAPES = ("easyformat", *PLACES_PAIRS)


@dataclass(frozen=True)
class AroundSpec:
    seed: int = 0
    unused_per_class: int = 3  # train members per class that no list names
    fill_to: int = 0  # if > 0, add unused train members until each class holds this many
    payload: int = 0  # 0: tiny images (~300 B); > 0: mean image size, varying +-50%
    fmt: str = "gnu"  # tar header format: ustar | gnu | pax

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, not {self.fmt!r}")


def _needed(lines: dict[str, list[Line]]) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Train files per class and (class, file) of val images, each once, in first-listed order."""
    train: dict[str, dict[str, None]] = {}
    val: dict[str, str] = {}
    for split_lines in lines.values():
        for line in split_lines:
            if line.origin == "train":
                train.setdefault(line.cls, {})[line.file] = None
            else:
                val.setdefault(line.file, line.cls)
    return {c: list(files) for c, files in sorted(train.items())}, sorted((c, f) for f, c in val.items())


def _unused(files: list[str], want: int, name_of, rng: random.Random) -> list[str]:
    """`want` more names (by number) that no list uses."""
    taken, out = set(files), []
    while len(out) < want:
        name = name_of(rng.randrange(1, 10 * (len(files) + want) + 1000))
        if name not in taken:
            taken.add(name)
            out.append(name)
    return out


class _Writer:
    """Images into tars, flushed to their files as they go (a million members stay small). An
    image's bytes depend only on the seed and its (origin, class, file), never on the archive's
    shape: every shape of one manual dir gives byte-identical outputs."""

    def __init__(self, spec: AroundSpec, train: dict[str, list[str]], val: list[tuple[str, str]]):
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.filler = Filler(random.Random(spec.seed + 1), spec.payload)
        self.train, self.val = train, val
        self.keys: dict[tuple[str, str], int] = {}

    def number(self) -> None:
        """Every image's key, once all names are known: train images by class and name, then val."""
        names = [(c, f) for c, files in sorted(self.train.items()) for f in sorted(files)]
        self.keys = {key: k for k, key in enumerate([*names, *self.val], 1)}

    def images(self, tar: Tar, members: Iterable[tuple[str, tuple[str, str]]]) -> None:
        """(member name, (class, file)) each; the first two train images are a PNG and a CMYK
        JPEG, as ImageNet's odd ones."""
        for name, key in members:
            k = self.keys[key]
            self.filler.rng.seed(self.spec.seed * 1_000_003 + k)  # its padding: its own too
            tar.add(name, self.filler.content(Image(name, k, {1: "png", 2: "cmyk"}.get(k, "rgb"))))

    def folders(self, tar: Tar, *names: str) -> None:
        for name in names:
            tar.add_special(name, tarfile.DIRTYPE)


@contextlib.contextmanager
def _files(*paths: Path) -> Iterator[list]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_writer(p)) for p in paths]


def ilsvrc_around(out: Path, lines: dict[str, list[Line]], spec: AroundSpec = AroundSpec()) -> dict[str, Path]:
    """ILSVRC2012_img_train.tar (a tar of class tars `<wnid>.tar`) and ILSVRC2012_img_val.tar (flat)
    holding every image the lists name; returns origin -> tar."""
    w = _Writer(spec, *_needed(lines))
    for wnid, files in w.train.items():
        more = max(spec.unused_per_class, spec.fill_to - len(files))
        files += _unused(files, more, lambda k, w_=wnid: f"{w_}_{k}.JPEG", w.rng)
        w.rng.shuffle(files)  # tar order differs from list order
    w.number()
    paths = {"train": out / TRAIN_TAR, "val": out / VAL_TAR}
    with _files(paths["train"], paths["val"]) as (f, val_f):
        outer = Tar(spec.fmt)
        for wnid, files in w.train.items():
            inner = Tar(spec.fmt)
            w.images(inner, ((file, (wnid, file)) for file in files))
            inner.finish()
            outer.add(f"{wnid}.tar", inner.chunks)
            flush(f, outer)
        outer.finish()
        flush(f, outer)
        tar = Tar(spec.fmt)
        w.images(tar, ((file, (c, file)) for c, file in sorted(w.val, key=lambda cf: cf[1])))
        tar.finish()
        flush(val_f, tar)
    return paths


def places_around(out: Path, lines: dict[str, list[Line]], shape: str = "256",
                  spec: AroundSpec = AroundSpec()) -> dict[str, Path]:
    """Places365's tars in `shape` ("easyformat": one tar for both origins; "256" or "large": a
    train tar and a flat val tar) holding every image the lists name; returns origin -> tar."""
    if shape not in PLACES_SHAPES:
        raise ValueError(f"shape must be one of {', '.join(PLACES_SHAPES)}, not {shape!r}")
    w = _Writer(spec, *_needed(lines))
    for cls, files in w.train.items():
        more = max(spec.unused_per_class, spec.fill_to - len(files))
        files += _unused(files, more, lambda k: f"{k:08d}.jpg", w.rng)
        files.sort()
    w.number()
    train_files = w.train
    val_files = sorted(w.val, key=lambda cf: cf[1])
    if shape == "easyformat":
        path = out / PLACES_EASY_TAR
        with _files(path) as (f,):
            tar = Tar(spec.fmt)
            root = "places365_standard"
            w.folders(tar, f"{root}/", f"{root}/train/")
            for cls, files in train_files.items():
                w.folders(tar, f"{root}/train/{cls}/")
                w.images(tar, ((f"{root}/train/{cls}/{file}", (cls, file)) for file in files))
                flush(f, tar)
            w.folders(tar, f"{root}/val/")
            for cls in sorted({c for c, _ in val_files}):
                w.folders(tar, f"{root}/val/{cls}/")
                w.images(tar, ((f"{root}/val/{cls}/{file}", (c, file)) for c, file in val_files if c == cls))
            tar.add(f"{root}/train.txt", [b"".join(f"/{c}/{file}\n".encode() for c, fs in train_files.items()
                                                  for file in fs)])
            tar.finish()
            flush(f, tar)
        return {"train": path, "val": path}
    train_tar, val_tar, train_top, val_top = PLACES_PAIRS[shape]
    paths = {"train": out / train_tar, "val": out / val_tar}
    with _files(paths["train"], paths["val"]) as (f, val_f):
        tar = Tar(spec.fmt)
        w.folders(tar, f"{train_top}/")
        made: set[str] = set()
        for cls, files in sorted(train_files.items(), key=lambda item: deep_path(item[0], "")):
            folder = f"{train_top}/{deep_path(cls, '')}"
            parts = folder.rstrip("/").split("/")
            for depth in range(2, len(parts) + 1):  # data_256/a/, data_256/a/arena/, ...
                sub = "/".join(parts[:depth]) + "/"
                if sub not in made:
                    made.add(sub)
                    w.folders(tar, sub)
            w.images(tar, ((folder + file, (cls, file)) for file in files))
            flush(f, tar)
        tar.finish()
        flush(f, tar)
        vtar = Tar(spec.fmt)
        w.folders(vtar, f"{val_top}/")
        w.images(vtar, ((f"{val_top}/{file}", (c, file)) for c, file in val_files))
        vtar.finish()
        flush(val_f, vtar)
    return paths


def make_benchmark_dir(out: Path, bench: Benchmark, shape: str = "", lists_dir: Optional[Path] = None,
                       classes: int = 10, seed: int = 0) -> dict[str, Path]:
    """A manual dir for any benchmark: its lists (synthetic, `classes` of them; or read from
    `lists_dir`, e.g. the published ones) and archives around them in `shape` (ILSVRC2012's
    "tars"; Places365's "easyformat", "256" or "large"). Returns origin -> archive. ImageNet-LT's
    synthetic dir is `make_manual_dir`'s, with SADE's test sets drawn from its test list."""
    from ltextract.synth import SynthSpec, make_manual_dir

    shapes = PLACES_SHAPES if bench.images == "places365" else ("tars",)
    shape = shape or ("256" if bench.images == "places365" else "tars")
    if shape not in shapes:
        raise ValueError(f"{bench.name} comes in {', '.join(shapes)}, not {shape!r}")
    out.mkdir(parents=True, exist_ok=True)
    if lists_dir is None and bench.name == "imagenet_lt":
        made = make_manual_dir(out, SynthSpec(classes=classes, seed=seed))
        test = read_lists(out, bench, ["test"])["test"]
        sade = {s.name: subset_of_test(s.name, test, made.train_counts, random.Random(seed))
                for s in bench.splits if s.subset_of == "test"}
        write_lists(out, bench, sade)
        return {"train": made.train_tar, "val": made.val_tar}
    if lists_dir is None:
        lines = make_lists(bench, ListsSpec(classes=classes, seed=seed))
        write_lists(out, bench, lines)
    else:
        lines = read_lists(lists_dir, bench)
    spec = AroundSpec(seed=seed)
    return ilsvrc_around(out, lines, spec) if shape == "tars" else places_around(out, lines, shape, spec)
