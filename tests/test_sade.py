"""SADE's test-agnostic test sets (subsets of ImageNet-LT's test): built only when asked for,
hard links to test's files within OUT where the filesystem allows; `--layout lists` with
ImageNet-LT's lists (test and SADE's at the very same paths; flat val paths accepted)."""
from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from ltextract.benchmarks import Variant, get
from ltextract.synth.archives import make_benchmark_dir
from ltextract.synth.lists import read_lists
from lt_util import error_line, out_files, run_cli, with_split

INLT = get("imagenet_lt")
SADE = INLT.split_names[3:]


@pytest.fixture(scope="module")
def manual(tmp_path_factory) -> Path:
    """`ltextract synth`'s ImageNet-LT dir: the three lists, SADE's eleven, the two tars."""
    folder = tmp_path_factory.mktemp("sade") / "manual"
    make_benchmark_dir(folder, INLT, classes=8, seed=4)
    return folder


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(manual, out, env, *extra, lists=None):
    return run_cli("build", "--manual-dir", manual, "--splits-dir", lists or manual, "--out", out,
                   "--json", *extra, env=env)


def summary(r) -> dict:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["splits"]


def test_synth_makes_sade_lists_as_subsets_of_test(manual):
    lists = read_lists(manual, INLT)
    assert set(lists) == set(INLT.split_names)
    test = set(lists["test"])
    assert all(set(lists[s]) <= test for s in SADE)
    assert set(lists["uniform"]) == test and lists["uniform"] != lists["test"]  # reordered
    per_class = {s: [sum(ln.cls == c for ln in lists[s]) for c in sorted({ln.cls for ln in test})]
                 for s in ("forward50", "backward50")}
    assert sorted(per_class["forward50"]) == sorted(per_class["backward50"]) and per_class["forward50"] != \
        per_class["backward50"]


def test_sade_splits_only_when_asked(manual, tmp_path, env):
    splits = summary(build(manual, tmp_path / "out", env))
    assert list(splits) == ["train", "val", "test"]


def test_sade_splits_are_hard_links_to_test(manual, tmp_path, env):
    out = tmp_path / "out"
    splits = summary(build(manual, out, env, "--split", "test", "--split", "forward50", "--split", "uniform"))
    assert list(splits) == ["test", "forward50", "uniform"]
    lists = read_lists(manual, INLT)
    for split in ("forward50", "uniform"):
        rows = list(csv.DictReader((out / f"{split}.csv").open()))
        assert [(r["path"], int(r["label"])) for r in rows] == [
            (f"{split}/{ln.cls}/{ln.file}", ln.label) for ln in lists[split]]
        for row in rows:
            mine, tests = (out / row["path"]).stat(), (out / "test" / row["path"].split("/", 1)[1]).stat()
            assert mine.st_ino == tests.st_ino and mine.st_nlink >= 2  # the same bytes, stored once
        assert splits[split]["files"] == len(lists[split])
    meta = json.loads((out / "ltextract.json").read_text())["splits"]["uniform"]
    assert (meta["source"], meta["link"]) == ("split", "hardlink-or-copy")
    assert run_cli("verify", out, env=env).returncode == 0
    again = summary(build(manual, out, env, "--split", "test", "--split", "forward50", "--split", "uniform"))
    assert all(s["copied"] == 0 and s["kept"] == s["files"] for s in again.values())


def test_sade_split_added_later_reads_no_source(manual, tmp_path, env):
    """With test in OUT, a SADE split needs no archive at all: it is made from OUT."""
    out = tmp_path / "out"
    summary(build(manual, out, env, "--split", "test"))
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    splits = summary(build(nothing, out, env, "--split", "backward10", lists=manual))
    assert splits["backward10"]["files"] > 0
    for p in (out / "backward10").rglob("*.JPEG"):
        assert p.stat().st_ino == (out / "test" / p.relative_to(out / "backward10")).stat().st_ino
    assert run_cli("verify", out, env=env).returncode == 0


def test_sade_split_without_test_is_read_from_the_val_tar(manual, tmp_path, env):
    out = tmp_path / "out"
    summary(build(manual, out, env, "--split", "forward10"))
    assert not (out / "test").exists()
    reference = tmp_path / "ref"
    summary(build(manual, reference, env, "--split", "test", "--split", "forward10"))
    assert out_files(out / "forward10") == out_files(reference / "forward10")
    assert (out / "forward10.csv").read_bytes() == (reference / "forward10.csv").read_bytes()


def test_no_hard_links_copies_with_one_notice(manual, tmp_path, monkeypatch, capsys):
    """A filesystem without hard links (FAT, some FUSE): the files are copies from test's."""
    import ltextract

    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    ltextract.build(out, manual, splits_dir=manual, splits=("test",), quiet=True, workers=1)

    def no_link(*args, **kw):
        raise OSError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(os, "link", no_link)
    notices = []
    from ltextract.formats import links
    real = links.Placer.__init__
    monkeypatch.setattr(links.Placer, "__init__", lambda self, mode, notice: real(self, mode, notices.append))
    ltextract.build(out, manual, splits_dir=manual, splits=("forward5",), quiet=True, workers=1)
    assert len(notices) == 1 and "hard links are not possible here" in notices[0]
    for p in (out / "forward5").rglob("*.JPEG"):
        twin = out / "test" / p.relative_to(out / "forward5")
        assert p.stat().st_ino != twin.stat().st_ino and p.read_bytes() == twin.read_bytes()
    assert ltextract.verify(out).ok


