"""OUT's folders as a build writes them: held open, so files are created relative to them
(openat) and a link planted in OUT is refused, never followed; each file placed atomically; a
split new to OUT staged in a hidden folder and renamed into place once."""
from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import stat
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Optional

from ltextract.errors import LtError
from ltextract.files import sha256_of
from ltextract.out import TMP_SUFFIX
from ltextract.out.journal import Done

if TYPE_CHECKING:
    from ltextract.plan import Job

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


def staging_name(split: str) -> str:
    """The folder a split is written into when the build starts it from nothing: renamed to
    `split` once, at the end (`publish`), so its files need no temporary name each."""
    return f".{split}{TMP_SUFFIX}"


def on_disk(folder: str, staged: Collection[str]) -> str:
    """Where OUT/`folder` ("train/n01440764") is while a build writes it."""
    split, sep, rest = folder.partition("/")
    return staging_name(split) + sep + rest if split in staged else folder


def publish(out: Path, split: str) -> None:
    """Give a staged split its final name: every file in it whole at once."""
    os.rename(out / staging_name(split), out / split)


def ensure_dir(path: Path) -> None:
    """Create a folder we write into, refusing to write through a symlink planted in OUT."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.mkdir(path)
        return
    if stat.S_ISLNK(st.st_mode):
        raise LtError(f"{path} is a symlink; ltextract never writes through links (remove it)")
    if not stat.S_ISDIR(st.st_mode):
        raise LtError(f"{path} exists and is not a folder")


class Folders:
    """OUT's folders, held open: files are created relative to them (openat), so no path is
    walked per file and a link swapped in for a folder during a build is refused, not followed.

    Splits in `staged` are written in their staging folders (`staging_name`), under the
    same OUT-relative names. Each thread keeps its own `keep` most recently used open, so none
    is closed under another thread's feet (a stream's threads: a few each; a copy worker, alone
    in its process: `folders_per_process`); forked copy workers inherit them. `close` once
    every thread is done."""

    KEEP = 8  # a stream's thread writes into one or two class folders at a time

    def __init__(self, out: Path, staged: Collection[str] = (), keep: int = KEEP):
        self.out = out
        self.staged = frozenset(staged)
        self.keep = keep
        self._root = os.open(out, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._local = threading.local()
        self._caches: list[dict[str, int]] = []
        self._lock = threading.Lock()

    def fd(self, folder: str) -> int:
        """The open folder OUT/`folder` ("train/n01440764")."""
        cache = getattr(self._local, "fds", None)
        if cache is None:
            cache = self._local.fds = {}
            with self._lock:
                self._caches.append(cache)
        fd = cache.pop(folder, -1)  # re-inserted below: the dict's order is least recent first
        if fd < 0:
            if len(cache) >= self.keep:
                os.close(cache.pop(next(iter(cache))))
            fd = self._open(folder)
        cache[folder] = fd
        return fd

    def is_staged(self, folder: str) -> bool:
        """No final path in it yet: files are written under their own names."""
        return folder.partition("/")[0] in self.staged

    def _open(self, folder: str) -> int:
        parts = on_disk(folder, self.staged).split("/")
        fd = os.dup(self._root)
        try:
            for depth, part in enumerate(parts):
                try:
                    sub = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    # named as the user finds it: a failed build publishes its staged splits
                    named = self.out.joinpath(*folder.split("/")[:depth + 1])
                    if self.out.joinpath(*parts[:depth + 1]).is_symlink():
                        raise LtError(f"{named} is a symlink; ltextract never writes through links"
                                      " (remove it)") from None
                    e.filename = str(named)
                    raise
                os.close(fd)
                fd = sub
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lstat(self, rel: str) -> os.stat_result:
        folder, name = rel.rsplit("/", 1)
        return os.stat(name, dir_fd=self.fd(folder), follow_symlinks=False)

    def close(self) -> None:
        for cache in self._caches:
            for fd in cache.values():
                os.close(fd)
            cache.clear()
        os.close(self._root)


def folders_per_process() -> int:
    """Folders a single-threaded writer keeps open: all of a flat tar's 1,000 class folders (its
    files go to each in turn), within half the open-file limit (workers hold the parent's too)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(Folders.KEEP, min(4096, (soft - 64) // 2))


def raise_open_files(wanted: int = 8192) -> None:
    """Lift the soft open-file limit (often 1,024) towards the hard one, for `folders_per_process`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # a sandbox may refuse: fewer kept open
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def unlink_at(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def place_atomically(folders: Folders, rel: str, fill: Callable[[int], None]) -> int:
    """Create OUT/`rel` through a temporary name in its folder, renamed once `fill(fd)` has
    written the content, so a final path never holds partial data; in a staged split, whose
    folder is not final yet, under its own name (a rename per file is a fifth of a build's
    time on small files). Returns its mtime_ns."""
    folder, name = rel.rsplit("/", 1)
    dir_fd = folders.fd(folder)
    direct = folders.is_staged(folder)
    tmp = name if direct else f".{name}{TMP_SUFFIX}"
    fd = -1
    try:
        fd = os.open(tmp, _NEW_FILE, 0o644, dir_fd=dir_fd)
        fill(fd)
        mtime_ns = os.fstat(fd).st_mtime_ns
        os.close(fd)
        fd = -2  # closed, still to be renamed
        if not direct:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException as e:
        if fd >= 0:
            os.close(fd)
        if fd != -1:
            unlink_at(dir_fd, tmp)
        if isinstance(e, OSError):  # name the file the user asked for, not our temporary
            e.filename = str(folders.out / rel)
        raise
    return mtime_ns


def unchanged(st: Optional[os.stat_result], done: Optional[Done], size: int = -1) -> bool:
    """Whether the file `st` describes is still the one `done` journaled (regular, same size and
    mtime); `size` is what the job expects, -1 when not known yet (a stream's)."""
    return st is not None and done is not None and stat.S_ISREG(st.st_mode) \
        and st.st_size == done.size and size in (done.size, -1) and st.st_mtime_ns == done.mtime_ns


def still_there(folders: Folders, done: Done) -> bool:
    """The candidate is unchanged now, not only when the build planned (a moment ago)."""
    try:
        return unchanged(folders.lstat(done.rel), done)
    except FileNotFoundError:
        return False


def disk_sha256(folders: Folders, rel: str) -> str:
    """sha256 of the file at OUT/`rel` as it is on disk (a link there is not followed)."""
    folder, name = rel.rsplit("/", 1)
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folders.fd(folder))
    try:
        return sha256_of(fd)
    finally:
        os.close(fd)


def write_file(folders: Folders, job: Job, data: bytes, reread: bool = False) -> Done:
    """Write a job's bytes (however they were read) to its final path atomically; a file up
    for re-check that still holds exactly these bytes is kept as it is (no write, no rename).
    Its journaled sha256 stands for its bytes, unless `reread` (--recheck: the file itself may
    have changed since, its size and mtime kept): then they are read and hashed too."""
    digest = hashlib.sha256(data).hexdigest()
    if job.recheck is not None and job.recheck.sha256 == digest and still_there(folders, job.recheck) \
            and (not reread or disk_sha256(folders, job.rel) == digest):
        return replace(job.recheck, rechecked=True)

    def fill(fd: int) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]

    return Done(job.rel, len(data), place_atomically(folders, job.rel, fill), digest)
