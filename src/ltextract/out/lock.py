"""One build per OUT at a time, and an OUT fit to write into (checked before any work)."""
from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path

from ltextract.errors import LtError
from ltextract.out import STATE_DIR
from ltextract.out.folders import ensure_dir


class OutLock:
    """One build per OUT at a time: an flock on OUT/.ltextract/lock holding the owner's pid."""

    def __init__(self, out: Path):
        self.path = out / STATE_DIR / "lock"
        self.fd = -1

    def __enter__(self) -> "OutLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise LtError(f"another ltextract build (pid {holder}) is writing {self.path.parent.parent};"
                          " wait for it to finish") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def prepare_out(out: Path) -> None:
    """Fail before any work when OUT cannot hold the result."""
    if out.is_symlink() and not out.is_dir():
        raise LtError(f"output folder {out} is a dangling symlink")
    if out.exists() and not out.is_dir():
        raise LtError(f"output path {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        ensure_dir(out / STATE_DIR)
        fd, probe = tempfile.mkstemp(dir=out / STATE_DIR, prefix="probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise LtError(f"cannot write to output folder {out}: {e.strerror}") from None


#: Temporary names of an interrupted run that no later step would reuse: manifests, lists,
#: metadata and state notes written by files.atomic_writer (".<name>.<random>.tmp") and journal
#: rewrites.
_STALE = re.compile(r"\.[^/]+\.(csv|txt|json|written|repair)\.[a-z0-9_]{8}\.tmp")


def remove_stale_temps(out: Path) -> None:
    """Delete what a killed run left behind; call with the OUT lock held (no other run writes)."""
    for folder, pattern in ((out, _STALE), (out / STATE_DIR, re.compile(r"[a-z]+\.tmp|" + _STALE.pattern))):
        for entry in os.scandir(folder):
            if pattern.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
