"""The manifest renderer: the same bytes as csv.writer, whatever the fields hold."""
from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltextract.out.manifest import COLUMNS, SHARD_COLUMNS, Row, render_manifest

# list names may hold commas and quotes; line breaks and non-ASCII only reach here by mistake
_text = st.text(alphabet=st.sampled_from('ab,"\r\n \t/é'), max_size=6)


def reference(rows: list[Row], sharded: bool) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS + SHARD_COLUMNS if sharded else COLUMNS)
    for r in rows:
        rec = (r.path, r.label, r.wnid, r.size, r.sha256, r.file_name)
        writer.writerow(rec + (r.shard, r.key) if sharded else rec)
    return buf.getvalue().encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_text, st.integers(0, 999), _text, st.integers(0, 1 << 40), _text, _text, _text),
                max_size=6), st.booleans())
def test_render_manifest_is_what_csv_writes(recs, sharded):
    rows = [Row(path, label, wnid, size, sha, *((shard or "s", key) if sharded else ()))
            for path, label, wnid, size, sha, shard, key in recs]
    assert render_manifest(rows) == reference(rows, sharded and bool(rows))


def test_plain_and_quoted_rows():
    rows = [Row("train/n0/a.JPEG", 0, "n0", 5, "ab"), Row('train/n0/b,"c".JPEG', 1, "n0", 6, "cd")]
    assert render_manifest(rows) == (b"path,label,wnid,size,sha256,file_name\n"
                                      b"train/n0/a.JPEG,0,n0,5,ab,a.JPEG\n"
                                      b'"train/n0/b,""c"".JPEG",1,n0,6,cd,"b,""c"".JPEG"\n')
    assert render_manifest(rows[:1]) == (b"path,label,wnid,size,sha256,file_name\n"
                                         b"train/n0/a.JPEG,0,n0,5,ab,a.JPEG\n")


# --- reading back: the whole-column path agrees with csv, row by row -----------------------

_part = st.sampled_from(["train", "n01440764", "a.JPEG", ".", "..", "", "a,b", 'q"', "x\ty", "é",
                         "\0", ".x", "x.", "a b"])
_path = st.lists(_part, min_size=1, max_size=4).map("/".join)


def _read_both(tmp_path, monkeypatch, text: str):
    """read_manifest of `text` with and without the whole-column path: rows or the error."""
    from ltextract.errors import LtError
    from ltextract.out import manifest

    (tmp_path / "train.csv").write_bytes(text.encode("utf-8", "surrogatepass"))
    outcomes = []
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(manifest, "_clean_columns", lambda text: None)
        try:
            outcomes.append(manifest.read_manifest(tmp_path, "train"))
        except LtError as e:
            outcomes.append(str(e))
    monkeypatch.undo()
    return outcomes


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_path, st.sampled_from(["0", "7", "-1", "01", "x", "99999999999"]),
                          st.sampled_from(["n01440764", "", "n0,1"]),
                          st.sampled_from(["0", "12", "-3", " 4", "1e3"]), st.sampled_from(["ab" * 32, ""]),
                          st.sampled_from(["", "train/s-0.tar", "../x", "train/"]), st.text("k,\n", max_size=2)),
                max_size=5), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_whole_column_read_agrees_with_csv(tmp_path_factory, recs, sharded, eol):
    """What the fast path accepts, csv reads to the same rows; everything else it leaves to csv
    (so a damaged manifest is named by line there)."""
    tmp_path = tmp_path_factory.mktemp("m")
    header = ",".join(COLUMNS + SHARD_COLUMNS if sharded else COLUMNS)
    lines = [",".join([p, label, wnid, size, sha, p.rpartition("/")[2]] + ([shard, key] if sharded else []))
             for p, label, wnid, size, sha, shard, key in recs]
    text = eol.join([header, *lines]) + eol
    monkeypatch = pytest.MonkeyPatch()
    fast, slow = _read_both(tmp_path, monkeypatch, text)
    assert fast == slow


def test_a_manifest_as_written_takes_the_whole_column_path(tmp_path):
    from ltextract.out import manifest

    rows = [Row("train/n01440764/a.JPEG", 0, "n01440764", 5, "ab" * 32),
            Row("train/n01443537/b c.JPEG", 1, "n01443537", 0, "cd" * 32)]
    text = render_manifest(rows).decode()
    assert manifest._clean_columns(text).rows() == rows
    sharded = [Row(r.path, r.label, r.wnid, r.size, r.sha256, "train/train-000000.tar", f"k{i}")
               for i, r in enumerate(rows)]
    assert manifest._clean_columns(render_manifest(sharded).decode()).rows() == sharded
    for bad in ("train/../a.JPEG", "train//a.JPEG", "/train/n0/a.JPEG", "train/n0/./a"):
        assert manifest._clean_columns(text.replace("train/n01440764/a.JPEG", bad, 1)) is None


def test_positions_round_trip(tmp_path):
    """tfds and hf manifests end in shard,index; read back into the rows they came from."""
    from ltextract.out.manifest import POSITION_COLUMNS, read_manifest, write_split

    rows = [Row("val/n0/a.JPEG", 0, "n0", 5, "ab", "data/validation-00000-of-00001.parquet", "1"),
            Row("val/n0/b.JPEG", 0, "n0", 6, "cd", "data/validation-00000-of-00001.parquet", "0")]
    write_split(tmp_path, "val", rows, shard_columns=POSITION_COLUMNS)
    assert (tmp_path / "val.csv").read_text().splitlines()[0].endswith(",file_name,shard,index")
    assert read_manifest(tmp_path, "val") == rows


_PARTS = st.sampled_from(["", ".", "..", ".x", "x.", "a", "n01440764_1.JPEG", "..x", "a.b"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_PARTS, min_size=1, max_size=4).map("/".join), min_size=1, max_size=5))
def test_a_whole_column_is_safe_exactly_when_each_path_is(paths):
    """safe_column looks for "." and ".." components only where a component starts with a dot:
    it must still agree with the check of each path alone."""
    from ltextract.files import safe_column, safe_rel

    assert safe_column(paths, {1, 2}) == all(safe_rel(p, {2, 3}) for p in paths), paths
