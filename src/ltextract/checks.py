"""Checking an OUT: every manifest row against the disk (as its format lays it out), the lists
and the published totals."""
from __future__ import annotations

import hashlib
import os
from itertools import repeat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ltextract.benchmarks import Benchmark, get
from ltextract.benchmarks.lists import check_totals, list_path, parse_list
from ltextract.errors import ListError, LtError
from ltextract.files import gc_paused
from ltextract.formats import FORMATS, Problem, writer_class
from ltextract.out import STATE_DIR, manifest, repair
from ltextract.out.folders import ensure_dir
from ltextract.out.lock import OutLock
from ltextract.out.manifest import Columns, read_columns, read_metadata, render_lines
from ltextract.workers import Pool


@dataclass
class Report:
    splits: dict[str, dict] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    #: per split, the files (or shards) a build rewrites to repair what was found
    repair: dict[str, list[str]] = field(default_factory=dict)
    #: why `repair` could not be recorded in OUT for the next build ("" when it was)
    unrecorded: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def damaged(self) -> int:
        return sum(map(len, self.repair.values()))

    def as_json(self) -> dict:
        return {"ok": self.ok, "splits": self.splits,
                "problems": [{"path": p.path, "problem": p.what} for p in self.problems],
                "repair": self.repair, "recorded": not self.unrecorded}


def check_rows(split: str, cols: Columns, bench: Optional[Benchmark] = None, layout: str = "splits",
               flat: bool = False) -> list[Problem]:
    """Each row's path, class and label agree with each other and appear once; the path is where
    `layout` puts the file (with `lists`, the list's own path: `flat` for `val/<file>` ones).
    Checked a column at a time first (a tenth of the time of a check per row); rows only where
    that fails."""
    bench = bench or get()
    labels = bench.label_of
    flat = flat and layout == "lists"  # (--layout splits puts a flat list's files in class folders)
    out_folder = bench.split(split).origin if layout == "lists" else split
    paths, wnids = cols.path, cols.wnid
    folders = map(f"{out_folder}/".__add__, repeat("") if flat else map(str.__add__, wnids, repeat("/")))
    shaped = all(map(str.startswith, paths, folders)) \
        and sum(map(str.count, paths, repeat("/"))) == (1 if flat else 2) * len(paths)
    if shaped and list(map(labels.get, wnids)) == cols.label and len(set(paths)) == len(paths):
        return []
    problems = []
    seen: set[str] = set()
    for row in cols.rows():
        if list_path(out_folder, row.wnid, row.file_name, flat) != row.path:
            shape = list_path(out_folder, row.wnid, "<file>", flat)
            problems.append(Problem(row.path, f"path does not match {shape}"))
        if labels.get(row.wnid) != row.label:
            problems.append(Problem(row.path, f"label {row.label} does not match {row.wnid}"))
        if row.path in seen:
            problems.append(Problem(row.path, "listed twice in the manifest"))
        seen.add(row.path)
    return problems


def check_list(out: Path, bench: Benchmark, split: str, cols: Columns, meta: dict) -> list[Problem]:
    """The rewritten list equals the manifest, and maps back to the very list the build used."""
    path = manifest.list_path(out, bench.split(split).pin.filename)
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [Problem(name, "missing", name)]
    text = render_lines(cols.path, cols.label)
    if data != text.encode("utf-8", "surrogateescape"):  # as a build writes it, else line by line
        listed = [tuple(line.rsplit(" ", 1)) for line in data.decode("utf-8", "replace").splitlines()]
        if listed != list(zip(cols.path, map(str, cols.label))):
            return [Problem(name, f"differs from {split}.csv", name)]
    return check_recorded_list(bench, split, cols, meta, name, text)


