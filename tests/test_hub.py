"""ImageNet as the Hugging Face Hub ships it: tar.gz shards and parquet shards. A build from
either gives the same files, bytes and manifests as a build from the tars of the same images;
bad shards answer in one line naming the shard. The parquet files are written and read back with
the real pyarrow."""
from __future__ import annotations

import filecmp
import gzip
import json
import os
import shutil
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ltextract
from ltextract.benchmarks.classes import label_of, wnids
from ltextract.errors import UsageError
from ltextract.sources import detect, hub
from ltextract.sources.hub_targz import Inflated, inflate_library
from ltextract.synth import SynthSpec, make_manual_dir
from ltextract.synth.hub import HubSpec, make_hub_dir
from lt_util import error_line, run_cli, tar_bytes

SPLITS = ("train", "val", "test")
SHAPES = ("parquet", "tar.gz")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """The synthetic tars (odd headers, prefixes, PNG and CMYK images, extras), the same images
    in both Hub shapes, and a build from the tars to compare with."""
    root = tmp_path_factory.mktemp("hub")
    os.environ.setdefault("LTEXTRACT_CACHE_DIR", str(root / "cache"))
    syn = make_manual_dir(root / "tars", SynthSpec(classes=12, seed=3, extras=True, prefix="wnid/",
                                                    long_names=True))
    hubs = {shape: make_hub_dir(syn.train_tar, syn.val_tar, syn.lists["test"], root / shape,
                                HubSpec(shape=shape, seed=5, row_group=7,
                                        prefix="./" if shape == "tar.gz" else ""))
            for shape in SHAPES}
    ltextract.build(root / "from-tars", syn.manual_dir, splits_dir=syn.manual_dir, quiet=True)
    return syn, hubs, root / "from-tars"


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def copy_shards(pristine, shape: str, dest: Path) -> Path:
    """A manual dir of its own: the shards in data/, the lists beside."""
    syn, hubs, _ = pristine
    shutil.copytree(hubs[shape].data_dir, dest / "data")
    for path in syn.lists.values():
        shutil.copy(path, dest)
    return dest


def build(manual: Path, out: Path, env: dict, *extra: object):
    return run_cli("build", "--manual-dir", manual, "--splits-dir", manual, "--out", out, "-q",
                   "--json", *extra, env=env)


def same_output(a: Path, b: Path) -> None:
    """The same files with the same bytes, the same manifests and lists."""
    for split in SPLITS:
        files_a = sorted(p.relative_to(a).as_posix() for p in (a / split).rglob("*") if p.is_file())
        files_b = sorted(p.relative_to(b).as_posix() for p in (b / split).rglob("*") if p.is_file())
        assert files_a == files_b
        _, mismatch, errors = filecmp.cmpfiles(a, b, files_a, shallow=False)
        assert not mismatch and not errors
        for name in (f"{split}.csv", f"ImageNet_LT_{split}.txt"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("shape", SHAPES)
def test_a_build_from_either_hub_shape_equals_one_from_the_tars(pristine, shape, tmp_path, env):
    syn, hubs, from_tars = pristine
    manual = copy_shards(pristine, shape, tmp_path / "manual")
    r = build(manual, tmp_path / "out", env)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    same_output(from_tars, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "ltextract.json").read_text())
    assert {meta["splits"][s]["source"] for s in SPLITS} == {f"hub-{shape}"}
    assert summary["strategy"] == {"train": "seek" if shape == "parquet" else "stream",
                                   "val": "seek" if shape == "parquet" else "stream"}
    want = tar_bytes(syn)  # read with tarfile: independent of ltextract's readers
    assert {p: (tmp_path / "out" / p).read_bytes() for p in want} == want
    assert run_cli("verify", tmp_path / "out", env=env).returncode == 0


