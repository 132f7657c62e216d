"""--format tfds: equal to TensorFlow Datasets' own imagenet_lt build of the same tars, read back
with tensorflow-datasets (tfds.load, builder_from_directory, data_source), verified, resumed."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter
from tensorflow_datasets.core.utils import shard_utils
from tensorflow_datasets.proto import tf_example_pb2, tf_feature_pb2

from ltextract.formats import tfds as tfds_format
from ltextract.formats import tfrecord
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, run_cli, tar_bytes

ROOT = Path(__file__).resolve().parent.parent
TFDS_BUILDER = ROOT / "bench" / "tfds_builder.py"
DRIVER = Path(__file__).parent / "faults" / "driver.py"
SPLITS = {"train": "train", "val": "validation", "test": "test"}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("tfds") / "manual", SynthSpec(classes=20, seed=0))


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(syn, out, env, *extra, fmt="tfds"):
    return run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                   "--format", fmt, *extra, env=env)


def version(out: Path) -> Path:
    return out / "imagenet_lt" / "1.0.0"


def shard_paths(folder: Path, split: str, fmt: str) -> list[Path]:
    return sorted(folder.glob(f"imagenet_lt-{split}.{fmt}-*"))


def read_records(path: Path, fmt: str) -> list[bytes]:
    """With the real readers: TensorFlow's TFRecord reader (it checks both CRCs) or ArrayRecord's."""
    if fmt == "array_record":
        reader = ArrayRecordReader(str(path))
        try:
            return reader.read_all()
        finally:
            reader.close()
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(str(path))]


def parsed(record: bytes) -> tuple[str, bytes, int]:
    feature = tf_example_pb2.Example.FromString(record).features.feature
    return (feature["file_name"].bytes_list.value[0].decode(), feature["image"].bytes_list.value[0],
            feature["label"].int64_list.value[0])


def canonical(record: bytes) -> bytes:
    """A record as SerializeToString(deterministic=True) writes it (TFDS's own map order varies)."""
    return tf_example_pb2.Example.FromString(record).SerializeToString(deterministic=True)


def listed(syn) -> dict[str, dict[str, tuple[str, int]]]:
    """split -> file name -> (OUT-relative path, label), from the lists."""
    out = {}
    for split in SPLITS:
        rows = [line.split() for line in syn.lists[split].read_text().splitlines()]
        out[split] = {p.rsplit("/", 1)[1]: (f"{split}/{p.split('/', 1)[1]}", int(label)) for p, label in rows}
    return out


def test_record_bytes_equal_the_protobuf_librarys_deterministic_serialization():
    F = tf_feature_pb2
    for size in (0, 1, 127, 128, 16383, 16384, 2**21 + 5):
        for label in (0, 127, 128, 999):
            for name in ("a.JPEG", "n01440764_190.JPEG", "é" * 70):
                image = bytes(range(256)) * (size // 256) + bytes(size % 256)
                example = tf_example_pb2.Example(features=F.Features(feature={
                    "file_name": F.Feature(bytes_list=F.BytesList(value=[name.encode()])),
                    "image": F.Feature(bytes_list=F.BytesList(value=[image])),
                    "label": F.Feature(int64_list=F.Int64List(value=[label]))}))
                want = example.SerializeToString(deterministic=True)
                head, tail = tfrecord.example_parts(name, size, label)
                assert head + image + tail == want
                assert tfrecord.record_length(name, size, label) == len(want)
                assert tfrecord.parse_example(example.SerializeToString()) == (name, image, label)


def test_shard_rule_equals_tfds():
    sizes = [0, 1, 64 << 20, (128 << 20) - 1, 128 << 20, 10 << 30, 12_500 << 20, 70 << 30, (1 << 40) + 5]
    for total in sizes:
        for examples in (1, 2, 3, 7, 1023, 1024, 5000, 115_846, 2_000_000):
            want = shard_utils.ShardConfig.calculate_number_shards(total, examples)
            assert tfds_format.shard_count(total, examples) == want, (total, examples)
            assert tfds_format.shard_bounds(examples, want) == \
                list(shard_utils.get_shard_boundaries(examples, want)), (total, examples)
    assert tfds_format.shard_bounds(10, 4) == [2, 5, 8, 10]  # round half to even: 2.5 -> 2, 7.5 -> 8


@pytest.mark.parametrize("fmt", ["tfrecord", "array_record"])
def test_equal_to_tfds_own_build_of_the_same_tars(tmp_path, syn, env, fmt):
    """Same files, shards, features, labels file and dataset_info.json; the same examples in
    the same order, byte for byte once TFDS's map order is made deterministic; whole shard files
    byte-identical once TFDS's records are rewritten so by the format's own writer. TFDS's test
    labels come from its bundled ILSVRC2012 ground truth by position, ours from the list."""
    ours = tmp_path / "ours"
    r = build(syn, ours, env, "--tfds-file-format", fmt, "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)["splits"]
    ref = tmp_path / "ref"
    done = subprocess.run([sys.executable, str(TFDS_BUILDER), "--manual-dir", str(syn.manual_dir),
                           "--data-dir", str(ref), "--file-format", fmt],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = version(ours), version(ref)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in ("features.json", "label.labels.txt"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    info, ref_info = (json.loads((d / "dataset_info.json").read_text()) for d in (a, b))
    lists = listed(syn)
    for split, name in SPLITS.items():
        ours_recs = [r for p in shard_paths(a, name, fmt) for r in read_records(p, fmt)]
        ref_recs = [r for p in shard_paths(b, name, fmt) for r in read_records(p, fmt)]
        entry = next(s for s in info["splits"] if s["name"] == name)
        assert entry["numBytes"] == str(sum(map(len, ours_recs)))
        assert [int(n) for n in entry["shardLengths"]] == [len(read_records(p, fmt)) for p in shard_paths(a, name, fmt)]
        ours_ex, ref_ex = [parsed(r) for r in ours_recs], [parsed(r) for r in ref_recs]
        assert [x[:2] for x in ours_ex] == [x[:2] for x in ref_ex]  # names and images, in order
        assert [x[2] for x in ours_ex] == [lists[split][x[0]][1] for x in ours_ex]  # labels: the list's
        expected = tar_bytes(syn)
        assert all(image == expected[lists[split][name_][0]] for name_, image, _ in ours_ex)
        record = summary[split]
        assert record["shards"] == [{"name": f"imagenet_lt/1.0.0/{p.name}", "examples": len(read_records(p, fmt))}
                                    for p in shard_paths(a, name, fmt)]
        if split == "test":  # TFDS labels by position in the val tar: wrong for a synthetic tar
            assert [x[2] for x in ref_ex] != [x[2] for x in ours_ex]
            continue
        assert ours_recs == [canonical(r) for r in ref_recs]
        for mine, theirs in zip(shard_paths(a, name, fmt), shard_paths(b, name, fmt)):
            rewritten = tmp_path / f"{theirs.name}.rewritten"
            write_records(rewritten, [canonical(r) for r in read_records(theirs, fmt)], fmt)
            assert mine.read_bytes() == rewritten.read_bytes()
    ref_test = next(s for s in ref_info["splits"] if s["name"] == "test")
    ours_test = next(s for s in info["splits"] if s["name"] == "test")
    assert ours_test["shardLengths"] == ref_test["shardLengths"]
    ref_test["numBytes"] = ours_test["numBytes"]  # labels of other lengths, see above
    assert info == ref_info
    assert (a / "dataset_info.json").read_text() == json.dumps(info, indent=2, sort_keys=True)
    assert run_cli("verify", ours, env=env).returncode == 0


def write_records(path: Path, records: list[bytes], fmt: str) -> None:
    if fmt == "array_record":
        writer = ArrayRecordWriter(str(path), "group_size:1")  # as TFDS writes them
        for r in records:
            writer.write(r)
        writer.close()
        return
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in records:
            writer.write(r)


def test_tfds_reads_it_with_no_builder_run(tmp_path, syn, env):
    import tensorflow_datasets as tfds

    out, ar = tmp_path / "out", tmp_path / "ar"
    assert build(syn, out, env).returncode == 0
    assert build(syn, ar, env, "--tfds-file-format", "array_record").returncode == 0
    lists, expected = listed(syn), tar_bytes(syn)
    builder = tfds.builder_from_directory(str(version(out)))
    assert builder.info.features["label"].names[:3] == ["n01440764", "n01443537", "n01484850"]
    assert builder.info.features["label"].num_classes == 1000
    for split, name in SPLITS.items():
        want = sorted(lists[split], key=lambda f: hashlib.md5((name + f).encode()).digest())
        assert builder.info.splits[name].num_examples == len(want)
        raw = tfds.load("imagenet_lt", data_dir=str(out), split=name, download=False,
                        decoders={"image": tfds.decode.SkipDecoding()})
        got = [(x["file_name"].numpy().decode(), x["image"].numpy(), int(x["label"].numpy())) for x in raw]
        assert [g[0] for g in got] == want  # TFDS's order
        for file, image, label in got:
            path, listed_label = lists[split][file]
            assert (image, label) == (expected[path], listed_label)
        source = tfds.data_source("imagenet_lt", data_dir=str(ar), split=name, download=False,
                                  decoders={"image": tfds.decode.SkipDecoding()})
        assert len(source) == len(want)
        assert [(x["file_name"].decode(), x["image"], int(x["label"])) for x in source] == got
    decoded = next(iter(tfds.load("imagenet_lt", data_dir=str(out), split="train", download=False)))
    assert decoded["image"].shape[-1] == 3


def test_partial_builds_list_only_finished_splits(tmp_path, syn, env):
    import tensorflow_datasets as tfds

    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "test").returncode == 0
    info = json.loads((version(out) / "dataset_info.json").read_text())
    assert [s["name"] for s in info["splits"]] == ["test"]
    assert info["downloadSize"] == str(4_658_674 + 804_172)  # the published lists TFDS downloads
    assert build(syn, out, env, "--split", "train").returncode == 0
    info = json.loads((version(out) / "dataset_info.json").read_text())
    assert [s["name"] for s in info["splits"]] == ["train", "test"]
    assert info["downloadSize"] == str(syn.lists["train"].stat().st_size + 804_172)
    assert set(tfds.builder_from_directory(str(version(out))).info.splits) == {"train", "test"}
    assert run_cli("verify", out, env=env).returncode == 0


def test_manifest_says_where_each_example_is(tmp_path, syn, env):
    import csv

    out = tmp_path / "out"
    assert build(syn, out, env, "--split", "val").returncode == 0
    rows = list(csv.DictReader((out / "val.csv").open()))
    records = read_records(next(version(out).glob("imagenet_lt-validation.*")), "tfrecord")
    for row in rows:
        assert row["shard"].startswith("imagenet_lt/1.0.0/imagenet_lt-validation.tfrecord-")
        assert parsed(records[int(row["index"])])[0] == row["file_name"]
    assert sorted(int(r["index"]) for r in rows) == list(range(len(records)))


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("fmt", ["tfrecord", "array_record"])
def test_verify_finds_damage_and_a_rebuild_repairs_it(tmp_path, syn, env, fmt):
    out = tmp_path / "out"
    assert build(syn, out, env, "--tfds-file-format", fmt).returncode == 0
    shard = shard_paths(version(out), "train", fmt)[0]
    st = shard.stat()
    flip(shard, st.st_size // 3)
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns))  # as if untouched: only verify can tell
    (version(out) / "notes.txt").write_text("x")
    info = version(out) / "dataset_info.json"
    info.write_text(info.read_text().replace('"numBytes"', '"numBytes" ', 1))
    r = run_cli("verify", out, "--json", env=env)
    assert r.returncode == 1
    problems = {p["path"]: p["problem"] for p in json.loads(r.stdout)["problems"]}
    assert any(path.startswith(f"imagenet_lt/1.0.0/{shard.name}") for path in problems), problems
    assert "stray" in problems["imagenet_lt/1.0.0/notes.txt"]
    assert "differs" in problems["imagenet_lt/1.0.0/dataset_info.json"]
    (version(out) / "notes.txt").unlink()
    shard.unlink()
    r = build(syn, out, env, "--tfds-file-format", fmt, "--json")
    assert r.returncode == 0, r.stderr
    splits = json.loads(r.stdout)["splits"]
    assert (splits["train"]["copied_shards"], splits["val"]["kept_shards"]) == (1, 1)
    assert run_cli("verify", out, env=env).returncode == 0


@pytest.mark.parametrize("kill", ["example_read:+7", "journal_add:+2"])
def test_killed_build_leaves_no_part_shard_and_a_rerun_keeps_finished_ones(tmp_path, syn, env, kill):
    """Killed while the val shard is half written (it is at a temporary name), or once it is
    whole but not yet journaled (it is rewritten): train's shard, finished, is kept and listed."""
    out = tmp_path / "out"
    args = ["build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out, "-q",
            "--workers", "1", "--format", "tfds"]
    target, plus = kill.split(":+")
    spec = f"kill:{target}:{len(listed(syn)['train']) + int(plus)}"
    r = subprocess.run([sys.executable, str(DRIVER), spec, "--", *map(str, args)], capture_output=True,
                       text=True, env={**os.environ, **env}, timeout=120)
    assert r.returncode == -9, r.stderr
    finals = sorted(p.name for p in version(out).glob("imagenet_lt-*"))
    val = "imagenet_lt-validation.tfrecord-00000-of-00001"
    if target == "example_read":
        assert finals == ["imagenet_lt-train.tfrecord-00000-of-00001"]
        assert (version(out) / f".{val}.ltx-part").exists()
    else:
        assert finals == ["imagenet_lt-train.tfrecord-00000-of-00001", val]
    info = json.loads((version(out) / "dataset_info.json").read_text())
    assert [s["name"] for s in info["splits"]] == ["train"]
    again = build(syn, out, env, "--json")
    assert again.returncode == 0, again.stderr
    splits = json.loads(again.stdout)["splits"]
    assert [splits[s]["kept_shards"] for s in SPLITS] == [1, 0, 0]
    assert not list(out.rglob("*.ltx-part"))
    assert run_cli("verify", out, env=env).returncode == 0


def test_options_and_outs_that_do_not_fit(tmp_path, syn, env):
    out = tmp_path / "out"
    r = build(syn, out, env, "--shard-size", "1GB")
    assert r.returncode == 2 and "--shard-size does not apply to --format tfds" in r.stderr
    r = build(syn, out, env, "--tfds-file-format", "array_record", fmt="hf")
    assert r.returncode == 2 and "--tfds-file-format applies to --format tfds" in r.stderr
    r = build(syn, out, env, "--strategy", "stream")
    assert r.returncode == 2 and "use --strategy seek" in r.stderr
    assert build(syn, out, env, "--split", "val").returncode == 0
    r = build(syn, out, env, "--split", "test", "--tfds-file-format", "array_record")
    assert r.returncode == 1 and "holds a --tfds-file-format tfrecord build" in error_line(r.stderr)
    foreign = tmp_path / "foreign"
    version(foreign).mkdir(parents=True)
    (version(foreign) / "dataset_info.json").write_text("{}")
    r = build(syn, foreign, env, "--split", "val")
    assert r.returncode == 1 and "TFDS build ltextract did not write" in error_line(r.stderr)
    assert (version(foreign) / "dataset_info.json").read_text() == "{}"


def test_a_missing_extra_is_one_line(tmp_path, syn, env):
    hide = "import sys; sys.modules['google_crc32c'] = None; from ltextract.cli import main; main()"
    r = subprocess.run([sys.executable, "-c", hide, "build", "--manual-dir", str(syn.manual_dir),
                        "--splits-dir", str(syn.manual_dir), "--out", str(tmp_path / "out"), "--format", "tfds"],
                       capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert r.returncode == 1 and "pip install 'ltextract[tfds]'" in error_line(r.stderr)
    assert not (tmp_path / "out").exists()


@pytest.mark.heavy
def test_several_shards_equal_tfds_own(tmp_path):
    """Train past 128 MiB: two shards of 104 and 105 examples (round(104.5) = 104, half to even),
    as TFDS cuts them."""
    syn = make_manual_dir(tmp_path / "manual", SynthSpec(classes=20, seed=0, payload=700_000,
                                                         unused_per_class=0))
    env = {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}
    ours, ref = tmp_path / "ours", tmp_path / "ref"
    assert build(syn, ours, env, "--split", "train").returncode == 0
    done = subprocess.run([sys.executable, str(TFDS_BUILDER), "--manual-dir", str(syn.manual_dir),
                           "--data-dir", str(ref)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    mine, theirs = shard_paths(version(ours), "train", "tfrecord"), shard_paths(version(ref), "train", "tfrecord")
    assert [p.name for p in mine] == [p.name for p in theirs] == \
        [f"imagenet_lt-train.tfrecord-0000{i}-of-00002" for i in range(2)]
    assert [len(read_records(p, "tfrecord")) for p in mine] == [104, 105]
    for a, b in zip(mine, theirs):
        assert read_records(a, "tfrecord") == [canonical(r) for r in read_records(b, "tfrecord")]
    ref_info = json.loads((version(ref) / "dataset_info.json").read_text())
    info = json.loads((version(ours) / "dataset_info.json").read_text())
    assert info["splits"][0] == ref_info["splits"][0]
    assert run_cli("verify", ours, env=env).returncode == 0
