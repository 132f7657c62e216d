"""The downloads themselves against the official archives (`verify --sources`): the size at once,
the md5 of the whole content on request, read front to back at the disk's pace. A split tar is
checked as the one archive its parts make. So a user can tell a bad download from a bad tool."""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from ltextract import archives
from ltextract.sources.detect import archives as tars_in
from ltextract.tar import readers

CHUNK = 8 << 20  # md5 reads: large and sequential, with readahead asked for


@dataclass
class ArchiveCheck:
    name: str  # the official name
    path: str  # the file (the first part of a split tar)
    parts: int
    size: int
    official_size: int
    official_md5: str
    md5: Optional[str] = None  # None: not read (not asked, or the size differs already)

    @property
    def size_ok(self) -> bool:
        return self.size == self.official_size

    @property
    def md5_ok(self) -> Optional[bool]:
        return None if self.md5 is None else self.md5 == self.official_md5

    def as_json(self) -> dict:
        return asdict(self) | {"size_ok": self.size_ok, "md5_ok": self.md5_ok}

    def problem(self) -> str:
        """What is wrong, in one clause; "" when nothing is."""
        if not self.size_ok:
            short = self.official_size - self.size
            advice = f"{short:,} bytes short: a cut download? resume it" if short > 0 else "too large"
            return (f"{self.name} is {self.size:,} bytes, the official one {self.official_size:,}"
                    f" ({advice})")
        if self.md5_ok is False:
            return (f"{self.name}: md5 {self.md5} differs from the official {self.official_md5}"
                    " (a damaged download: fetch it again)")
        return ""


def check_sizes(manual: Path) -> list[ArchiveCheck]:
    """Each official archive found in the manual dir (whole or in parts), by size: no reading.
    (`detect.archives` names the two when neither is there.)"""
    found = []
    for src in tars_in(manual):
        name = src.path.name if src.kind == "tar" else src.path.name.rsplit(".", 1)[0]
        official = archives.OFFICIAL.get(name)
        if official is None:
            continue
        parts = src.inputs()
        found.append(ArchiveCheck(name, str(src.path), len(parts), sum(p.stat().st_size for p in parts),
                                  official.size, official.md5))
    return found


def add_md5s(checks: list[ArchiveCheck], progress: Callable[[int], None]) -> None:
    """The md5 of each archive whose size is right (one whose size differs cannot match)."""
    for check in checks:
        if check.size_ok:
            h = hashlib.md5()
            for part in readers.parts_of(Path(check.path)) if check.parts > 1 else [Path(check.path)]:
                _hash_file(part, h, progress)
            check.md5 = h.hexdigest()


def _hash_file(path: Path, h, progress: Callable[[int], None]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := os.readv(fd, [buf]):
            h.update(view[:n])  # (hashlib lets go of the GIL for large buffers)
            progress(n)
    finally:
        os.close(fd)