@pytest.mark.parametrize("shape", SHAPES)
def test_sources_named_as_a_folder_or_a_glob(pristine, shape, tmp_path, env):
    syn, hubs, from_tars = pristine
    data = hubs[shape].data_dir
    train = data / ("train-*.parquet" if shape == "parquet" else "train_images_*.tar.gz")
    r = run_cli("build", "--train-source", train, "--val-source", data, "--splits-dir",
                syn.manual_dir, "--out", tmp_path / "out", "-q", env=env)
    assert r.returncode == 0, r.stderr
    same_output(from_tars, tmp_path / "out")


def test_a_build_mixing_a_hub_shape_and_a_tar(pristine, tmp_path, env):
    syn, hubs, from_tars = pristine
    r = run_cli("build", "--train-source", hubs["tar.gz"].data_dir, "--val-source", syn.val_tar,
                "--splits-dir", syn.manual_dir, "--out", tmp_path / "out", "-q", env=env)
    assert r.returncode == 0, r.stderr
    same_output(from_tars, tmp_path / "out")
    meta = json.loads((tmp_path / "out" / "ltextract.json").read_text())
    assert [meta["splits"][s]["source"] for s in SPLITS] == ["hub-tar.gz", "hub-tar.gz", "tar"]


def test_detection_in_the_manual_dir_or_its_data_folder(pristine, tmp_path):
    _, hubs, _ = pristine
    for shape, kind in (("parquet", "hub-parquet"), ("tar.gz", "hub-tar.gz")):
        assert detect.detect(hubs[shape].data_dir.parent, "train").kind == kind
        assert detect.detect(hubs[shape].data_dir, "val").kind == kind
        src = detect.detect(hubs[shape].data_dir, "train")
        assert list(src.shards) == hubs[shape].shards["train"]  # test shards never read
    both = tmp_path / "both"
    shutil.copytree(hubs["tar.gz"].data_dir, both)
    for f in hubs["parquet"].data_dir.iterdir():
        shutil.copy(f, both)
    assert detect.detect(both, "train").kind == "hub-parquet"  # no inflating
    with pytest.raises(ltextract.LtError, match=r"nor the Hugging Face Hub's train-\*\.parquet"):
        detect.detect(tmp_path, "train")


def test_hub_names_map_back_to_ilsvrc_names():
    assert hub.original_name(b"n01440764_10026_n01440764.JPEG") == (b"n01440764_10026.JPEG", b"n01440764")
    assert hub.original_name(b"./train/ILSVRC2012_val_00000293_n01440764.JPEG") == \
        (b"ILSVRC2012_val_00000293.JPEG", b"n01440764")
    for other in (b"ILSVRC2012_test_00000001.JPEG", b"n01440764_10026.JPEG", b"README", b"_n01440764.JPEG"):
        assert hub.original_name(other) == (b"", b"")


def test_the_synthetic_parquet_is_the_hubs_layout(pristine):
    """Read back with pyarrow: schema, row groups, compression, labels = sorted-wnid index."""
    syn, hubs, _ = pristine
    names = wnids()
    rows = 0
    for shard in hubs["parquet"].shards["train"]:
        pf = pq.ParquetFile(shard)
        assert pf.schema_arrow.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
        assert pf.schema_arrow.field("label").type == pa.int64()
        assert json.loads(pf.schema_arrow.metadata[b"huggingface"])["info"]["features"]["image"] == {"_type": "Image"}
        assert pf.metadata.row_group(0).num_rows == 7
        assert pf.metadata.row_group(0).column(0).compression == "SNAPPY"
        table = pf.read()
        for image, label in zip(table.column("image").to_pylist(), table.column("label").to_pylist()):
            assert image["path"].endswith(f"_{names[label]}.JPEG")
        rows += table.num_rows
    assert rows > sum(syn.train_counts.values())  # every train image, not only the listed ones


# --- bad shards ----------------------------------------------------------------------------

