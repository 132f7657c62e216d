"""Placing a file from an extracted tree into OUT: copy, hardlink, reflink or symlink.

Whatever the mode, the source is read once to hash it (the manifest records every file's sha256)
and the result appears at its final path by one rename, so a final path never holds partial data.
hardlink and symlink cost no space but share the source file (editing one edits the other);
reflink (FICLONE) shares blocks copy-on-write where the filesystem supports it (btrfs, XFS, ...)
and falls back to a plain copy elsewhere.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path
from typing import Callable

from ltextract.base import LtError, sha256_of, unlink_quietly
from ltextract.extract import TMP_SUFFIX, Job, copy_one, place_atomically
from ltextract.outdir import Done

MODES = ("copy", "hardlink", "reflink", "symlink")
FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
#: What FICLONE answers where cloning is impossible: fall back to copying.
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}


class _CannotClone(Exception):
    def __init__(self, error: OSError):
        self.error = error


class Placer:
    """Callable per job, safe from many threads; `notice` hears once that reflink fell back."""

    def __init__(self, out: Path, mode: str, notice: Callable[[str], None]):
        if mode not in MODES:
            raise ValueError(mode)
        self.out, self.mode, self.notice = out, mode, notice
        self._fell_back = False
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> Done:
        src_fd = os.open(job.tar, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self.mode == "copy" or job.offset or (self.mode == "reflink" and self._fell_back):
                return copy_one(src_fd, self.out, job)  # members of class tars are always copied
            if self.mode == "reflink":
                return self._reflink(src_fd, job)
            final = self.out / job.rel
            digest = sha256_of(src_fd, job.size)
        finally:
            os.close(src_fd)
        tmp = final.with_name(f".{final.name}{TMP_SUFFIX}")
        unlink_quietly(tmp)
        try:
            if self.mode == "hardlink":
                os.link(os.path.realpath(job.tar), tmp)  # link() itself would link a symlink
            else:
                os.symlink(os.path.abspath(job.tar), tmp)
            os.replace(tmp, final)
        except OSError as e:
            unlink_quietly(tmp)
            if self.mode == "hardlink" and e.errno == errno.EXDEV:
                raise LtError(f"--link hardlink needs OUT on the same filesystem as {job.tar};"
                              " use --link reflink or copy") from None
            raise
        return Done(job.rel, job.size, os.lstat(final).st_mtime_ns, digest)

    def _reflink(self, src_fd: int, job: Job) -> Done:
        def clone(fd: int) -> None:
            try:
                fcntl.ioctl(fd, FICLONE, src_fd)
            except OSError as e:
                if e.errno in _NO_CLONE:
                    raise _CannotClone(e) from None
                raise

        try:
            mtime_ns = place_atomically(self.out / job.rel, clone)
        except _CannotClone as e:
            self._fall_back(e.error)
            return copy_one(src_fd, self.out, job)
        return Done(job.rel, job.size, mtime_ns, sha256_of(src_fd, job.size))

    def _fall_back(self, e: OSError) -> None:
        with self._lock:
            if self._fell_back:
                return
            self._fell_back = True
        self.notice(f"reflink is not supported here ({os.strerror(e.errno or 0)}); copying instead")
