"""Bad input: one `ltextract: error:` line, a non-zero exit, nothing half-written."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, run_cli


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("pristine"), SynthSpec(classes=4, seed=5))


@pytest.fixture
def manual(tmp_path, pristine):
    dest = tmp_path / "manual"
    shutil.copytree(pristine.manual_dir, dest)
    return dest


@pytest.fixture
def env(tmp_path):
    return {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}


def build(manual, out, env, *extra):
    """Seek unless told otherwise: its index finds bad input before anything is copied."""
    strategy = () if "--strategy" in extra else ("--strategy", "seek")
    return run_cli("build", "--manual-dir", manual, "--splits-dir", manual, "--out", out, *strategy,
                   *extra, env=env)


def assert_nothing_final(out: Path) -> None:
    if out.is_dir():
        assert not list(out.glob("*.csv")) and not (out / "ltextract.json").exists()
        assert not [p for p in out.rglob("*") if p.is_file() and ".ltextract" not in p.parts]


def fails(r, *needles) -> str:
    assert r.returncode == 1, (r.returncode, r.stderr)
    line = error_line(r.stderr)
    for needle in needles:
        assert needle in line, line
    return line


def edit_list(manual: Path, split: str, lineno: int, new: str) -> None:
    path = manual / f"ImageNet_LT_{split}.txt"
    lines = path.read_text().splitlines()
    lines[lineno - 1] = new
    path.write_text("\n".join(lines) + "\n")


def test_missing_manual_dir(tmp_path, env):
    fails(build(tmp_path / "nope", tmp_path / "out", env), "nope", "does not exist")


def test_missing_tar(tmp_path, manual, env):
    (manual / "ILSVRC2012_img_val.tar").unlink()
    r = build(manual, tmp_path / "out", env)
    fails(r, "ILSVRC2012_img_val.tar not found")
    assert_nothing_final(tmp_path / "out")


def test_truncated_tar(tmp_path, manual, env):
    tar = manual / "ILSVRC2012_img_train.tar"
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2 + 100])
    out = tmp_path / "out"
    fails(build(manual, out, env), "truncated", "ILSVRC2012_img_train.tar", "before the cut")
    # the files before the cut are extracted whole; no manifest claims the split is done
    assert not (out / "train.csv").exists() and not (out / "val.csv").exists()
    assert (out / "test.csv").exists()  # from the val tar, which is whole
    assert not list(out.rglob("*.ltx-part"))
    for p in (out / "train").rglob("*.JPEG"):
        assert p.read_bytes() in data


def test_gzip_instead_of_tar(tmp_path, manual, env):
    tar = manual / "ILSVRC2012_img_val.tar"
    tar.write_bytes(gzip.compress(tar.read_bytes()))
    fails(build(manual, tmp_path / "out", env), "gzip")


@pytest.mark.parametrize("line,needle", [
    ("train/n01440764 0", "ImageNet_LT_train.txt:2"),
    ("/train/n01440764/n01440764_1.JPEG 0", "ImageNet_LT_train.txt:2"),
    ("train/n01440764/../x.JPEG 0", "ImageNet_LT_train.txt:2"),
    ("train/n01440764/n01440764_99999.JPEG 7", "ImageNet_LT_train.txt:2"),
])
def test_bad_list_line(tmp_path, manual, env, line, needle):
    edit_list(manual, "train", 2, line)
    fails(build(manual, tmp_path / "out", env), needle)
    assert_nothing_final(tmp_path / "out")


def test_duplicate_entry(tmp_path, manual, env):
    first = (manual / "ImageNet_LT_val.txt").read_text().splitlines()[0]
    edit_list(manual, "val", 3, first)
    fails(build(manual, tmp_path / "out", env), "ImageNet_LT_val.txt:3")


def test_member_missing_from_tar(tmp_path, manual, env):
    path = manual / "ImageNet_LT_train.txt"
    wnid = path.read_text().split("/")[1]
    with path.open("a") as f:
        for i in range(7):
            f.write(f"train/{wnid}/{wnid}_99999{i}.JPEG {path.read_text().split()[1]}\n")
    line = fails(build(manual, tmp_path / "out", env), "7 image(s)", f"{wnid}_999990.JPEG",
                 "ILSVRC2012_img_train.tar")
    assert "…" in line
    assert_nothing_final(tmp_path / "out")


def test_out_is_a_file(tmp_path, manual, env):
    out = tmp_path / "out"
    out.write_text("hello")
    fails(build(manual, out, env), "not a folder")
    assert out.read_text() == "hello"


def test_out_under_a_file(tmp_path, manual, env):
    (tmp_path / "file").write_text("x")
    fails(build(manual, tmp_path / "file" / "out", env), "cannot write")


def test_unreachable_list_url(tmp_path, manual, env):
    r = build(manual, tmp_path / "out", env, "--split", "test", "--split-url",
              "test=http://127.0.0.1:9/ImageNet_LT_test.txt")
    fails(r, "127.0.0.1:9")


def test_usage_error_exits_2(tmp_path, manual, env):
    r = build(manual, tmp_path / "out", env, "--split", "bogus")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = build(manual, tmp_path / "out", env, "--split-url", "nonsense")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_verify_on_non_build(tmp_path, env):
    (tmp_path / "empty").mkdir()
    fails(run_cli("verify", tmp_path / "empty", env=env), "no ltextract build")
