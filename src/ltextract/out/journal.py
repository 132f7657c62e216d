"""Journals of finished files: OUT/.ltextract/<split>.journal, a line
`path<TAB>size<TAB>mtime_ns<TAB>sha256` per finished file under a first line naming the source
(`plan.identity`). Lines starting with `?` are files journaled against another source, carried
over unconfirmed until their bytes are re-checked against this one (so a killed re-check run
loses none of them)."""
from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Optional, TextIO

from ltextract.files import safe_column, safe_rel, unlink_quietly
from ltextract.out import STATE_DIR


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


def read_journal_text(out: Path, split: str) -> str:
    """The journal as it is; "" for a missing or planted one (Journal replaces a planted link)."""
    try:
        with _open_nofollow(journal_path(out, split), os.O_RDONLY, "r") as f:
            return f.read()
    except FileNotFoundError:
        return ""
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        return ""


def read_journal_entries(out: Path, split: str) -> Journaled:
    """Every file a journal names, whatever source it came from; a missing or planted journal
    names none."""
    text = read_journal_text(out, split)
    clean = journal_columns(text)
    if clean is not None:
        header, rels, sizes, mtimes, shas = clean
        return Journaled(header, dict(zip(rels, map(Done, rels, sizes, mtimes, shas))), {})
    lines = text.splitlines()
    done: dict[str, Done] = {}
    unconfirmed: dict[str, Done] = {}
    for line in lines[1:]:  # a line that is not one of ours (damaged) names no file: it is redone
        into = done
        if line[:1] == "?":
            line, into = line[1:], unconfirmed
        parts = line.split("\t")
        if len(parts) == 4:
            rel, size, mtime_ns, sha256 = parts
            if _SHA256.fullmatch(sha256) and _decimal(size) and _decimal(mtime_ns) and writable(rel):
                into[rel] = Done(rel, int(size), int(mtime_ns), sha256)
    return Journaled(lines[0] if lines else "", done, unconfirmed)


_SHA256 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]*")


Columns = tuple[str, list[str], list[int], list[int], list[str]]  # header, rels, sizes, mtimes, sha256s


def journal_fields(text: str) -> Optional[tuple[str, list[str], list[str], list[str], list[str]]]:
    """The header and the four columns of a journal whose every line has four fields, as text;
    None for anything else (or nothing)."""
    header, _, body = text.partition("\n")
    if not body.endswith("\n") or "\r" in body:
        return None
    fields = body.replace("\n", "\t").split("\t")
    if len(fields) != 4 * body.count("\n") + 1:
        return None
    return header, fields[0:-1:4], fields[1:-1:4], fields[2:-1:4], fields[3:-1:4]


def journal_columns(text: str, checked: bool = True) -> Optional[Columns]:
    """A journal as builds write it (no `?` line, none damaged), read and checked a whole column
    at a time: a re-run reads 186K lines (a fifth of the time of a check per line). None for
    anything else (or nothing): the lines are then read one by one. `checked=False`: neither
    paths nor digests are checked (for a caller that compares the paths with a list's)."""
    found = journal_fields(text)
    if found is None:
        return None
    header, rels, sizes, mtimes, shas = found
    numbers = "".join(sizes) + "".join(mtimes)
    if not (numbers.isdigit() and numbers.isascii() and max(map(len, sizes + mtimes)) <= 20):
        return None
    if checked and not (set(map(len, shas)) == {64} and _HEX.fullmatch("".join(shas))
                        and safe_column(rels, {1, 2}) and _ours(rels)):
        return None
    return header, rels, list(map(int, sizes)), list(map(int, mtimes)), shas


def _ours(rels: list[str]) -> bool:
    """`writable` of a whole column past `safe_column`: no `?` line (an unconfirmed file, read
    line by line), nothing in the state folder."""
    joined = "\n" + "\n".join(rels)
    return "\n?" not in joined and f"\n{STATE_DIR}/" not in joined


def writable(rel: str) -> bool:
    """A path a build writes (a file in a class folder or a flat one, a webdataset or hf shard,
    a tfds shard in <name>/<version>/): a damaged line (of a journal, a repair record) must never
    make a build open, or delete, anything outside OUT, nor its state folder. (Not the split's
    own folder only: with --layout lists splits share folders, and tfds and hf shards lie
    in one folder for every split.)"""
    return safe_rel(rel, {2, 3}) and not rel.startswith(f"{STATE_DIR}/")


def _decimal(field: str) -> bool:
    """ASCII digits only: str.isdigit() also takes '²', which int() refuses (a hand-edited line);
    at most 20 (a 64-bit number; int() refuses thousands)."""
    return field.isdigit() and field.isascii() and len(field) <= 20


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
                f.writelines(journal_line(d) for d in keep)
                f.writelines("?" + journal_line(d) for d in carry)
            os.replace(tmp, path)
        except BaseException:
            unlink_quietly(tmp)
            raise
        self.file = _open_nofollow(path, os.O_WRONLY | os.O_APPEND, "a")

    def add(self, done: Done) -> None:
        self.file.write(journal_line(done))

    def write(self, lines: str) -> None:
        """Lines a `Batch` rendered."""
        self.file.write(lines)

    def flush(self) -> None:
        """After each batch of files: a killed run loses at most the lines of the batch in hand."""
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def close_all(batches: Iterable, journals: Iterable[Journal]) -> None:
    """After a copy, finished or stopped: its workers stop first (closing the batches' iterator),
    so nothing writes into a split once it is published; then the journals close."""
    close = getattr(batches, "close", None)
    if close is not None:
        close()
    for journal in journals:
        journal.close()


class Batch(NamedTuple):
    """Files finished together, by split, with their journal lines rendered where they were
    made (in a copy worker, in parallel): per file, the parent then only files the record."""
    done: dict[str, list[Done]]
    lines: dict[str, str]
    bytes: int  # of the examples written: progress
    #: a writer's own compact record of what it wrote (a shard's sample digests, ...)
    extra: Optional[dict] = None


def batch(finished: Iterable[tuple[str, Done]]) -> Batch:
    """Files finished together, each with its split (`--layout lists` puts several splits'
    files in one folder: the path does not tell)."""
    done: dict[str, list[Done]] = {}
    for split, d in finished:
        done.setdefault(split, []).append(d)
    return Batch(done, {split: "".join(map(journal_line, ds)) for split, ds in done.items()},
                 sum(d.size for ds in done.values() for d in ds))


def _open_nofollow(path: Path, flags: int, mode: str, buffering: int = -1) -> TextIO:
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    return open(fd, mode, buffering, encoding="utf-8", errors="surrogateescape")


def journal_line(d: Done) -> str:
    return f"{d.rel}\t{d.size}\t{d.mtime_ns}\t{d.sha256}\n"
