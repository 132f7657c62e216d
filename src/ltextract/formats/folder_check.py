"""`verify` of a `--format folders` split: every file of the manifest in its class folder, of its
size and sha256, and nothing else there.

At ImageNet-LT's 186K small files the cost is per file, not per byte, so the work is cut by
class folder and spread over worker processes (a `workers.Pool`): each opens a folder once,
lists it once (which finds stray files too, without a walk of its own), and opens and reads each
file relative to it, one system call each. Threads took turns on the GIL for every one of those
calls (4.2x the time of `xargs -P2 sha256sum`). A task carries its files' names, sizes and
sha256s: the workers start on a split as soon as its manifest is read, while the parent reads
the next one and checks the rows and lists (done one after the other, that was a third of the
time).
"""
from __future__ import annotations

import errno
import hashlib
import os
from itertools import groupby, repeat
from operator import itemgetter
from typing import Callable, Collection, Iterator, Optional

from ltextract.files import sha256_of
from ltextract.formats import Problem
from ltextract.out.manifest import Columns
from ltextract.workers import Pool

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
TASK_FILES = 2048  # files per task: few results to send back, even spread over the workers
WHOLE_READ = 64 << 20  # files up to this size are read in one call; larger ones in chunks

#: one class folder's part of a task: "train/n01440764", its files' names, sizes and sha256s,
#: whether files it holds beyond those are strays, and the names other splits list there
Folder = tuple[str, list[str], list[int], list[str], bool, Collection[str]]


def check_split_folders(out: str, split: str, cols: Columns, pool: Pool, follow: bool,
                        progress: Optional[Callable[[int], None]], out_folders: Optional[Collection[str]] = None,
                        others: Collection[str] = ()) -> Iterator[Problem]:
    """Problems of the split's files and folders: its tasks go to `pool` now, the problems come
    as the returned iterator is read. `follow`: files are symlinks (--link symlink), checked
    through them. Strays are reported under the folders of OUT `out_folders` (default: the
    split's own); `others`: files there that other splits list (--layout lists), neither checked
    nor stray."""
    out_folders = {split} if out_folders is None else set(out_folders)
    folders: dict[str, list[tuple[int, int]]] = {}  # class folder -> the runs of its rows
    start = 0
    for folder, run in groupby(map(itemgetter(0), map(str.rpartition, cols.path, repeat("/")))):
        end = start + len(list(run))  # (a list's files come by class: one run each, as a rule)
        folders.setdefault(folder, []).append((start, end))
        start = end
    listed: dict[str, set[str]] = {}
    for path in others:  # folders only other splits' files are in: listed for their strays
        folder, _, name = path.rpartition("/")
        folders.setdefault(folder, [])
        listed.setdefault(folder, set()).add(name)
    root = [p for out_folder in sorted(out_folders - folders.keys())  # (a flat split's: its class folder)
            for p in _split_root(out, out_folder, folders, others)]
    results = [pool.submit(check_folders, out, task, follow)
               for task in _tasks(cols, folders, lambda f: f.partition("/")[0] in out_folders, listed)]
    return _collect(root, results, progress)


def _collect(first: list[Problem], results: list[Callable[[], tuple[list[Problem], int]]],
             progress: Optional[Callable[[int], None]]) -> Iterator[Problem]:
    yield from first
    for result in results:
        problems, done = result()
        yield from problems
        if progress:
            progress(done)


def _tasks(cols: Columns, folders: dict[str, list[tuple[int, int]]], strays: Callable[[str], bool],
           listed: dict[str, set[str]]) -> Iterator[list[Folder]]:
    """The folders in tasks of about TASK_FILES files, each folder whole."""
    task: list[Folder] = []
    files = 0
    for folder, runs in folders.items():
        if files >= TASK_FILES:
            yield task
            task, files = [], 0
        cut = len(folder) + 1
        names = [path[cut:] for path in _take(cols.path, runs)]
        task.append((folder, names, _take(cols.size, runs), _take(cols.sha256, runs), strays(folder),
                     listed.get(folder, ())))
        files += len(names)
    if task:
        yield task


