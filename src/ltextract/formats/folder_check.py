"""`verify` of a `--format folders` split: every file of the manifest in its class folder, of its
size and sha256, and nothing else there.

At ImageNet-LT's 186K small files the cost is per file, not per byte, so the work is cut by
class folder and spread over forked processes (`workers.fork_map`, as the copy): each opens a
folder once, lists it once (which finds stray files too, without a walk of its own), and stats,
opens and reads each file relative to it, one system call each. Threads took turns on the GIL
for every one of those calls (4.2x the time of `xargs -P2 sha256sum`).
"""
from __future__ import annotations

import errno
import hashlib
import os
from itertools import groupby, repeat
from operator import attrgetter, itemgetter
from typing import Callable, Collection, Iterator, Optional

from ltextract.files import sha256_of
from ltextract.formats import Problem
from ltextract.out.manifest import Row
from ltextract.workers import can_fork, fork_map

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TASK_FILES = 2048  # files per task: few results to send back, even spread over the workers
WHOLE_READ = 64 << 20  # files up to this size are read in one call; larger ones in chunks

Folder = tuple[str, list[Row]]  # "train/n01440764", its rows


def check_split_folders(out: str, split: str, rows: list[Row], workers: int, follow: bool,
                        progress: Optional[Callable[[int], None]], out_folders: Optional[Collection[str]] = None,
                        others: Collection[str] = ()) -> Iterator[Problem]:
    """Problems of the split's files and folders; `follow`: files are symlinks (--link symlink),
    checked through them. Strays are reported under the folders of OUT `out_folders` (default: the split's
    own); `others`: files there that other splits list (--layout lists), neither checked nor stray."""
    out_folders = {split} if out_folders is None else set(out_folders)
    folders: dict[str, list[Row]] = {}
    where = map(itemgetter(0), map(str.rpartition, map(attrgetter("path"), rows), repeat("/")))
    for folder, run in groupby(zip(where, rows), itemgetter(0)):  # a list's files come by class
        folders.setdefault(folder, []).extend(map(itemgetter(1), run))
    for path in others:  # folders only other splits' files are in: listed for their strays
        folders.setdefault(path.rpartition("/")[0], [])
    for out_folder in sorted(out_folders - folders.keys()):  # (a flat split's is checked as its class folder)
        yield from _split_root(out, out_folder, folders, others)
    tasks = _tasks(list(folders.items()))

    def strays_in(folder: str) -> bool:
        return folder.partition("/")[0] in out_folders

    def task(i: int) -> tuple[list[Problem], int]:  # (the rows are inherited, not sent: a task's number is)
        return [p for folder, frows in tasks[i]
                for p in check_folder(out, folder, frows, follow, strays_in(folder), others)], \
            sum(r.size for _, frows in tasks[i] for r in frows)

    parallel = workers > 1 and len(tasks) > 1 and can_fork()
    numbers = range(len(tasks))
    results = fork_map(task, numbers, workers, f"{out}: a verify") if parallel else map(task, numbers)
    for problems, done in results:
        yield from problems
        if progress:
            progress(done)


def _tasks(folders: list[Folder]) -> list[list[Folder]]:
    tasks: list[list[Folder]] = [[]]
    files = 0
    for item in folders:
        if files >= TASK_FILES:
            tasks.append([])
            files = 0
        tasks[-1].append(item)
        files += len(item[1])
    return tasks if tasks[0] else []


def _split_root(out: str, split: str, folders: dict[str, list[Row]],
                others: Collection[str] = ()) -> Iterator[Problem]:
    """What the split's folder of OUT holds besides the class folders (or, flat, the files) the
    manifests name."""
    try:
        entries = sorted(os.scandir(os.path.join(out, split)), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return  # each file is reported missing
    for entry in entries:
        rel = f"{split}/{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            if rel not in folders:
                yield Problem(rel, "stray folder")
        elif rel not in folders and rel not in others:
            yield Problem(rel, "stray file (not in the manifest)")


def check_folder(out: str, folder: str, rows: list[Row], follow: bool, strays: bool = True,
                 others: Collection[str] = ()) -> list[Problem]:
    """One class folder: its listed files checked; its other entries stray (with `strays`),
    but for `others`' (files other splits list)."""
    try:
        dir_fd = os.open(os.path.join(out, folder), _DIR)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        if os.path.islink(os.path.join(out, folder)):  # (O_NOFOLLOW: ELOOP or ENOTDIR, by kernel)
            return [Problem(folder, "a symlink, not a folder")]
        if os.path.lexists(os.path.join(out, folder)):
            return [Problem(folder, "not a folder")]
        return [Problem(r.path, "missing", r.path) for r in rows]
    try:
        with os.scandir(dir_fd) as it:
            entries = {e.name: e for e in it}
        start = len(folder) + 1
        problems = []
        flags = _FILE | (0 if follow else os.O_NOFOLLOW)
        pop, open_, read, close, sha256 = entries.pop, os.open, os.read, os.close, hashlib.sha256
        for row in rows:  # the common case inline (a sixth of the time); what fails it, again, named
            name, size = row.path[start:], row.size
            entry = pop(name, None)
            if entry is not None and size <= WHOLE_READ and entry.is_file(follow_symlinks=follow):
                try:
                    fd = open_(name, flags, dir_fd=dir_fd)
                    try:
                        data = read(fd, size + 1)
                    finally:
                        close(fd)
                    if len(data) == size and sha256(data).hexdigest() == row.sha256:
                        continue
                except OSError:
                    pass
            problem = "missing" if entry is None else _file_problem(dir_fd, name, entry, row, follow)
            if problem:
                problems.append(Problem(row.path, problem, row.path))
        for name in sorted(entries) if strays else ():
            if f"{folder}/{name}" in others:
                continue
            kind = "stray folder" if entries[name].is_dir(follow_symlinks=False) else \
                "stray file (not in the manifest)"
            problems.append(Problem(f"{folder}/{name}", kind))
        return problems
    finally:
        os.close(dir_fd)


def _file_problem(dir_fd: int, name: str, entry: os.DirEntry, row: Row, follow: bool) -> str:
    """What is wrong with one listed file, or "". Its type comes from the folder listing (no
    system call where the file system gives it), its size from reading one byte past it: open,
    read and close are the only calls for a file as it should be."""
    if not entry.is_file(follow_symlinks=follow):
        return "not a regular file"
    try:
        fd = os.open(name, _FILE | (0 if follow else os.O_NOFOLLOW), dir_fd=dir_fd)
        try:
            if row.size > WHOLE_READ:
                size = os.fstat(fd).st_size
                digest = sha256_of(fd) if size == row.size else ""
            else:
                data = os.read(fd, row.size + 1)
                size = len(data) if len(data) <= row.size else os.fstat(fd).st_size
                digest = hashlib.sha256(data).hexdigest()
        finally:
            os.close(fd)
    except FileNotFoundError:
        return "missing"  # (deleted since the folder was listed)
    except OSError as e:  # a link or a folder swapped in since
        return f"cannot be read ({e.strerror})"
    if size != row.size:
        return f"size {size:,} differs from the manifest's {row.size:,}"
    return "" if digest == row.sha256 else "sha256 differs from the manifest (corrupt or modified)"


#: O_NONBLOCK: a FIFO planted in OUT is opened without waiting for a writer (and then is not
#: a regular file; the listing says so first, unless the file system gives no types)
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
