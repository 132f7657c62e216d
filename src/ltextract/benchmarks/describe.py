"""The catalog as `ltextract benchmarks` shows it: per benchmark, its splits with image and
class counts, the archives each reads, its list files with their pins and mirrors, the citation."""
from __future__ import annotations

from typing import Any

from ltextract.archives import ARCHIVES
from ltextract.benchmarks import Benchmark, SplitSpec


_NAMES = {"ilsvrc2012": "ILSVRC2012", "places365": "Places365"}


def describe(bench: Benchmark) -> dict[str, Any]:
    """One benchmark as data (`benchmarks --json`)."""
    return {"name": bench.name, "title": bench.title, "classes": len(bench.classes),
            "class_folder": bench.class_noun, "images": bench.images, "homepage": bench.homepage,
            "default_splits": list(bench.default_splits), "citation": bench.citation,
            "splits": [_split(bench, s) for s in bench.splits]}


def _split(bench: Benchmark, spec: SplitSpec) -> dict[str, Any]:
    pin = spec.pin
    return {"name": spec.name, "default": spec.default, "images": pin.lines,
            "classes": len(bench.classes), "per_class": list(pin.per_class),
            "reads": {"origin": spec.origin, "archives": list(ARCHIVES[bench.images][spec.origin])},
            "subset_of": spec.subset_of or None,
            "list": {"file": pin.filename, "size": pin.size, "sha256": pin.sha256,
                     "mirrors": list(spec.mirrors),
                     "variants": [{"name": v.name, "size": v.size, "sha256": v.sha256,
                                   "mirrors": list(v.mirrors)} for v in pin.variants]},
            "citation": spec.citation or None}


def render(benches: list[Benchmark]) -> str:
    """A table per benchmark, for people."""
    out = []
    for bench in benches:
        note = "" if bench.default_splits == bench.split_names else "; * only with --split"
        out.append(f"{bench.name}: {bench.title}, {len(bench.classes)} classes{note}")
        rows = [("split", "images", "per class", "reads", "list", "sha256")]
        for spec in bench.splits:
            lo, hi = spec.pin.per_class
            reads = f"{_NAMES[bench.images]} {spec.origin}"
            rows.append((spec.name + ("" if spec.default else "*"), f"{spec.pin.lines:,}",
                         f"{lo}" if lo == hi else f"{lo}-{hi}",
                         reads + (f" (subset of {spec.subset_of})" if spec.subset_of else ""),
                         spec.pin.filename, spec.pin.sha256[:8]))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out += ["  " + "  ".join(c.rjust(w) if i in (1, 2) else c.ljust(w) for i, (c, w) in
                                 enumerate(zip(row, widths))).rstrip() for row in rows]
        out.append("")
    return "\n".join(out)