def _take(column: list, runs: list[tuple[int, int]]) -> list:
    """A column's values in a folder's runs of rows (one slice, as a rule)."""
    return column[runs[0][0]:runs[0][1]] if len(runs) == 1 else [v for a, b in runs for v in column[a:b]]


def check_folders(out: str, task: list[Folder], follow: bool) -> tuple[list[Problem], int]:
    """A task, in a worker: its folders' problems, and the bytes it checked (for progress)."""
    return [p for folder in task for p in check_folder(out, *folder, follow=follow)], \
        sum(sum(folder[2]) for folder in task)


def _split_root(out: str, split: str, folders: Collection[str],
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


def check_folder(out: str, folder: str, names: list[str], sizes: list[int], sha256s: list[str],
                 strays: bool = True, others: Collection[str] = (), follow: bool = False) -> list[Problem]:
    """One class folder: its listed files (`names`, of `sizes` and `sha256s`) checked; its other
    entries stray (with `strays`), but for `others` (names other splits list there)."""
    try:
        dir_fd = os.open(os.path.join(out, folder), _DIR)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            raise
        if os.path.islink(os.path.join(out, folder)):  # (O_NOFOLLOW: ELOOP or ENOTDIR, by kernel)
            return [Problem(folder, "a symlink, not a folder")]
        if os.path.lexists(os.path.join(out, folder)):
            return [Problem(folder, "not a folder")]
        return [Problem(path, "missing", path) for path in map(f"{folder}/".__add__, names)]
    try:
        with os.scandir(dir_fd) as it:
            entries = {e.name: e for e in it}
        problems = []
        flags = _FILE | (0 if follow else os.O_NOFOLLOW)
        pop, open_, read, close, sha256 = entries.pop, os.open, os.read, os.close, hashlib.sha256
        # the common case inline (a sixth of the time); what fails it, again, in _file_problem
        for name, size, digest in zip(names, sizes, sha256s):
            entry = pop(name, None)
            if entry is not None and size <= WHOLE_READ and entry.is_file(follow_symlinks=follow):
                try:
                    fd = open_(name, flags, dir_fd=dir_fd)
                    try:
                        data = read(fd, size + 1)
                    finally:
                        close(fd)
                    if len(data) == size and sha256(data).hexdigest() == digest:
                        continue
                except OSError:
                    pass
            problem = "missing" if entry is None else _file_problem(dir_fd, name, entry, size, digest, follow)
            if problem:
                problems.append(Problem(f"{folder}/{name}", problem, f"{folder}/{name}"))
        for name in sorted(entries) if strays else ():
            if name in others:
                continue
            kind = "stray folder" if entries[name].is_dir(follow_symlinks=False) else \
                "stray file (not in the manifest)"
            problems.append(Problem(f"{folder}/{name}", kind))
        return problems
    finally:
        os.close(dir_fd)


def _file_problem(dir_fd: int, name: str, entry: os.DirEntry, expected: int, digest: str, follow: bool) -> str:
    """What is wrong with one listed file (of size `expected` and sha256 `digest`), or "". Its
    type comes from the folder listing (no system call where the file system gives it), its size
    from reading one byte past it: open, read and close are the only calls for a file as it
    should be."""
    if not entry.is_file(follow_symlinks=follow):
        return "not a regular file"
    try:
        fd = os.open(name, _FILE | (0 if follow else os.O_NOFOLLOW), dir_fd=dir_fd)
        try:
            if expected > WHOLE_READ:
                size = os.fstat(fd).st_size
                found = sha256_of(fd) if size == expected else ""
            else:
                data = os.read(fd, expected + 1)
                size = len(data) if len(data) <= expected else os.fstat(fd).st_size
                found = hashlib.sha256(data).hexdigest()
        finally:
            os.close(fd)
    except FileNotFoundError:
        return "missing"  # (deleted since the folder was listed)
    except OSError as e:  # a link or a folder swapped in since
        return f"cannot be read ({e.strerror})"
    if size != expected:
        return f"size {size:,} differs from the manifest's {expected:,}"
    return "" if found == digest else "sha256 differs from the manifest (corrupt or modified)"


#: O_NONBLOCK: a FIFO planted in OUT is opened without waiting for a writer (and then is not
#: a regular file; the listing says so first, unless the file system gives no types)
_FILE = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
