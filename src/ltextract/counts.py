"""Per-class train counts and the many / medium / few-shot groups long-tail accuracy is reported on.

The groups follow Liu et al. (OLTR, 2019) as classifier-balancing counts them: many-shot > 100
train images, medium-shot 20..100, few-shot < 20. On the published train lists that is 385 / 479
/ 136 classes (ImageNet-LT), 39 / 48 / 13 (ImageNet-100-LT), 131 / 163 / 71 (Places-LT).
`export` writes them as the files long-tail codebases read.
"""
from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from ltextract.benchmarks import Benchmark, get
from ltextract.errors import LtError

MANY_ABOVE = 100  # many-shot: more than this many train images
FEW_BELOW = 20  # few-shot: fewer than this many
GROUPS = ("many", "medium", "few")


@dataclass(frozen=True)
class ClassCount:
    wnid: str
    label: int
    count: int

    @property
    def group(self) -> str:
        return group_of(self.count)


@dataclass(frozen=True)
class Stats:
    source: str  # the list or manifest the counts came from
    classes: list[ClassCount]  # sorted by count, largest first, ties by label
    benchmark: Benchmark = field(default_factory=get)

    def group(self, name: str) -> list[ClassCount]:
        return [c for c in self.classes if c.group == name]

    @property
    def images(self) -> int:
        return sum(c.count for c in self.classes)

    def as_json(self) -> dict:
        groups = {}
        names = _plural(self.benchmark)
        for name in GROUPS:
            members = self.group(name)
            groups[name] = {"classes": len(members), "images": sum(c.count for c in members),
                            names: sorted(c.wnid for c in members),
                            "labels": sorted(c.label for c in members)}
        return {"benchmark": self.benchmark.name, "source": self.source, "classes": len(self.classes),
                "images": self.images,
                "thresholds": {"many": f"> {MANY_ABOVE}", "medium": f"{FEW_BELOW}..{MANY_ABOVE}",
                               "few": f"< {FEW_BELOW}"},
                "groups": groups,
                "per_class": {c.wnid: c.count for c in sorted(self.classes, key=lambda c: c.label)}}


def group_of(count: int) -> str:
    if count > MANY_ABOVE:
        return "many"
    return "few" if count < FEW_BELOW else "medium"


def _plural(bench: Benchmark) -> str:
    """The key naming a group's classes in `stats --json`: "wnids", or Places-LT's "class_names"."""
    return "wnids" if bench.class_noun == "wnid" else f"{bench.class_noun}_names"


def count_classes(wnids: Iterable[str], source: str, bench: Optional[Benchmark] = None) -> Stats:
    """Counts per class, largest first; only classes that occur in the list are counted."""
    bench = bench or get()
    labels = bench.label_of
    counts = Counter(wnids)
    if not counts:
        raise LtError(f"{source} names no images")
    unknown = sorted(set(counts) - labels.keys())
    if unknown:
        raise LtError(f"{source}: {unknown[0][:40]!r} is not one of {bench.describe_classes()}")
    classes = [ClassCount(w, labels[w], n) for w, n in counts.items()]
    classes.sort(key=lambda c: (-c.count, c.label))
    return Stats(source, classes, bench)


def from_out(out: Path) -> Stats:
    """Counts from a built OUT's train manifest (any --format writes one), for the benchmark
    its ltextract.json names."""
    from ltextract.out.manifest import benchmark_of, manifest_path, read_manifest, read_metadata

    try:
        meta = read_metadata(out)
    except LtError:  # then the manifest's absence says what is wrong
        meta = {}
    bench = get(benchmark_of(meta))
    return count_classes((r.wnid for r in read_manifest(out, "train")), str(manifest_path(out, "train")),
                         bench)


def from_splits_dir(splits_dir: Path, bench: Optional[Benchmark] = None) -> Stats:
    from ltextract.benchmarks.load import load_lists

    bench = bench or get()
    sl = load_lists(["train"], splits_dir=splits_dir, benchmark=bench)["train"]
    return count_classes((e.wnid for e in sl.entries), sl.source, bench)


EXPORTS = ("classnames.txt", "class_counts.json", "shot_groups.json")


def export(stats: Stats, dest: Path) -> list[Path]:
    """The files long-tail codebases read, in `dest`: `classnames.txt` (class folder names in
    label order: an ImageFolder's `class_to_idx` for the benchmark's labels), `class_counts.json`
    (train images per label, a list indexed by label) and `shot_groups.json` (the labels of
    each group). Each written atomically."""
    from ltextract.files import atomic_write

    bench = stats.benchmark
    per_label = [0] * len(bench.classes)
    for c in stats.classes:
        per_label[c.label] = c.count
    groups = {name: sorted(c.label for c in stats.group(name)) for name in GROUPS}
    groups["few"] = sorted(groups["few"] + [i for i, n in enumerate(per_label) if n == 0])
    texts = ("".join(f"{c}\n" for c in bench.classes), json.dumps(per_label) + "\n",
             json.dumps(groups, indent=1) + "\n")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise LtError(f"--export {dest}: not a folder") from None
    paths = [dest / name for name in EXPORTS]
    for path, text in zip(paths, texts):
        atomic_write(path, text.encode())
    return paths


# --- rendering (pure) -------------------------------------------------------------------

def render_table(stats: Stats) -> str:
    rows = [("group", "train images", "classes", "images", "per class")]
    bounds = {"many": f"> {MANY_ABOVE}", "medium": f"{FEW_BELOW}-{MANY_ABOVE}", "few": f"< {FEW_BELOW}"}
    for name in GROUPS:
        members = stats.group(name)
        span = f"{members[-1].count}-{members[0].count}" if members else "-"
        rows.append((name, bounds[name], str(len(members)), f"{sum(c.count for c in members):,}", span))
    rows.append(("all", "", str(len(stats.classes)), f"{stats.images:,}",
                 f"{stats.classes[-1].count}-{stats.classes[0].count}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in
                       enumerate(zip(row, widths))).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def render_csv(stats: Stats) -> str:
    """One row per class in label order: wnid (or class), label, train_count, group."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow((stats.benchmark.class_noun, "label", "train_count", "group"))
    writer.writerows((c.wnid, c.label, c.count, c.group)
                     for c in sorted(stats.classes, key=lambda c: c.label))
    return buf.getvalue()


def plot(stats: Stats, dest: Path) -> None:
    """The sorted class-frequency curve on a log scale, the three groups shaded; written atomically."""
    try:
        import matplotlib
    except ImportError:
        raise LtError("--plot needs matplotlib: pip install 'ltextract[plot]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    from ltextract.files import atomic_writer

    counts = [c.count for c in stats.classes]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    colours = {"many": "#4c72b0", "medium": "#dd8452", "few": "#c44e52"}
    start = 0
    for name in GROUPS:
        n = len(stats.group(name))
        if n:
            ax.axvspan(start - 0.5, start + n - 0.5, color=colours[name], alpha=0.15,
                       label=f"{name}-shot ({n} classes)")
        start += n
    ax.plot(range(len(counts)), counts, color="black", linewidth=1.2)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlim(-0.5, len(counts) - 0.5)
    ax.set_xlabel("class rank (sorted by train images)")
    ax.set_ylabel("train images (log scale)")
    ax.set_title(f"{len(counts)} classes, {stats.images:,} train images")
    ax.legend(loc="upper right")
    fig.tight_layout()
    try:
        with atomic_writer(dest) as f:
            fig.savefig(f, format="png")
    finally:
        plt.close(fig)