def test_a_truncated_targz_keeps_the_files_before_the_cut_and_a_rerun_finishes(pristine, tmp_path, env):
    manual = copy_shards(pristine, "tar.gz", tmp_path / "manual")
    shard = manual / "data" / "train_images_2.tar.gz"
    whole = shard.read_bytes()
    shard.write_bytes(whole[:len(whole) * 2 // 3])
    r = build(manual, tmp_path / "out", env)
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert "train_images_2.tar.gz is truncated: its gzip data stops at byte" in line
    assert "listed files that lie before the cut are extracted and kept" in line
    assert not (tmp_path / "out" / "train.csv").exists()  # no manifest for a split not whole
    assert (tmp_path / "out" / "test.csv").exists()  # the val shard was whole
    shard.write_bytes(whole)
    r = build(manual, tmp_path / "out", env)
    assert r.returncode == 0, r.stderr
    train = json.loads(r.stdout)["splits"]["train"]
    assert train["kept_rechecked"] > 0 and train["copied"] < train["files"]
    same_output(pristine[2], tmp_path / "out")


@pytest.mark.parametrize("where,needle", [(-6, "incorrect data check"), (-2, "incorrect length check")])
def test_a_bad_gzip_crc_or_length_is_one_error_line(pristine, tmp_path, env, where, needle):
    """The tar inside ends before the gzip trailer: it is inflated and checked all the same."""
    manual = copy_shards(pristine, "tar.gz", tmp_path / "manual")
    shard = manual / "data" / "val_images.tar.gz"
    data = bytearray(shard.read_bytes())
    data[where] ^= 0x40
    shard.write_bytes(bytes(data))
    line = error_line(build(manual, tmp_path / "out", env).stderr)
    assert f"{shard} is corrupt:" in line and needle in line


@pytest.mark.parametrize("shape,gone,needle", [
    ("parquet", "train-00001-of-00003.parquet", "train-00001-of-00003.parquet is missing (2 of the set's 3"),
    ("tar.gz", "train_images_3.tar.gz", "train_images_3.tar.gz is missing (the Hub's train set is"),
])
def test_a_shard_missing_from_its_set(pristine, tmp_path, env, shape, gone, needle):
    manual = copy_shards(pristine, shape, tmp_path / "manual")
    (manual / "data" / gone).unlink()
    r = build(manual, tmp_path / "out", env)
    assert r.returncode == 1 and needle in error_line(r.stderr)
    assert not (tmp_path / "out" / "train").exists()


@pytest.mark.parametrize("damage", ["truncated", "empty", "lfs"])
def test_a_corrupt_parquet_footer_is_one_error_line(pristine, tmp_path, env, damage):
    manual = copy_shards(pristine, "parquet", tmp_path / "manual")
    shard = manual / "data" / "validation-00001-of-00002.parquet"
    text = {"truncated": shard.read_bytes()[:-100], "empty": b"",
            "lfs": b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 479922797\n"}
    shard.write_bytes(text[damage])
    r = build(manual, tmp_path / "out", env)
    assert r.returncode == 1
    line = error_line(r.stderr)
    assert f"{shard} is not a readable parquet file" in line


def test_a_parquet_shard_of_another_schema(pristine, tmp_path, env):
    manual = copy_shards(pristine, "parquet", tmp_path / "manual")
    shard = manual / "data" / "train-00000-of-00003.parquet"
    pq.write_table(pa.table({"image": pa.array([b"x"]), "label": pa.array([1])}), shard)
    line = error_line(build(manual, tmp_path / "out", env).stderr)
    assert f"{shard} is not a shard of the Hub's ImageNet" in line and "image: binary" in line


@pytest.mark.parametrize("shape", SHAPES)
def test_a_listed_file_no_shard_holds(pristine, tmp_path, env, shape):
    manual = copy_shards(pristine, shape, tmp_path / "manual")
    train = manual / "ImageNet_LT_train.txt"
    first = train.read_text().splitlines()[0]
    folder, label = first.rsplit("/", 1)[0], first.split()[1]
    train.write_text(train.read_text() + f"{folder}/{folder[-9:]}_999999.JPEG {label}\n")
    r = build(manual, tmp_path / "out", env)
    line = error_line(r.stderr)
    assert "1 image(s)" in line and f"{folder[-9:]}_999999.JPEG" in line
    assert f"the {5 if shape == 'tar.gz' else 3} hub-{shape} shard(s) in" in line


@pytest.mark.parametrize("shape", SHAPES)
def test_a_wnid_the_hub_disagrees_with(pristine, tmp_path, env, shape):
    """The list puts a val image in another class than the Hub's name says: not the same data."""
    manual = copy_shards(pristine, shape, tmp_path / "manual")
    test = manual / "ImageNet_LT_test.txt"
    lines = test.read_text().splitlines()
    path, _ = lines[0].split()
    _, wnid, file = path.split("/")
    other = next(line.split()[0].split("/")[1] for line in lines if f"/{wnid}/" not in line)
    label = label_of()[other]
    test.write_text("\n".join([f"val/{other}/{file} {label}"] + lines[1:]) + "\n")
    r = build(manual, tmp_path / "out", env, "--split", "test")
    line = error_line(r.stderr)
    assert f"carries wnid {wnid}, but the list puts {file} in {other}" in line


def test_a_parquet_label_that_is_not_the_wnids_index(pristine, tmp_path, env):
    manual = copy_shards(pristine, "parquet", tmp_path / "manual")
    shard = manual / "data" / "validation-00000-of-00002.parquet"
    table = pq.read_table(shard)
    labels = table.column("label").to_pylist()
    labels[3] = (labels[3] + 1) % 1000
    pq.write_table(table.set_column(1, "label", pa.array(labels, pa.int64())), shard, row_group_size=7)
    line = error_line(build(manual, tmp_path / "out", env).stderr)
    assert f"{shard}: row 3 (" in line and "in the Hub's numbering (the sorted wnids)" in line


# --- the contract every source keeps ---------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_same_shards_keep_finished_files_other_shards_recheck_them(pristine, tmp_path, env, shape):
    manual = copy_shards(pristine, shape, tmp_path / "manual")
    out = tmp_path / "out"
    assert build(manual, out, env).returncode == 0
    again = json.loads(build(manual, out, env).stdout)["splits"]
    assert all(s["copied"] == 0 and s["kept_rechecked"] == 0 and s["kept"] == s["files"] for s in again.values())
    shard = manual / "data" / ("validation-00000-of-00002.parquet" if shape == "parquet" else "val_images.tar.gz")
    shard.write_bytes(shard.read_bytes())  # downloaded again: another mtime
    victim = next((out / "test").rglob("*.JPEG"))
    victim.write_bytes(b"damaged")
    summary = json.loads(build(manual, out, env).stdout)["splits"]
    assert summary["test"]["kept_rechecked"] == summary["test"]["files"] - 1
    assert summary["test"]["copied"] == 1
    assert summary["train"]["kept"] == summary["train"]["files"]  # its shards are the same
    same_output(pristine[2], out)


def test_targz_cannot_seek_and_webdataset_is_refused_with_the_way_round(pristine, tmp_path):
    _, hubs, _ = pristine
    manual = hubs["tar.gz"].data_dir
    with pytest.raises(UsageError, match="gzip has no random access\\) cannot seek"):
        ltextract.build(tmp_path / "o", manual, strategy="seek", splits=("test",))
    for shape in SHAPES:
        with pytest.raises(UsageError, match="build --format folders from them"):
            ltextract.build(tmp_path / "o", hubs[shape].data_dir, format="webdataset", splits=("test",))
    assert not (tmp_path / "o").exists()


def test_synth_cli_writes_the_hub_shapes(tmp_path, env):
    r = run_cli("synth", "--out", tmp_path / "hub", "--classes", "3", "--shape", "hub-tar.gz", env=env)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "hub" / "data").iterdir()) == \
        sorted([f"train_images_{i}.tar.gz" for i in range(5)] + ["val_images.tar.gz", "test_images.tar.gz"])
    assert not (tmp_path / "hub" / "ILSVRC2012_img_train.tar").exists()
    r = build(tmp_path / "hub", tmp_path / "out", env)
    assert r.returncode == 0, r.stderr


# --- the inflating reader --------------------------------------------------------------------

def _libraries() -> list:
    libs = [zlib]
    for name in ("zlib_ng.zlib_ng", "isal.isal_zlib"):
        try:
            libs.append(__import__(name, fromlist=["x"]))
        except ImportError:
            continue
    return libs


@pytest.mark.parametrize("lib", _libraries(), ids=lambda m: m.__name__)
def test_inflated_reads_multi_member_gzip_and_checks_its_end(tmp_path, lib):
    payload = os.urandom(300_000) + bytes(700_000)
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(payload[:123_456]) + gzip.compress(payload[123_456:]) + bytes(1024))
    f = Inflated(path, "x.gz", lib)
    buf, base = f.span(0, 10)
    assert base == 0 and buf[:10] == payload[:10]
    buf, base = f.span(500_000, 500_010)  # what lies before is dropped
    assert base == 500_000 and buf[:10] == payload[500_000:500_010]
    buf, base = f.span(500_005, 1 << 30)
    assert base == 500_005 and buf == payload[500_005:]
    f.finish()
    assert not f.cut
    path.write_bytes(gzip.compress(payload) + b"GARBAGE!")
    with pytest.raises(ltextract.LtError, match="bytes that are not gzip data follow the end"):
        Inflated(path, "x.gz", lib).finish()
    path.write_bytes(gzip.compress(payload)[:-3])  # only the trailer is cut
    f = Inflated(path, "x.gz", lib)
    assert f.span(0, 1 << 30) == (payload, 0)
    f.finish()
    assert "x.gz is truncated: its gzip data stops at byte" in f.cut


