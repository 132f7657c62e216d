"""Per-class train counts and the many / medium / few-shot groups ImageNet-LT accuracy is reported on.

The groups follow Liu et al. (OLTR, 2019): many-shot > 100 train images, medium-shot 20..100,
few-shot < 20. On the published train list that is 385 / 479 / 136 classes.
"""
from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ltextract.benchmarks.classes import label_of
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

    def group(self, name: str) -> list[ClassCount]:
        return [c for c in self.classes if c.group == name]

    @property
    def images(self) -> int:
        return sum(c.count for c in self.classes)

    def as_json(self) -> dict:
        groups = {}
        for name in GROUPS:
            members = self.group(name)
            groups[name] = {"classes": len(members), "images": sum(c.count for c in members),
                            "wnids": sorted(c.wnid for c in members)}
        return {"source": self.source, "classes": len(self.classes), "images": self.images,
                "thresholds": {"many": f"> {MANY_ABOVE}", "medium": f"{FEW_BELOW}..{MANY_ABOVE}",
                               "few": f"< {FEW_BELOW}"},
                "groups": groups,
                "per_class": {c.wnid: c.count for c in sorted(self.classes, key=lambda c: c.label)}}


def group_of(count: int) -> str:
    if count > MANY_ABOVE:
        return "many"
    return "few" if count < FEW_BELOW else "medium"


def count_classes(wnids: Iterable[str], source: str) -> Stats:
    """Counts per wnid, largest first; only classes that occur in the list are counted."""
    labels = label_of()
    counts = Counter(wnids)
    if not counts:
        raise LtError(f"{source} names no images")
    unknown = next((w for w in counts if w not in labels), None)
    if unknown is not None:
        raise LtError(f"{source}: {unknown[:40]!r} is not one of the {len(labels)} ILSVRC2012 wnids")
    classes = [ClassCount(w, labels[w], n) for w, n in counts.items()]
    classes.sort(key=lambda c: (-c.count, c.label))
    return Stats(source, classes)


def from_out(out: Path) -> Stats:
    """Counts from a built OUT's train manifest (any --format writes one)."""
    from ltextract.out.manifest import manifest_path, read_manifest

    return count_classes((r.wnid for r in read_manifest(out, "train")), str(manifest_path(out, "train")))


def from_splits_dir(splits_dir: Path) -> Stats:
    from ltextract.benchmarks.load import load_lists

    sl = load_lists(["train"], splits_dir=splits_dir)["train"]
    return count_classes((e.wnid for e in sl.entries), sl.source)


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
    """One row per class in label order: wnid, label, train_count, group."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("wnid", "label", "train_count", "group"))
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
