"""Long-tailed lists shaped like any benchmark's published ones, small: its own class names and
labels (CMC's order for ImageNet-100-LT, the lists' own for Places-LT), its file naming, train
counts along the ImageNet-LT curve, val from the train images, test from the val images, and
SADE's test-agnostic sets as subsets of test. `synth.archives` then writes archives around them
(or around the real lists). Deterministic per spec."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Optional, Sequence

from ltextract.benchmarks import Benchmark
from ltextract.files import atomic_write


class Line(NamedTuple):
    origin: str  # "train" | "val": which image set
    cls: str
    file: str
    label: int

    def render(self, flat: bool = False) -> str:
        return f"{self.origin}/{self.file} {self.label}\n" if flat else \
            f"{self.origin}/{self.cls}/{self.file} {self.label}\n"


@dataclass(frozen=True)
class ListsSpec:
    classes: int = 10  # spread evenly over the benchmark's labels, always including label 0
    seed: int = 0
    train_max: int = 40  # largest train count; counts fall off along the ImageNet-LT curve
    train_min: int = 2
    val_per_class: int = 4
    test_per_class: int = 5
    #: explicit train counts per chosen class, in label order (else the curve, shuffled)
    counts: Optional[tuple[int, ...]] = None


#: (rank fraction, train count) knots of Places-LT's curve, interpolated in log space: 4,980 down
#: to 5, 62,163 in all (62,500 published), 131 / 163 / 71 classes with >100 / 20-100 / <20.
PLACES_LT_KNOTS = ((0.0, 4980.0), (0.05, 300.0), (0.359, 100.5), (0.805, 19.5), (1.0, 5.0))


def log_counts(classes: int, knots: Sequence[tuple[float, float]]) -> list[float]:
    """The log of the train count at each class's rank, interpolated between (rank fraction,
    count) knots in log space, descending."""
    out = []
    for i in range(classes):
        r = i / (classes - 1) if classes > 1 else 0.0
        for (r0, c0), (r1, c1) in zip(knots, knots[1:]):
            if r <= r1:
                t = (r - r0) / (r1 - r0)
                out.append(math.log(c0) + t * (math.log(c1) - math.log(c0)))
                break
    return out


def curve(classes: int, knots: Sequence[tuple[float, float]] = PLACES_LT_KNOTS) -> list[int]:
    """Train counts along a long-tail curve (Places-LT's by default), descending."""
    return [round(math.exp(c)) for c in log_counts(classes, knots)]


def chosen_classes(bench: Benchmark, classes: int) -> list[str]:
    """Evenly spread over the labels, so small sets still span the label range."""
    if not 1 <= classes <= len(bench.classes):
        raise ValueError(f"{bench.name} has {len(bench.classes)} classes, not {classes}")
    n = len(bench.classes)
    return [bench.classes[i * n // classes] for i in range(classes)]


def places_style(bench: Benchmark) -> bool:
    return bench.images == "places365"


def train_name(bench: Benchmark, cls: str, n: int) -> str:
    return f"{n:08d}.jpg" if places_style(bench) else f"{cls}_{n}.JPEG"


def val_name(bench: Benchmark, n: int) -> str:
    return f"Places365_val_{n:08d}.jpg" if places_style(bench) else f"ILSVRC2012_val_{n:08d}.JPEG"


def make_lists(bench: Benchmark, spec: ListsSpec = ListsSpec()) -> dict[str, list[Line]]:
    """The benchmark's default splits, and its test's subsets (SADE's), as list lines."""
    from ltextract.synth import lt_counts

    rng = random.Random(spec.seed)
    chosen = chosen_classes(bench, spec.classes)
    if spec.counts is not None:
        counts = list(spec.counts)
    else:
        counts = lt_counts(spec.classes, spec.train_max, spec.train_min)
        rng.shuffle(counts)  # the head is not the lowest labels
    label = bench.label_of
    lines: dict[str, list[Line]] = {"train": [], "val": [], "test": []}
    for cls, count in zip(chosen, counts):
        total = count + spec.val_per_class
        numbers = rng.sample(range(1, 30 * total + 1000), total)
        files = [train_name(bench, cls, n) for n in numbers]
        lines["train"] += (Line("train", cls, f, label[cls]) for f in files[:count])
        lines["val"] += (Line("train", cls, f, label[cls]) for f in files[count:])
    owners = [cls for cls in chosen for _ in range(spec.test_per_class)]
    rng.shuffle(owners)  # val image numbers are not grouped by class
    test = [Line("val", cls, val_name(bench, k), label[cls]) for k, cls in enumerate(owners, 1)]
    lines["test"] = sorted(test, key=lambda line: (line.label, rng.random()))  # by label, shuffled within
    for split in (s for s in bench.splits if s.subset_of == "test"):
        lines[split.name] = subset_of_test(split.name, lines["test"], dict(zip(chosen, counts)), rng)
    return lines


def subset_of_test(name: str, test: Sequence[Line], train_counts: dict[str, int],
                   rng: random.Random) -> list[Line]:
    """A SADE test set: `forwardN` keeps the most frequent train class whole and falls off by a
    factor N towards the rarest, `backwardN` the reverse, `uniform` keeps every line (reordered)."""
    by_class: dict[str, list[Line]] = {}
    for line in test:
        by_class.setdefault(line.cls, []).append(line)
    ranked = sorted(by_class, key=lambda c: (-train_counts.get(c, 0), c))
    if name.startswith("backward"):
        ranked.reverse()
    ratio = int(name.lstrip("forwardbackward") or 1) if name != "uniform" else 1
    out = []
    for rank, cls in enumerate(ranked):
        have = by_class[cls]
        keep = max(1, round(len(have) * ratio ** (-rank / max(1, len(ranked) - 1))))
        out += rng.sample(have, min(keep, len(have)))
    return sorted(out, key=lambda line: (line.label, rng.random()))


def write_lists(dest: Path, bench: Benchmark, lines: dict[str, list[Line]],
                flat: Sequence[str] = ()) -> dict[str, Path]:
    """Each split's lines under its published file name; splits in `flat` with `val/<file>`
    paths, as some codebases ship the test list."""
    paths = {}
    for split, split_lines in lines.items():
        paths[split] = dest / bench.split(split).pin.filename
        atomic_write(paths[split], "".join(line.render(split in flat) for line in split_lines).encode())
    return paths


def read_lists(folder: Path, bench: Benchmark, splits: Optional[Sequence[str]] = None) -> dict[str, list[Line]]:
    """The benchmark's lists found in `folder` under their published names (real ones too)."""
    from ltextract.benchmarks.lists import parse

    found = {}
    for split in splits or bench.split_names:
        path = folder / bench.split(split).pin.filename
        if path.is_file():
            entries = parse(path.read_bytes(), str(path), bench).entries
            found[split] = [Line(e.origin, e.wnid, e.file, e.label) for e in entries]
    if not found:
        raise ValueError(f"no {bench.title} list in {folder}")
    return found