def check_recorded_list(bench: Benchmark, split: str, cols: Columns, meta: dict, name: str,
                        text: Optional[str] = None) -> list[Problem]:
    """The manifest maps back to the very list the build used (and its published totals).
    `text`: the rows as `render_lines` writes them, when made already. Checked after `check_rows`:
    a row's path is `<split or its origin>/[<class>/]<file>`."""
    spec = bench.split(split)
    if meta.get("flat"):  # `val/<file> <label>` lines, whatever the layout made of them
        data = "".join([f"{list_path(spec.origin, wnid, path.rpartition('/')[2], True)} {label}\n"
                        for path, wnid, label in zip(cols.path, cols.wnid, cols.label)]
                       ).encode("utf-8", "surrogateescape")
    else:
        if text is None:
            text = render_lines(cols.path, cols.label)
        # each line "<top>/<class>/<file> <label>" as the original list says it: "<origin>/..."
        out_folder = cols.path[0].split("/", 1)[0] if len(cols) else spec.origin
        original = text.replace(f"\n{out_folder}/", f"\n{spec.origin}/")
        original = f"{spec.origin}/{original[len(out_folder) + 1:]}" if original else ""
        data = original.encode("utf-8", "surrogateescape")
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta.get("canonical_sha256"):
        return [Problem(name, "does not match the list recorded for this build")]
    # the published list itself (or a variant) holds its totals: that was checked when it was
    # pinned, so only a list published in another form is parsed again here
    if meta.get("published") and digest != spec.pin.sha256 and spec.pin.variant(digest) is None:
        try:
            check_totals(spec.pin, parse_list(data, spec.pin.filename, bench), name, bench)
        except ListError as e:
            return [Problem(name, str(e))]
    return []


def verify(out: Path, workers: int = 4, progress: Optional[Callable[[int], None]] = None,
           record: bool = True) -> Report:
    """Re-check every split recorded in OUT's ltextract.json; the problems found, per file.
    No output file is changed; with `record`, what a build must rewrite is recorded in OUT's
    state folder (`out.repair`) for the next build."""
    with gc_paused():  # ~10 records per file, all kept to the end: collections find no garbage
        report = _verify(out, workers, progress)
    if record:
        report.unrecorded = record_repairs(out, report.repair)
    return report


def _verify(out: Path, workers: int, progress: Optional[Callable[[int], None]]) -> Report:
    """(of the benchmark and layout OUT's ltextract.json names)"""
    meta = read_metadata(out)
    try:
        bench = get(manifest.benchmark_of(meta))
    except LtError:
        raise LtError(f"{out}: unknown benchmark {manifest.benchmark_of(meta)[:40]!r} in metadata") from None
    layout = manifest.layout_of(meta)
    splits = sorted(meta["splits"].items())
    for split, record in splits:
        if split not in bench.split_names:
            raise LtError(f"{out}: unknown split {split[:40]!r} in metadata")
        if record.get("format", "folders") not in FORMATS:
            raise LtError(f"{out}: unknown format {record['format'][:40]!r} of {split} in metadata")
    report = Report()
    found: dict[str, list[Problem]] = {}
    with Pool(workers, f"{out}: a verify") as pool:
        # Every split's files go to the workers as soon as its manifest is read, the smallest
        # first (the workers start sooner); the parent's own checks of the rows and lists
        # follow, in the same order, while they work, and each split's rows are let go before
        # its files' problems are waited for.
        started = []
        for split, record in sorted(splits, key=lambda s: s[1].get("files", 0)):
            writer, rows = writer_class(record.get("format", "folders")), read_columns(out, split)
            started.append((split, record, writer, rows, writer.check(out, split, rows, record, pool, progress)))
        while started:
            split, record, writer, rows, files = started.pop(0)
            problems = found[split] = check_rows(split, rows, bench, layout,
                                                 bool(record.get("list", {}).get("flat")))
            if writer.writes_list:
                problems += check_list(out, bench, split, rows, record.get("list", {}))
            else:
                problems += check_recorded_list(bench, split, rows, record.get("list", {}), f"{split}.csv")
            report.splits[split] = {"files": len(rows), "bytes": sum(rows.size), "classes": len(set(rows.wnid))}
            del rows
            problems += files
    for split, _ in splits:  # (reported in name order)
        report.splits[split]["problems"] = len(found[split])
        report.problems += found[split]
        report.repair[split] = sorted({p.repair for p in found[split] if p.repair})
    report.splits = dict(sorted(report.splits.items()))
    return report


def record_repairs(out: Path, found: dict[str, list[str]]) -> str:
    """Record what a build must rewrite, under the OUT lock (not while a build writes OUT);
    returns why it could not be recorded, or ""."""
    if not any(found.values()) and not os.path.isdir(out / STATE_DIR):
        return ""  # nothing to record, no older record to clear
    try:
        ensure_dir(out / STATE_DIR)
        with OutLock(out):
            repair.record(out, found)
    except LtError as e:
        return str(e)
    except OSError as e:
        return f"{e.filename or out}: {e.strerror or e}"
    return ""
