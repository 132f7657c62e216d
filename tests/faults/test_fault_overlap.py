"""Fault matrix, OUT among the inputs: an OUT that is, contains or lies inside a source (a tar,
its parts, a tree, a folder of class tars) or the splits dir is refused before anything is
written, however the path reaches it (a symlink, a bind mount); sources on read-only storage
still build."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import ltextract
from ltextract.errors import LtError
from ltextract.synth import SynthSpec, make_manual_dir
from fault_util import build, completes, fails
from lt_util import explode, run_cli


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root`: kind, and for files their bytes' sha256 and mtime."""
    found: dict[str, tuple] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder, name)
            st = path.lstat()
            rel = path.relative_to(root).as_posix()
            if path.is_file() and not path.is_symlink():
                found[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)
            else:
                found[rel] = ("other", st.st_mode)
    return found


def refused(r: subprocess.CompletedProcess, relation: str, what: str, path: Path) -> str:
    line = fails(r, f" {relation} the {what} {path}", "choose an --out apart from the inputs")
    return line


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("overlap"), SynthSpec(classes=4, seed=5))


def test_out_is_the_manual_dir_holding_tars_and_lists(syn, tmp_path, env):
    """The first report of issue 16: the lists in the manual dir were overwritten, exit 0."""
    manual = tmp_path / "m"
    shutil.copytree(syn.manual_dir, manual)
    before = snapshot(manual)
    r = run_cli("build", "--manual-dir", manual, "--splits-dir", manual, "--out", manual, env=env)
    refused(r, "contains", "train source", manual / "ILSVRC2012_img_train.tar")
    assert snapshot(manual) == before  # not even OUT/.ltextract


TREE_CASES = {  # OUT relative to the manual dir, the relation, which input, that input
    "OUT is the manual dir": ("", "contains", "train source", "train"),
    "OUT is the train tree": ("train", "is", "train source", "train"),
    "OUT in a class folder": ("train/n01440764/out", "lies inside", "train source", "train"),
    "OUT in the flat val folder": ("val/out", "lies inside", "val source", "val"),
}


@pytest.mark.parametrize("case", TREE_CASES)
def test_out_overlapping_an_extracted_tree(syn, tmp_path, env, case):
    manual = explode(syn, tmp_path / "m", "tree")
    rel, relation, what, source = TREE_CASES[case]
    before = snapshot(manual)
    r = build(syn.manual_dir, manual / rel, env, "--train-source", manual / "train",
              "--val-source", manual / "val")
    refused(r, relation, what, manual / source)
    assert snapshot(manual) == before


@pytest.mark.parametrize("layout,rel,relation,what,source", [
    ("class-tars", "ILSVRC2012_img_train/out", "lies inside", "train source", "ILSVRC2012_img_train"),
    ("class-tars", "", "contains", "train source", "ILSVRC2012_img_train"),
    ("multipart", "", "contains", "train source", "ILSVRC2012_img_train.tar.001"),
])
def test_out_overlapping_class_tars_or_parts(syn, tmp_path, env, layout, rel, relation, what, source):
    manual = explode(syn, tmp_path / "m", layout)
    before = snapshot(manual)
    r = build(syn.manual_dir, manual / rel, env, "--train-source",
              manual / ("ILSVRC2012_img_train" if layout == "class-tars" else "ILSVRC2012_img_train.tar.001"),
              "--val-source", manual / ("ILSVRC2012_img_val.tar" if layout == "class-tars"
                                        else "ILSVRC2012_img_val.tar.001"))
    refused(r, relation, what, manual / source)
    assert snapshot(manual) == before


def test_a_later_part_inside_out_is_refused(syn, tmp_path, env):
    """Each part counts, not only the first (parts may be links to other disks)."""
    manual = explode(syn, tmp_path / "m", "multipart")
    out = tmp_path / "out"
    out.mkdir()
    last = manual / "ILSVRC2012_img_train.tar.004"
    shutil.move(last, out / last.name)
    last.symlink_to(out / last.name)
    r = build(manual, out, env, "--split", "train", "--splits-dir", syn.manual_dir)
    refused(r, "contains", "train source", last)


