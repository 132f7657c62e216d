"""Checking an OUT: every manifest row against the disk (as its format lays it out), the lists
and the published totals."""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ltextract.benchmarks import Benchmark, get
from ltextract.benchmarks.classes import label_of
from ltextract.benchmarks.lists import canonical_sha256, check_totals, parse_list
from ltextract.errors import ListError, LtError
from ltextract.formats import FORMATS, Problem, writer_class
from ltextract.out import STATE_DIR, repair
from ltextract.out.folders import ensure_dir
from ltextract.out.lock import OutLock
from ltextract.out.manifest import Row, list_path, read_manifest, read_metadata


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


def check_rows(split: str, rows: list[Row]) -> list[Problem]:
    """Each row's path, wnid and label agree with each other and appear once."""
    labels = label_of()
    problems = []
    seen: set[str] = set()
    for row in rows:
        parts = row.path.split("/")
        if len(parts) != 3 or parts[0] != split or parts[1] != row.wnid:
            problems.append(Problem(row.path, f"path does not match {split}/{row.wnid}/<file>"))
        if labels.get(row.wnid) != row.label:
            problems.append(Problem(row.path, f"label {row.label} does not match {row.wnid}"))
        if row.path in seen:
            problems.append(Problem(row.path, "listed twice in the manifest"))
        seen.add(row.path)
    return problems


def check_list(out: Path, bench: Benchmark, split: str, rows: list[Row], meta: dict) -> list[Problem]:
    """The rewritten list equals the manifest, and maps back to the very list the build used."""
    path = list_path(out, bench.split(split).pin.filename)
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [Problem(name, "missing")]
    listed = [tuple(line.rsplit(" ", 1)) for line in data.decode("utf-8", "replace").splitlines()]
    if listed != [(r.path, str(r.label)) for r in rows]:
        return [Problem(name, f"differs from {split}.csv")]
    return check_recorded_list(bench, split, rows, meta, name)


def check_recorded_list(bench: Benchmark, split: str, rows: list[Row], meta: dict,
                        name: str) -> list[Problem]:
    """The manifest maps back to the very list the build used (and its published totals)."""
    spec = bench.split(split)
    original = [(f"{spec.origin}/{r.path.split('/', 1)[1]}", r.label) for r in rows]
    if canonical_sha256(original) != meta.get("canonical_sha256"):
        return [Problem(name, "does not match the list recorded for this build")]
    if meta.get("published"):
        data = "".join(f"{p} {label}\n" for p, label in original).encode()
        try:
            check_totals(spec.pin, parse_list(data, spec.pin.filename), name)
        except ListError as e:
            return [Problem(name, str(e))]
    return []


def verify(out: Path, workers: int = 4, progress: Optional[Callable[[int], None]] = None,
           record: bool = True) -> Report:
    """Re-check every split recorded in OUT's ltextract.json; the problems found, per file.
    No output file is changed; with `record`, what a build must rewrite is recorded in OUT's
    state folder (`out.repair`) for the next build."""
    meta = read_metadata(out)
    bench = get()
    report = Report()
    for split, record in sorted(meta["splits"].items()):
        if split not in bench.split_names:
            raise LtError(f"{out}: unknown split {split!r} in metadata")
        fmt = record.get("format", "folders")
        if fmt not in FORMATS:
            raise LtError(f"{out}: unknown format {fmt!r} of {split} in metadata")
        writer = writer_class(fmt)
        rows = read_manifest(out, split)
        problems = check_rows(split, rows)
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
    if record:
        report.unrecorded = record_repairs(out, report.repair)
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
