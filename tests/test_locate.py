"""locate_in_index against a member-by-member reference, on indexes built in memory."""
from __future__ import annotations

from array import array
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ltextract.sources.archive import locate_in_index as locate
from ltextract.tar.index import ArchiveIndex, Group

WNIDS = ("n01440764", "n01443537", "n15075141")
# raw member names: a few collide (duplicates in one group, the same name in two groups); one
# is not UTF-8, so keys reach it only through surrogateescape
_name = st.sampled_from([b"a.JPEG", b"b.JPEG", b"c", b"d,e", b"\xff.JPEG", b"f g.JPEG"])
_group = st.tuples(st.sampled_from([f"{w}.tar" for w in WNIDS] + ["odd.tar", "n01440764"]),
                   st.lists(_name, max_size=6))


def make_index(nested: bool, groups: list[tuple[str, list[bytes]]]) -> ArchiveIndex:
    names = [n for _, members in groups for n in members]
    return ArchiveIndex(Path("/x.tar"), 0, 0, "", nested,
                        [Group(g if nested else "", 0, 0, len(members)) for g, members in groups],
                        b"".join(n + b"\n" for n in names),
                        array("Q", range(100, 100 + len(names))), array("Q", range(7, 7 + len(names))))


def reference(index: ArchiveIndex, keys: set[tuple[str, str]]) -> dict:
    """For each key, the last member of its group (any group of that name) with its name."""
    names = index.names.split(b"\n")[:-1]
    found = {}
    for wnid, file in keys:
        group, first = (f"{wnid}.tar" if index.nested else ""), 0
        for g in index.groups:
            for i in range(first, first + g.count):
                if g.name == group and names[i] == file.encode("utf-8", "surrogateescape"):
                    found[(wnid, file)] = (index.path, index.offsets[i], index.sizes[i])
            first += g.count
    return found


_file = _name.map(lambda n: n.decode("utf-8", "surrogateescape")) | st.sampled_from(["missing", "x\ny"])


@settings(max_examples=500, deadline=None)
@given(st.lists(_group, max_size=5), st.sets(st.tuples(st.sampled_from(WNIDS), _file), max_size=8))
def test_nested_locate_is_the_reference(groups, keys):
    index = make_index(True, groups)
    assert locate(index, keys) == reference(index, keys)


@settings(max_examples=300, deadline=None)
@given(st.lists(_name, max_size=10), st.sets(st.tuples(st.sampled_from(WNIDS), _file), max_size=8))
def test_flat_locate_is_the_reference(members, keys):
    """A flat tar (val) has no wnid in its names: each listed file's wnid comes from the list,
    and a file listed under two wnids is found for both."""
    index = make_index(False, [("", members)])
    assert locate(index, keys) == reference(index, keys)


def test_flat_file_listed_under_two_wnids_is_found_for_both():
    index = make_index(False, [("", [b"a.JPEG", b"b.JPEG"])])
    keys = {(WNIDS[0], "b.JPEG"), (WNIDS[1], "b.JPEG")}
    assert locate(index, keys) == {k: (Path("/x.tar"), 101, 8) for k in keys}

