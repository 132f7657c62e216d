"""`make bench` sections for the shard formats: tfds and hf builds beside the folders build of
the same splits, and the tfds build beside TensorFlow Datasets' own builder (`tfds_builder.py`).

Each function takes the bench module `b` (bench.py's helpers and settings) as its first argument.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

TFDS_BUILDER = Path(__file__).resolve().parent / "tfds_builder.py"
#: TFDS's download_and_prepare on the 1000-class synthetic set, as measured for issue 15 on this
#: machine (80 minutes: too long to repeat in every benchmark run)
TFDS_AT_1000 = 4825.0
FORMATS = {"folders": (), "tfds (tfrecord)": ("--format", "tfds"),
           "tfds (array_record)": ("--format", "tfds", "--tfds-file-format", "array_record"),
           "hf": ("--format", "hf"),
           # a split under 500 MB is one shard, written by one worker: smaller shards show the
           # build with the parallelism a full-size split has (ImageNet-LT's train: 26 shards)
           "hf (--shard-size 128MB)": ("--format", "hf", "--shard-size", "128MB")}


def bench_formats(b: ModuleType, manual: Path, work: Path, rounds: int, title: str) -> tuple[str, dict]:
    """The four formats' builds of train + val + test (seek, index cached), alternately; returns
    the table and each format's median wall time and peak RSS."""
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache-formats")}
    b.run(b.ltextract("index", "--manual-dir", manual, "-q"), env)
    out = work / "out"
    contenders = [b.Contender(name, lambda extra=extra: b.run(b.build_cmd(manual, out, "--strategy", "seek", *extra),
                                                              env), after=lambda: b.clear(out))
                  for name, extra in FORMATS.items()]
    b.clear(out)
    b.alternate(contenders, rounds, "formats", each=lambda: b.warm(manual / b.TRAIN_TAR, manual / b.VAL_TAR))
    base = contenders[0]
    rows, figures = [], {}
    for c in contenders:
        ratios = [r.wall / f.wall for r, f in zip(c.runs, base.runs)]
        rows.append([c.name, b.secs(c.median()), f"{c.median() / base.median():.2f}×",
                     f"{min(ratios):.2f}–{max(ratios):.2f}×", b.mb(max(r.max_rss for r in c.runs))])
        figures[c.name] = {"wall": c.median(), "rss": max(r.max_rss for r in c.runs)}
    return b.table(title, ["", "wall (median)", "÷ folders", "÷ folders, round by round", "peak RSS"], rows), figures


def bench_tfds_builder(b: ModuleType, sets: dict[int, Path], full: Path, full_classes: int, work: Path,
                       rounds: int, slow_rounds: int) -> str:
    """TFDS's own `download_and_prepare` against `ltextract build --format tfds` from nothing (no
    index cached) on the same tars, alternately, on sets of a few class counts (TFDS takes
    minutes past a hundred classes); then how each grows with the class count, and the ratio
    at 1000 classes against TFDS's time measured once for issue 15."""
    rows, times = [], {}
    for i, (classes, manual) in enumerate(sets.items()):
        ref, out, cache = work / "tfds-ref", work / "out", work / "cache-none"
        tfds = b.Contender(f"TFDS download_and_prepare, {classes} classes",
                           lambda m=manual: _tfds_run(b, m, ref), after=lambda: b.clear(ref),
                           slow=i == len(sets) - 1)
        ours = b.Contender(f"ltextract build --format tfds, {classes} classes (no index yet)",
                           lambda m=manual: b.run(b.build_cmd(m, out, "--format", "tfds"),
                                                  {"LTEXTRACT_CACHE_DIR": str(cache)}),
                           before=lambda: b.clear(cache), after=lambda: b.clear(out), slow=tfds.slow)
        b.alternate([tfds, ours], rounds, f"tfds builder ({classes} classes)", slow_rounds)
        times[classes] = (tfds.median(), ours.median())
        rows.append([str(classes), b.secs(tfds.median()), b.secs(tfds.median("inner")), b.secs(ours.median()),
                     f"{tfds.median() / ours.median():.0f}×", str(len(tfds.runs))])
    text = b.table("TFDS's own builder against --format tfds, same tars (warm cache)",
                   ["classes", "TFDS wall (median)", "of it download_and_prepare", "ltextract tfds wall",
                    "TFDS ÷ ltextract", "rounds"], rows)
    env = {"LTEXTRACT_CACHE_DIR": str(work / "cache-full")}
    out = work / "out"
    full_run = b.Contender(f"tfds at {full_classes} classes (no index yet)",
                           lambda: b.run(b.build_cmd(full, out, "--format", "tfds"), env),
                           before=lambda: b.clear(work / "cache-full"), after=lambda: b.clear(out))
    b.alternate([full_run], rounds, f"tfds at {full_classes} classes")
    (small, (t_small, o_small)), (large, (t_large, o_large)) = sorted(times.items())[0], sorted(times.items())[-1]
    grow = math.log(large / small)
    note = (f"\nFrom {small} to {large} classes TFDS's time grows as classes^{math.log(t_large / t_small) / grow:.2f}"
            f" and ltextract's as classes^{math.log(o_large / o_small) / grow:.2f} (TFDS scans the whole train tar"
            f" twice and looks each member up in a Python list of the split's names). At 1000 classes TFDS took"
            f" {TFDS_AT_1000:,.0f} s (measured once for issue 15, not re-run here); ltextract's tfds build from"
            f" nothing at {full_classes} classes took {full_run.median():.2f} s (median of {len(full_run.runs)})")
    note += (f": {TFDS_AT_1000 / full_run.median():,.0f}× faster.\n" if full_classes == 1000 else
             " (a smoke run: the 1000-class ratio needs the full-count set).\n")
    return text + note


def _tfds_run(b: ModuleType, manual: Path, data_dir: Path):
    r = b.run([b.PY, str(TFDS_BUILDER), "--manual-dir", str(manual), "--data-dir", str(data_dir)])
    r.inner = json.loads(r.stdout.strip().splitlines()[-1])["prepare_seconds"]
    return r
