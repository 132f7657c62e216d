"""Checking an OUT: every manifest row against the disk (as its format lays it out), the lists
and the published totals."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ltextract.benchmarks import Benchmark, get
from ltextract.benchmarks.lists import canonical_sha256, check_totals, list_path, parse_list
from ltextract.errors import ListError, LtError
from ltextract.formats import FORMATS, Problem, writer_class
from ltextract.out import manifest
from ltextract.out.manifest import Row, read_manifest, read_metadata


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


def check_rows(split: str, rows: list[Row], bench: Optional[Benchmark] = None, layout: str = "splits",
               flat: bool = False) -> list[Problem]:
    """Each row's path, class and label agree with each other and appear once; the path is where
    `layout` puts the file (with `lists`, the list's own path: `flat` for `val/<file>` ones)."""
    bench = bench or get()
    labels = bench.label_of
    origin = bench.split(split).origin
    problems = []
    seen: set[str] = set()
    for row in rows:
        if layout == "lists":
            want = list_path(origin, row.wnid, row.file_name, flat)
            shape = list_path(origin, row.wnid, "<file>", flat)
        else:
            want, shape = f"{split}/{row.wnid}/{row.file_name}", f"{split}/{row.wnid}/<file>"
        if row.path != want:
            problems.append(Problem(row.path, f"path does not match {shape}"))
        if labels.get(row.wnid) != row.label:
            problems.append(Problem(row.path, f"label {row.label} does not match {row.wnid}"))
        if row.path in seen:
            problems.append(Problem(row.path, "listed twice in the manifest"))
        seen.add(row.path)
    return problems


def check_list(out: Path, bench: Benchmark, split: str, rows: list[Row], meta: dict) -> list[Problem]:
    """The rewritten list equals the manifest, and maps back to the very list the build used."""
    path = manifest.list_path(out, bench.split(split).pin.filename)
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
    flat = bool(meta.get("flat"))
    original = [(list_path(spec.origin, r.wnid, r.file_name, flat), r.label) for r in rows]
    if canonical_sha256(original) != meta.get("canonical_sha256"):
        return [Problem(name, "does not match the list recorded for this build")]
    if meta.get("published"):
        data = "".join(f"{p} {label}\n" for p, label in original).encode()
        try:
            check_totals(spec.pin, parse_list(data, spec.pin.filename, bench), name, bench)
        except ListError as e:
            return [Problem(name, str(e))]
    return []


def verify(out: Path, workers: int = 4, progress: Optional[Callable[[int], None]] = None) -> Report:
    """Re-check every split recorded in OUT's ltextract.json (of the benchmark and layout it
    names); the problems found, per file."""
    meta = read_metadata(out)
    try:
        bench = get(manifest.benchmark_of(meta))
    except LtError:
        raise LtError(f"{out}: unknown benchmark {manifest.benchmark_of(meta)!r} in metadata") from None
    layout = manifest.layout_of(meta)
    report = Report()
    for split, record in sorted(meta["splits"].items()):
        if split not in bench.split_names:
            raise LtError(f"{out}: unknown split {split!r} in metadata")
        fmt = record.get("format", "folders")
        if fmt not in FORMATS:
            raise LtError(f"{out}: unknown format {fmt!r} of {split} in metadata")
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
    return report
