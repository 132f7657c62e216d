"""Checking an OUT: every manifest row against the disk, the lists and the published totals."""
from __future__ import annotations

import os
import stat
import tarfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ltextract.base import LtError, ListError, label_of, sha256_of
from ltextract.manifest import Row, list_path, read_manifest, read_metadata
from ltextract.splits import PINS, TOP, canonical_sha256, check_totals, parse_list



@dataclass(frozen=True)
class Problem:
    path: str
    what: str


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


def file_sha256(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return sha256_of(fd)
    finally:
        os.close(fd)


def check_file(out: Path, row: Row, follow: bool = False) -> Optional[Problem]:
    """`follow`: the build placed symlinks (--link symlink); check what they point to."""
    path = out / row.path
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return Problem(row.path, "missing")
    if not stat.S_ISREG(st.st_mode):
        return Problem(row.path, "not a regular file")
    if st.st_size != row.size:
        return Problem(row.path, f"size {st.st_size:,} differs from the manifest's {row.size:,}")
    if file_sha256(path) != row.sha256:
        return Problem(row.path, "sha256 differs from the manifest (corrupt or modified)")
    return None


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


def check_list(out: Path, split: str, rows: list[Row], meta: dict) -> list[Problem]:
    """The rewritten list equals the manifest, and maps back to the very list the build used."""
    path = list_path(out, split)
    name = path.name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [Problem(name, "missing")]
    listed = [tuple(line.rsplit(" ", 1)) for line in data.decode("utf-8", "replace").splitlines()]
    if listed != [(r.path, str(r.label)) for r in rows]:
        return [Problem(name, f"differs from {split}.csv")]
    return check_recorded_list(split, rows, meta, name)


def check_recorded_list(split: str, rows: list[Row], meta: dict, name: str) -> list[Problem]:
    """The manifest maps back to the very list the build used (and its published totals)."""
    original = [(f"{TOP[split]}/{r.path.split('/', 1)[1]}", r.label) for r in rows]
    if canonical_sha256(original) != meta.get("canonical_sha256"):
        return [Problem(name, "does not match the list recorded for this build")]
    if meta.get("published"):
        data = "".join(f"{p} {label}\n" for p, label in original).encode()
        try:
            check_totals(PINS[split], parse_list(data, PINS[split].filename), name)
        except ListError as e:
            return [Problem(name, str(e))]
    return []


def strays(out: Path, split: str, rows: list[Row]) -> list[Problem]:
    expected = {r.path for r in rows}
    folders = {r.path.rsplit("/", 1)[0] for r in rows}
    problems = []
    for root, dirs, files in os.walk(out / split):
        rel_root = Path(root).relative_to(out).as_posix()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            rel = f"{rel_root}/{name}"
            if rel not in expected:
                problems.append(Problem(rel, "stray file (not in the manifest)"))
        for d in sorted(dirs):
            if f"{rel_root}/{d}" not in folders and rel_root != split:
                problems.append(Problem(f"{rel_root}/{d}", "stray folder"))
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    return problems


def verify(out: Path, workers: int = 4, progress: Optional[Callable[[int], None]] = None) -> Report:
    meta = read_metadata(out)
    report = Report()
    for split, record in sorted(meta["splits"].items()):
        if split not in PINS:
            raise LtError(f"{out}: unknown split {split!r} in metadata")
        rows = read_manifest(out, split)
        problems = check_rows(split, rows)
        if record.get("format") == "webdataset":
            problems += check_recorded_list(split, rows, record.get("list", {}), f"{split}.csv")
            problems += check_shards(out, split, rows, workers, progress)
        else:
            problems += check_list(out, split, rows, record.get("list", {}))
            problems += strays(out, split, rows)
            follow = record.get("link") == "symlink"
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                for row, problem in zip(rows, pool.map(lambda r: check_file(out, r, follow), rows,
                                                       chunksize=64)):
                    if problem:
                        problems.append(problem)
                    if progress:
                        progress(row.size)
        classes = Counter(r.wnid for r in rows)
        report.splits[split] = {"files": len(rows), "bytes": sum(r.size for r in rows),
                                "classes": len(classes), "problems": len(problems)}
        report.problems += problems
    return report


def check_shards(out: Path, split: str, rows: list[Row], workers: int,
                 progress: Optional[Callable[[int], None]]) -> list[Problem]:
    """Every manifest row is exactly once in its shard with the same bytes and label; the shard
    index's counts and sizes hold; nothing else lies in OUT/<split>."""
    from ltextract.shards import read_index, shard_digests

    index = read_index(out, split)
    by_key = {r.key: r for r in rows}
    problems: list[Problem] = []
    names = [str(sh.get("name", "")) for sh in index["shards"]]

    def digest(name: str) -> tuple[str, object]:
        try:
            return name, shard_digests(out / name)
        except FileNotFoundError:
            return name, "missing"
        except (tarfile.TarError, LtError, OSError) as e:
            return name, f"not a readable shard ({e})"

    seen: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for sh, (name, result) in zip(index["shards"], pool.map(digest, names)):
            if isinstance(result, str):
                problems.append(Problem(name, result))
                continue
            assert isinstance(result, dict)
            if len(result) != sh.get("samples") or os.path.getsize(out / name) != sh.get("size"):
                problems.append(Problem(name, f"differs from {split}.json (samples or size)"))
            for key, parts in result.items():
                row = by_key.get(key)
                where = f"{name}/{key}"
                if row is None or row.shard != name:
                    problems.append(Problem(where, "sample not in the manifest for this shard"))
                    continue
                seen.add(key)
                jpg, cls = parts.get("jpg"), parts.get("cls")
                if set(parts) != {"jpg", "cls"} or jpg is None or cls is None:
                    problems.append(Problem(where, f"members {sorted(parts)}, expected jpg and cls"))
                elif (jpg.size, jpg.sha256) != (row.size, row.sha256):
                    problems.append(Problem(where, "image differs from the manifest (corrupt or modified)"))
                elif cls.head != str(row.label).encode():
                    problems.append(Problem(where, f"label {cls.head!r} differs from the manifest's"
                                                   f" {row.label}"))
                if progress:
                    progress(row.size)
    problems += [Problem(r.path, f"missing from {r.shard}") for r in rows if r.key not in seen]
    listed = set(names)
    for entry in sorted(os.scandir(out / split) if (out / split).is_dir() else [], key=lambda e: e.name):
        if f"{split}/{entry.name}" not in listed:
            problems.append(Problem(f"{split}/{entry.name}", "stray file (not in the shard index)"))
    return problems
