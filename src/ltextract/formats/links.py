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
import multiprocessing
import os
from typing import Callable

from ltextract.errors import LtError
from ltextract.files import sha256_of
from ltextract.out import TMP_SUFFIX
from ltextract.out.folders import Folders, place_atomically, unlink_at, write_file
from ltextract.out.journal import Done
from ltextract.plan import Job

MODES = ("copy", "hardlink", "reflink", "symlink")
#: Not a --link choice: a split whose files are another split's in OUT (SADE's test sets, test's
#: files) is hard-linked to them where the filesystem allows, copied from them elsewhere.
LINK_OR_COPY = "hardlink-or-copy"
FICLONE = 0x40049409  # _IOW(0x94, 9, int), linux/fs.h
#: What FICLONE answers where cloning is impossible: fall back to copying.
_NO_CLONE = {errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EPERM}
#: What link(2) answers where a hard link is impossible (no support, too many links to the file).
_NO_LINK = {errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS, errno.EPERM, errno.EMLINK}


class _CannotClone(Exception):
    def __init__(self, error: OSError):
        self.error = error


class Placer:
    """Callable per job, safe from many threads and forked workers; `notice` hears once that
    reflink fell back."""

    def __init__(self, mode: str, notice: Callable[[str], None]):
        if mode not in (*MODES, LINK_OR_COPY):
            raise ValueError(mode)
        self.mode, self.notice = mode, notice
        self._fell_back = multiprocessing.Value("b", 0)  # shared with forked copy workers

    def __call__(self, folders: Folders, job: Job) -> Done:
        src_fd = os.open(job.file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self.mode == "copy" or job.offset or (self.mode in ("reflink", LINK_OR_COPY)
                                                      and self._fell_back.value):
                return _copy(src_fd, folders, job)  # members of class tars are always copied
            if self.mode == "reflink":
                return self._reflink(src_fd, folders, job)
            digest = job.sha256 or sha256_of(src_fd, job.size)
        finally:
            os.close(src_fd)
        folder, name = job.rel.rsplit("/", 1)
        dir_fd = folders.fd(folder)
        tmp = f".{name}{TMP_SUFFIX}"
        unlink_at(dir_fd, tmp)  # and never link through whatever was planted there
        try:
            if self.mode == "symlink":
                os.symlink(os.path.abspath(job.file), tmp, dir_fd=dir_fd)
            else:
                os.link(os.path.realpath(job.file), tmp, dst_dir_fd=dir_fd)  # not the link itself
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError as e:
            unlink_at(dir_fd, tmp)
            if self.mode == LINK_OR_COPY and e.errno in _NO_LINK:
                self._fall_back(e, "hard links are not possible here")
                return self(folders, job)
            if self.mode == "hardlink" and e.errno == errno.EXDEV:
                raise LtError(f"--link hardlink needs OUT on the same filesystem as {job.file};"
                              " use --link reflink or copy") from None
            e.filename = str(folders.out / job.rel)
            raise
        return Done(job.rel, job.size, folders.lstat(job.rel).st_mtime_ns, digest)

    def _reflink(self, src_fd: int, folders: Folders, job: Job) -> Done:
        def clone(fd: int) -> None:
            try:
                fcntl.ioctl(fd, FICLONE, src_fd)
            except OSError as e:
                if e.errno in _NO_CLONE:
                    raise _CannotClone(e) from None
                raise

        try:
            mtime_ns = place_atomically(folders, job.rel, clone)
        except _CannotClone as e:
            self._fall_back(e.error, "reflink is not supported here")
            return _copy(src_fd, folders, job)
        return Done(job.rel, job.size, mtime_ns, sha256_of(src_fd, job.size))

    def _fall_back(self, e: OSError, what: str) -> None:
        with self._fell_back.get_lock():
            if self._fell_back.value:
                return
            self._fell_back.value = 1
        self.notice(f"{what} ({os.strerror(e.errno or 0)}); copying instead")


def _copy(src_fd: int, folders: Folders, job: Job) -> Done:
    return write_file(folders, job, os.pread(src_fd, job.size, job.offset))
