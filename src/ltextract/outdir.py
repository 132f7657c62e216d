"""The output folder's own state: one build at a time, no writes through planted links, and
the journals of finished files that make a re-run keep what is whole.

Layout: OUT/.ltextract/lock (flock, holder's pid) and OUT/.ltextract/<split>.journal, a line
`path<TAB>size<TAB>mtime_ns<TAB>sha256` per finished file under a first line naming the tar.
Lines starting with `?` are files journaled against another source, carried over unconfirmed
until their bytes are re-checked against this one (so a killed re-check run loses none of them).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import resource
import stat
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection, Iterable, NamedTuple, Optional, TextIO

from ltextract.base import LtError, unlink_quietly
from ltextract.tarindex import ArchiveIndex, fingerprint

STATE_DIR = ".ltextract"
TMP_SUFFIX = ".ltx-part"  # ".<name>.ltx-part": a file on its way to <name>
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(slots=True)
class Done:
    """A file whole at its final path, as the journal records it. Never changed once made (not
    frozen only because a frozen init costs 4x, and a re-run reads one per finished file)."""
    rel: str
    size: int
    mtime_ns: int
    sha256: str
    #: kept without rewriting: journaled against another source, its bytes read and found equal
    rechecked: bool = field(default=False, compare=False)

    def __reduce__(self) -> tuple:  # from copy workers: a third of the default's pickling time
        return (Done, (self.rel, self.size, self.mtime_ns, self.sha256, self.rechecked))


# --- the output folder ------------------------------------------------------------------

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


#: Temporary names of an interrupted run that no later step would reuse: manifests, lists and
#: metadata written by base.atomic_writer (".<name>.<random>.tmp") and journal rewrites.
_STALE = re.compile(r"\.((train|val|test)\.csv|ImageNet_LT_(train|val|test)\.txt|ltextract\.json)"
                    r"\.[^/]+\.tmp")


def remove_stale_temps(out: Path) -> None:
    """Delete what a killed run left behind; call with the OUT lock held (no other run writes)."""
    for folder, pattern in ((out, _STALE), (out / STATE_DIR, re.compile(r"[a-z]+\.tmp"))):
        for entry in os.scandir(folder):
            if pattern.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)


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


# --- journal ----------------------------------------------------------------------------

def journal_path(out: Path, split: str) -> Path:
    return out / STATE_DIR / f"{split}.journal"


@dataclass(frozen=True)
class Journaled:
    """What a journal holds: the identity of the source its files came from, those files, and
    files carried over unconfirmed from a journal of another source."""
    identity: str
    done: dict[str, Done]
    unconfirmed: dict[str, Done]

    def trusted(self, identity: str) -> dict[str, Done]:
        """Files to keep without reading: only those journaled against this very source."""
        return self.done if identity == self.identity else {}

    def candidates(self, identity: str) -> dict[str, Done]:
        """Files to keep once their bytes from this source prove equal (`extract.write_one`)."""
        return self.unconfirmed | ({} if identity == self.identity else self.done)


def read_journal_entries(out: Path, split: str) -> Journaled:
    """Every file a journal names, whatever source it came from; a missing or planted journal
    names none (Journal replaces a planted link)."""
    try:
        with _open_nofollow(journal_path(out, split), os.O_RDONLY, "r") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        lines = []
    done: dict[str, Done] = {}
    unconfirmed: dict[str, Done] = {}
    for line in lines[1:]:
        into = done
        if line[:1] == "?":
            line, into = line[1:], unconfirmed
        parts = line.split("\t")
        if len(parts) == 4:
            rel, size, mtime_ns, sha256 = parts
            if len(sha256) == 64 and _decimal(size) and _decimal(mtime_ns):
                into[rel] = Done(rel, int(size), int(mtime_ns), sha256)
    return Journaled(lines[0] if lines else "", done, unconfirmed)


def _decimal(field: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses (a hand-edited line)."""
    return field.isdigit() and field.isascii()


def read_journal(out: Path, split: str, identity: str) -> dict[str, Done]:
    """Finished files from earlier runs against the same source; anything else is redone."""
    return read_journal_entries(out, split).trusted(identity)


class Journal:
    def __init__(self, out: Path, split: str, identity: str, keep: Iterable[Done],
                 carry: Iterable[Done] = ()):
        """Start the journal afresh under `identity` with the files `keep`; `carry` are files
        still to be re-checked against this source, kept as `?` lines until they are."""
        path = journal_path(out, split)
        tmp = path.with_suffix(".tmp")
        unlink_quietly(tmp)  # and never write through whatever was planted there
        try:
            with _open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, "w") as f:
                f.write(identity + "\n")
                f.writelines(_journal_line(d) for d in keep)
                f.writelines("?" + _journal_line(d) for d in carry)
            os.replace(tmp, path)
        except BaseException:
            unlink_quietly(tmp)
            raise
        self.file = _open_nofollow(path, os.O_WRONLY | os.O_APPEND, "a")

    def add(self, done: Done) -> None:
        self.file.write(_journal_line(done))

    def write(self, lines: str) -> None:
        """Lines a `Batch` rendered."""
        self.file.write(lines)

    def flush(self) -> None:
        """After each batch of files: a killed run loses at most the lines of the batch in hand."""
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Batch(NamedTuple):
    """Files finished together, by split, with their journal lines rendered where they were
    made (in a copy worker, in parallel): per file, the parent then only files the record."""
    done: dict[str, list[Done]]
    lines: dict[str, str]


def batch(finished: Iterable[Done]) -> Batch:
    done: dict[str, list[Done]] = {}
    for d in finished:
        done.setdefault(d.rel.partition("/")[0], []).append(d)
    return Batch(done, {split: "".join(map(_journal_line, ds)) for split, ds in done.items()})


def _open_nofollow(path: Path, flags: int, mode: str, buffering: int = -1) -> TextIO:
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return open(fd, mode, buffering, encoding="utf-8", errors="surrogateescape")


def _journal_line(d: Done) -> str:
    return f"{d.rel}\t{d.size}\t{d.mtime_ns}\t{d.sha256}\n"


def tar_identity(index: ArchiveIndex) -> str:
    return f"{index.path.name} {index.size} {index.mtime_ns} {index.fingerprint}"


def file_identity(path: Optional[Path]) -> str:
    """`tar_identity` without an index; a pipe has none, so its journals are never trusted."""
    if path is None or not path.is_file():
        return f"- {time.time_ns()}"
    st = os.stat(path)
    return f"{path.name} {st.st_size} {st.st_mtime_ns} {fingerprint(path)}"