@pytest.mark.parametrize("where", ["OUT is the splits dir", "OUT inside it", "it inside OUT"])
def test_out_overlapping_the_splits_dir(syn, tmp_path, env, where):
    lists = tmp_path / "lists"
    shutil.copytree(syn.manual_dir, lists, ignore=shutil.ignore_patterns("*.tar"))
    out = {"OUT is the splits dir": lists, "OUT inside it": lists / "out",
           "it inside OUT": tmp_path}[where]
    relation = {"OUT is the splits dir": "is", "OUT inside it": "lies inside",
                "it inside OUT": "contains"}[where]
    before = snapshot(lists)
    r = run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", lists, "--out", out, env=env)
    refused(r, relation, "splits dir", lists)
    assert snapshot(lists) == before


def test_out_through_a_symlink_is_the_source(syn, tmp_path, env):
    """Compared by device and inode, not by name: a link to the tree is the tree."""
    manual = explode(syn, tmp_path / "m", "tree")
    link = tmp_path / "link"
    link.symlink_to(manual / "train", target_is_directory=True)
    before = snapshot(manual)
    r = build(syn.manual_dir, link / "n01440764", env, "--train-source", manual / "train")
    refused(r, "lies inside", "train source", manual / "train")
    assert snapshot(manual) == before


def test_out_through_a_bind_mount_is_the_source(syn, tmp_path, env, bind):
    manual = explode(syn, tmp_path / "m", "tree")
    again = bind(manual)
    before = snapshot(manual)
    r = build(syn.manual_dir, again, env, "--train-source", manual / "train",
              "--val-source", manual / "val")
    refused(r, "contains", "train source", manual / "train")
    r = build(syn.manual_dir, again / "val", env, "--train-source", manual / "train",
              "--val-source", manual / "val")
    refused(r, "is", "val source", manual / "val")
    assert snapshot(manual) == before


def test_the_api_refuses_as_well(syn, tmp_path, env, monkeypatch):
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", env["LTEXTRACT_CACHE_DIR"])
    manual = explode(syn, tmp_path / "m", "tree")
    with pytest.raises(LtError, match="lies inside the train source"):
        ltextract.build(manual / "train" / "out", manual, splits_dir=syn.manual_dir, quiet=True)
    assert not (manual / "train" / "out").exists()


@pytest.mark.parametrize("layout", ["tars", "tree"])
def test_sources_on_read_only_storage_build(syn, tmp_path, env, tmpfs, layout):
    """Nothing is written beside the sources: a read-only mount of them builds and verifies,
    and an OUT next to them (not inside) is only refused for being unwritable."""
    mnt = tmpfs("20m")
    if layout == "tars":
        shutil.copytree(syn.manual_dir, mnt / "m")
    else:
        explode(syn, mnt / "m", "tree")
        for name in ("train", "val", "test"):
            shutil.copy(syn.lists[name], mnt / "m")
    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
    completes(mnt / "m", tmp_path / "out", env)
    fails(build(mnt / "m", mnt / "out", env), "cannot write to output folder", "Read-only file system")


def test_out_among_places365_tars_or_hub_shards(tmp_path, env):
    """The sources of the other benchmarks and shapes: Places365's pair, the Hub's shards."""
    places = tmp_path / "places"
    assert run_cli("synth", "--benchmark", "places_lt", "--shape", "256", "--classes", "4",
                   "--out", places, env=env).returncode == 0
    before = snapshot(places)
    r = run_cli("build", "--benchmark", "places_lt", "--manual-dir", places, "--splits-dir", places,
                "--out", places, env=env)
    refused(r, "contains", "train source", places / "train_256_places365standard.tar")
    assert snapshot(places) == before
    hub = tmp_path / "hub"
    assert run_cli("synth", "--shape", "hub-tar.gz", "--classes", "4", "--out", hub, env=env).returncode == 0
    before = snapshot(hub)
    r = run_cli("build", "--manual-dir", hub, "--splits-dir", hub, "--out", hub / "data" / "out", env=env)
    line = fails(r, "lies inside the train source", "choose an --out apart from the inputs")
    assert str(hub / "data") in line
    assert snapshot(hub) == before