def test_the_fastest_inflate_library_installed_is_used():
    assert inflate_library().__name__ in ("zlib_ng.zlib_ng", "isal.isal_zlib")  # the test extra has zlib-ng


@pytest.mark.parametrize("window", [600, 1000, 4096, 50_000])
@pytest.mark.parametrize("fmt", ["gnu", "pax", "ustar"])
def test_the_windowed_walk_finds_what_tarfile_finds(tmp_path, monkeypatch, window, fmt):
    """Members straddle the windows in every way (headers, long-name records, payloads, padding)."""
    import random
    import tarfile

    from ltextract.sources import hub_targz
    from ltextract.synth.tars import Tar, long_name

    rng = random.Random(window)
    tar = Tar(fmt)
    for i in range(60):
        name = f"n{i:08d}_{i}_n{i:08d}.JPEG"
        tar.add(long_name(name, rng, fmt) if i % 7 == 3 else name, [os.urandom(rng.choice((0, 1, 511, 512, 513, 3000)))])
    tar.finish()
    raw = b"".join(bytes(c) for c in tar.chunks)
    path = tmp_path / "t.tar.gz"
    path.write_bytes(gzip.compress(raw))
    with tarfile.open(path) as tf:
        want = [(m.name.lstrip("./").encode(), tf.extractfile(m).read()) for m in tf if m.isreg()]
    monkeypatch.setattr(hub_targz, "WINDOW", window)
    inflated = Inflated(path, "t.tar.gz")
    got = [(name.lstrip(b"./"), bytes(buf[o:o + s]))
           for names, offsets, sizes, buf, _ in hub_targz.walk(inflated, "t.tar.gz")
           for name, o, s in zip(names, offsets, sizes)]
    inflated.finish()
    assert got == want and not inflated.cut
