"""The manifest renderer: the same bytes as csv.writer, whatever the fields hold."""
from __future__ import annotations

import csv
import io

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


def test_positions_round_trip(tmp_path):
    """tfds and hf manifests end in shard,index; read back into the rows they came from."""
    from ltextract.out.manifest import POSITION_COLUMNS, read_manifest, write_split

    rows = [Row("val/n0/a.JPEG", 0, "n0", 5, "ab", "data/validation-00000-of-00001.parquet", "1"),
            Row("val/n0/b.JPEG", 0, "n0", 6, "cd", "data/validation-00000-of-00001.parquet", "0")]
    write_split(tmp_path, "val", rows, shard_columns=POSITION_COLUMNS)
    assert (tmp_path / "val.csv").read_text().splitlines()[0].endswith(",file_name,shard,index")
    assert read_manifest(tmp_path, "val") == rows
