"""Checking an OUT: every manifest row against the disk (as its format lays it out), the lists
and the published totals."""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from itertools import repeat
from operator import attrgetter
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
from ltextract.out.manifest import Row, read_manifest, read_metadata, render_list


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


def check_rows(split: str, rows: list[Row], bench: Optional[Benchmark] = None, layout: str = "splits",
               flat: bool = False) -> list[Problem]:
    """Each row's path, class and label agree with each other and appear once; the path is where
    `layout` puts the file (with `lists`, the list's own path: `flat` for `val/<file>` ones).
    Checked a column at a time first (a tenth of the time of a check per row); rows only where
    that fails."""
    bench = bench or get()
    labels = bench.label_of
    flat = flat and layout == "lists"  # (--layout splits puts a flat list's files in class folders)
    out_folder = bench.split(split).origin if layout == "lists" else split
    paths, wnids = list(map(_PATH, rows)), list(map(_WNID, rows))
    folders = map(f"{out_folder}/".__add__, repeat("") if flat else map(str.__add__, wnids, repeat("/")))
    shaped = all(map(str.startswith, paths, folders)) \
        and sum(map(str.count, paths, repeat("/"))) == (1 if flat else 2) * len(rows)
    if shaped and list(map(labels.get, wnids)) == list(map(_LABEL, rows)) and len(set(paths)) == len(rows):
        return []
    problems = []
    seen: set[str] = set()
    for row in rows:
        if list_path(out_folder, row.wnid, row.file_name, flat) != row.path:
            shape = list_path(out_folder, row.wnid, "<file>", flat)
            problems.append(Problem(row.path, f"path does not match {shape}"))
        if labels.get(row.wnid) != row.label:
            problems.append(Problem(row.path, f"label {row.label} does not match {row.wnid}"))
        if row.path in seen:
            problems.append(Problem(row.path, "listed twice in the manifest"))
        seen.add(row.path)
    return problems


_PATH, _WNID, _LABEL = attrgetter("path"), attrgetter("wnid"), attrgetter("label")


def check_list(out: Path, bench: Benchmark, split: str, rows: list[Row], meta: dict) -> list[Problem]:
    """The rewritten list equals the manifest, and maps back to the very list the build used."""
    path = manifest.list_path(out, bench.split(split).pin.filename)
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [Problem(name, "missing", name)]
    text = render_list(rows).decode("utf-8", "surrogateescape")
    if data != text.encode("utf-8", "surrogateescape"):  # as a build writes it, else line by line
        listed = [tuple(line.rsplit(" ", 1)) for line in data.decode("utf-8", "replace").splitlines()]
        if listed != [(r.path, str(r.label)) for r in rows]:
            return [Problem(name, f"differs from {split}.csv", name)]
    return check_recorded_list(bench, split, rows, meta, name, text)


def check_recorded_list(bench: Benchmark, split: str, rows: list[Row], meta: dict, name: str,
                        text: Optional[str] = None) -> list[Problem]:
    """The manifest maps back to the very list the build used (and its published totals).
    `text`: the rows as `render_list` writes them, when made already. Checked after `check_rows`:
    a row's path is `<split or its origin>/[<class>/]<file>`."""
    spec = bench.split(split)
    if meta.get("flat"):  # `val/<file> <label>` lines, whatever the layout made of them
        data = "".join(f"{list_path(spec.origin, r.wnid, r.file_name, True)} {r.label}\n"
                       for r in rows).encode("utf-8", "surrogateescape")
    else:
        if text is None:
            text = render_list(rows).decode("utf-8", "surrogateescape")
        # each line "<top>/<class>/<file> <label>" as the original list says it: "<origin>/..."
        out_folder = rows[0].path.split("/", 1)[0] if rows else spec.origin
        original = text.replace(f"\n{out_folder}/", f"\n{spec.origin}/")
        original = f"{spec.origin}/{original[len(out_folder) + 1:]}" if original else ""
        data = original.encode("utf-8", "surrogateescape")
    if hashlib.sha256(data).hexdigest() != meta.get("canonical_sha256"):
        return [Problem(name, "does not match the list recorded for this build")]
    if meta.get("published"):
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
    report = Report()
    for split, record in sorted(meta["splits"].items()):
        if split not in bench.split_names:
            raise LtError(f"{out}: unknown split {split[:40]!r} in metadata")
        fmt = record.get("format", "folders")
        if fmt not in FORMATS:
            raise LtError(f"{out}: unknown format {fmt[:40]!r} of {split} in metadata")
        writer = writer_class(fmt)
        rows = read_manifest(out, split)
        problems = check_rows(split, rows, bench, layout, bool(record.get("list", {}).get("flat")))
        if writer.writes_list:
            problems += check_list(out, bench, split, rows, record.get("list", {}))
        else:
            problems += check_recorded_list(bench, split, rows, record.get("list", {}), f"{split}.csv")
        problems += writer.check(out, split, rows, record, workers, progress)
        classes = Counter(r.wnid for r in rows)
        report.splits[split] = {"files": len(rows), "bytes": sum(r.size for r in rows),
                                "classes": len(classes), "problems": len(problems)}
        report.problems += problems
        report.repair[split] = sorted({p.repair for p in problems if p.repair})
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
