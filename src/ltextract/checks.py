"""Checking an OUT: every manifest row against the disk (as its format lays it out), the lists
and the published totals."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ltextract.benchmarks import Benchmark, get
from ltextract.benchmarks.classes import label_of
from ltextract.benchmarks.lists import canonical_sha256, check_totals, parse_list
from ltextract.errors import ListError, LtError
from ltextract.formats import FORMATS, Problem, writer_class
from ltextract.out.manifest import Row, list_path, read_manifest, read_metadata


@dataclass
class Report:
    splits: dict[str, dict] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {"ok": self.ok, "splits": self.splits,
                "problems": [{"path": p.path, "problem": p.what} for p in self.problems]}


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


def verify(out: Path, workers: int = 4, progress: Optional[Callable[[int], None]] = None) -> Report:
    """Re-check every split recorded in OUT's ltextract.json; the problems found, per file."""
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
    return report