def test_layout_lists_puts_sade_at_tests_paths(manual, tmp_path, env):
    out = tmp_path / "out"
    splits = summary(build(manual, out, env, "--layout", "lists", "--split", "forward25"))
    assert splits["forward25"]["copied"] == splits["forward25"]["files"]
    splits = summary(build(manual, out, env, "--layout", "lists", "--split", "test", "--split", "uniform",
                           "--split", "val"))
    f25 = splits["test"]["kept"]
    assert f25 == summary(build(manual, out, env, "--layout", "lists", "--split", "forward25"))["forward25"]["kept"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [".ltextract", "train", "val"]
    for split in ("test", "uniform", "forward25", "val"):
        data = (manual / f"ImageNet_LT_{split}.txt").read_bytes()
        assert (out / f"ImageNet_LT_{split}.txt").read_bytes() == data  # paths relative to OUT
        assert all((out / line.split()[0]).is_file() for line in data.decode().splitlines())
    assert run_cli("verify", out, env=env).returncode == 0
    assert summary(build(manual, out, env, "--layout", "lists", "--split", "test"))["test"]["copied"] == 0


def flat_lists(manual: Path, dest: Path) -> Path:
    """The test list as LADE and KaihuaTang ship it: `val/<file> <label>`."""
    dest.mkdir()
    text = (manual / "ImageNet_LT_test.txt").read_text()
    (dest / "ImageNet_LT_test.txt").write_text("".join(
        f"val/{p.split('/')[2]} {label}\n" for p, label in (line.split() for line in text.splitlines())))
    return dest


def test_flat_val_lists(manual, tmp_path, env):
    flat = flat_lists(manual, tmp_path / "flat")
    out = tmp_path / "lists"
    r = build(manual, out, env, "--layout", "lists", "--split", "test", lists=flat)
    assert summary(r)["test"]["list"] == {**summary(r)["test"]["list"], "flat": True, "published": False}
    assert (out / "ImageNet_LT_test.txt").read_bytes() == (flat / "ImageNet_LT_test.txt").read_bytes()
    assert {p.parent.name for p in (out / "val").iterdir()} == {"val"} and all(
        p.is_file() for p in (out / "val").iterdir())  # flat, as the list says
    assert run_cli("verify", out, env=env).returncode == 0
    nested, splits_out = tmp_path / "nested", tmp_path / "splits"
    summary(build(manual, nested, env, "--split", "test"))
    summary(build(manual, splits_out, env, "--split", "test", lists=flat))  # wnid folders from the labels
    assert out_files(splits_out / "test") == out_files(nested / "test")
    assert (splits_out / "test.csv").read_bytes() == (nested / "test.csv").read_bytes()
    files = {f"val/{p.name}": p.read_bytes() for p in (out / "val").iterdir()}
    assert files == {f"val/{p.name}": p.read_bytes() for p in (nested / "test").rglob("*.JPEG")}
    (out / "test.csv").write_text((out / "test.csv").read_text().replace("val/ILSVRC", "val/x/ILSVRC", 1))
    r = run_cli("verify", out, env=env)
    assert r.returncode == 1 and "path does not match val/<file>" in r.stderr, r.stderr


def test_a_published_variant_is_recorded_as_published(tmp_path, monkeypatch):
    """A list equal to a pinned variant (the flat test list) counts as published, is checked
    against the published totals, and is recorded under the variant's name."""
    import ltextract
    from ltextract.benchmarks import imagenet_lt
    from ltextract.synth.archives import ilsvrc_around
    from ltextract.synth.lists import Line

    lines = {"test": [Line("val", w, f"ILSVRC2012_val_{i + 1:08d}.JPEG", i) for i, w in enumerate(INLT.classes)]}
    manual = tmp_path / "manual"
    manual.mkdir()
    ilsvrc_around(manual, lines)
    data = "".join(ln.render(flat=True) for ln in lines["test"]).encode()
    (manual / "ImageNet_LT_test.txt").write_bytes(data)
    spec = INLT.split("test")
    pin = replace(spec.pin, lines=1000, per_class=(1, 1),
                  variants=(Variant("flat val paths", len(data), hashlib.sha256(data).hexdigest()),))
    monkeypatch.setattr(imagenet_lt, "IMAGENET_LT", with_split(replace(spec, pin=pin)))
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    got = ltextract.build(tmp_path / "out", manual, splits_dir=manual, splits=("test",), quiet=True, workers=1)
    assert got["splits"]["test"]["list"] == {
        "source": str(manual / "ImageNet_LT_test.txt"), "sha256": hashlib.sha256(data).hexdigest(),
        "published": True, "canonical_sha256": hashlib.sha256(data).hexdigest(), "flat": True,
        "variant": "flat val paths"}
    assert ltextract.verify(tmp_path / "out").ok  # the totals re-checked from the manifest
    (manual / "ImageNet_LT_test.txt").write_bytes(data.replace(b"_00000001.JPEG", b"_00000002.JPEG"))
    with pytest.raises(ltextract.LtError, match="duplicate of line 1"):
        ltextract.build(tmp_path / "out2", manual, splits_dir=manual, splits=("test",), quiet=True)


def test_layout_lists_train_and_val_share_the_train_folder(manual, tmp_path, env):
    out = tmp_path / "out"
    summary(build(manual, out, env, "--layout", "lists"))
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [".ltextract", "train", "val"]
    rows = {s: list(csv.DictReader((out / f"{s}.csv").open())) for s in ("train", "val", "test")}
    assert all(r["path"].startswith("train/") for s in ("train", "val") for r in rows[s])
    assert all(r["path"].startswith("val/") for r in rows["test"])
    assert run_cli("verify", out, env=env).returncode == 0
    r = run_cli("build", "--manual-dir", manual, "--splits-dir", manual, "--out", out, env=env)
    assert "holds a --layout lists build" in error_line(r.stderr)
