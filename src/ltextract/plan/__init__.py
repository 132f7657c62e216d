"""Planning: the one place where list entries meet source members and become `Job`s (what to
write where, from which bytes), with each source's identity for the journals. Pure but for
what the sources' `locate` reads (headers, stats)."""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ltextract.benchmarks.lists import Entry, SplitList
from ltextract.errors import LtError
from ltextract.plan.identity import identity
from ltextract.sources import Indexes, Key, Source, Where

if TYPE_CHECKING:
    from ltextract.out.journal import Done

_WNID_FILE = itemgetter(1, 2)  # an Entry's (wnid, file), its key: made in C


LAYOUTS = ("splits", "lists")


def out_path(layout: str, split: str, sl: SplitList, e: Entry) -> str:
    """Where an image goes, relative to OUT: `<split>/<class>/<file>` (one folder per split,
    as ImageFolder wants), or with `lists`, exactly the path its list line names (so loaders
    joining OUT with the lists they ship find every file)."""
    return sl.path(e) if layout == "lists" else f"{split}/{e.wnid}/{e.file}"


@dataclass(slots=True)  # not frozen: a frozen init costs 4x, and a build makes one per listed file
class Job:
    split: str
    rel: str  # where it goes, relative to OUT: "<split>/<wnid>/<file>" (see `out_path`)
    wnid: str
    label: int
    file: Path  # the file holding the bytes (a tar, a part's first file, a tree's image)
    offset: int  # of the payload in `file`; -1: found on the way (a stream without index)
    size: int  # -1: not known until read (likewise)
    #: the file at `rel`, journaled against another source: kept if these bytes hash the same
    recheck: Optional[Done] = None
    #: the bytes' sha256 when known without reading them (a file of another split in OUT)
    sha256: str = ""


@dataclass
class Plan:
    jobs: dict[str, list[Job]]  # per split, in list order
    identities: dict[str, str] = field(default_factory=dict)  # per origin: the journal header
    cuts: dict[str, str] = field(default_factory=dict)  # per origin: why its tar holds only part


def wanted(lists: dict[str, SplitList]) -> dict[str, set[Key]]:
    """(wnid, file) keys each origin ("train"/"val") must provide."""
    keys: dict[str, set[Key]] = {}
    for sl in lists.values():
        keys.setdefault(sl.entries[0].origin, set()).update(map(_WNID_FILE, sl.entries))
    return keys


def plan(lists: dict[str, SplitList], srcs: dict[str, Source], indexes: Indexes, link: str,
         unindexed: frozenset[str] = frozenset(), layout: str = "splits") -> Plan:
    """Jobs per split, each going where `layout` puts it; sources of origins in `unindexed` (a
    stream with no cached index) are not located: their jobs learn offset and size as the
    stream passes them. A truncated tar's jobs are only the files before the cut (its reason
    in `cuts`)."""
    result = Plan({})
    where: dict[str, dict[Key, Where]] = {}
    names: dict[str, str] = {}
    digests: dict[str, dict[Key, str]] = {}
    for origin, keys in wanted(lists).items():
        src = srcs[origin]
        if origin in unindexed:
            result.identities[origin] = identity(src, None, link)
            continue
        located = src.locate(keys, indexes)
        where[origin], names[origin] = located.where, located.name
        digests[origin] = located.digests
        result.identities[origin] = identity(src, located.index, link)
        if located.cut:
            result.cuts[origin] = located.cut
    for split, sl in lists.items():
        origin = sl.entries[0].origin
        if origin in unindexed:
            result.jobs[split] = plan_unindexed(split, sl, srcs[origin].path, layout)
        else:
            result.jobs[split] = plan_located(split, sl, where[origin], names[origin],
                                              origin in result.cuts, layout)
            if digests[origin]:
                for job, e in zip(result.jobs[split], sl.entries):  # (a partial source has none)
                    job.sha256 = digests[origin].get((e.wnid, e.file), "")
    return result


def plan_located(split: str, sl: SplitList, where: dict[Key, Where], source_name: str,
                 partial: bool = False, layout: str = "splits") -> list[Job]:
    """Jobs from (wnid, file) -> where, whatever the source. For a `partial` source (a truncated
    tar) the images it lacks are left out, not an error; `source_name` names it in that error."""
    found = where.get
    located = [found((e.wnid, e.file)) for e in sl.entries]
    pairs = zip(sl.entries, located)
    if None in located:
        if not partial:
            missing = [e for e, at in zip(sl.entries, located) if at is None]
            first = ", ".join(sl.path(e) for e in missing[:5])
            raise LtError(f"{len(missing):,} image(s) named by {Path(sl.source).name} are missing from"
                          f" {source_name}: {first}{' …' if len(missing) > 5 else ''}")
        pairs = ((e, at) for e, at in pairs if at is not None)
    if layout == "lists":
        return [Job(split, sl.path(e), e.wnid, e.label, at[0], at[1], at[2]) for e, at in pairs]
    return [Job(split, f"{split}/{e.wnid}/{e.file}", e.wnid, e.label, at[0], at[1], at[2])
            for e, at in pairs]


def plan_unindexed(split: str, sl: SplitList, file: Path, layout: str = "splits") -> list[Job]:
    """Jobs for a tar read without an index (a stream): where and how big is found on the way."""
    return [Job(split, out_path(layout, split, sl, e), e.wnid, e.label, file, -1, -1) for e in sl.entries]
