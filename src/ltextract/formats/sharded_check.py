"""verify of a tfds or hf build's shards: each read back (by its format's reader) against the
manifest, and nothing else in their folder."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterator

from ltextract.formats import Problem, Progress
from ltextract.out.manifest import Row


class Damaged(Exception):
    """A shard that cannot be read back as its format says."""


def check_shard(examples: Iterator[tuple[str, int, bytes]], rel: str, rows: list[Row], names: list[str],
                progress: Progress) -> list[Problem]:
    """`examples` (name, label, image) read back from the shard `rel` against its manifest rows
    and the names its examples must have; each problem names the shard for a build to rewrite."""
    problems = []
    n = 0
    try:
        for n, (name, label, image) in enumerate(examples, start=1):
            if n > len(rows):
                continue
            row, where = rows[n - 1], f"{rel}#{n - 1}"
            if name != names[n - 1]:
                problems.append(Problem(where, f"holds {name!r}, the manifest {names[n - 1]!r}", rel))
            elif label != row.label:
                problems.append(Problem(where, f"label {label} differs from the manifest's {row.label}", rel))
            elif len(image) != row.size or hashlib.sha256(image).hexdigest() != row.sha256:
                problems.append(Problem(where, "image differs from the manifest (corrupt or modified)", rel))
            if progress:
                progress(row.size)
    except FileNotFoundError:
        return [Problem(rel, "missing", rel)]
    except (Damaged, OSError) as e:
        return problems + [Problem(rel, f"not a readable shard: {e}", rel)]
    if n != len(rows):
        problems.append(Problem(rel, f"holds {n:,} examples, the manifest {len(rows):,}", rel))
    return problems


def strays(out: Path, folder: str, records: dict[str, dict], extra: set[str]) -> list[Problem]:
    """Files of the shards' folder that no finished split's shards, nor the index (`extra`), are."""
    expected = {sh["name"] for r in records.values() for sh in r.get("shards", [])} | \
        {f"{folder}/{name}" for name in extra}
    try:
        entries = sorted(e.name for e in os.scandir(out / folder))
    except FileNotFoundError:
        return [Problem(folder, "missing")]
    return [Problem(f"{folder}/{name}", "stray file (not in any split's shards)")
            for name in entries if f"{folder}/{name}" not in expected]
