"""verify of a folders split (`formats.folder_check`): each way a file or folder can be wrong is
named, in forked workers as in-process, and nothing wrong is found in a good OUT."""
from __future__ import annotations

import os
import shutil

import pytest

import ltextract
from ltextract.formats import folder_check
from ltextract.synth import SynthSpec, make_manual_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("vf")
    syn = make_manual_dir(root / "manual", SynthSpec(classes=5, seed=6))
    os.environ["LTEXTRACT_CACHE_DIR"] = str(root / "cache")
    try:
        ltextract.build(root / "out", syn.manual_dir, splits_dir=syn.manual_dir, quiet=True)
    finally:
        del os.environ["LTEXTRACT_CACHE_DIR"]
    return root / "out"


def _first(out, n=0):
    files = sorted(p for p in (out / "train").rglob("*.JPEG"))
    return files[n], files[n].relative_to(out).as_posix()


DAMAGE = {
    "missing": lambda p: p.unlink(),
    "not a regular file": lambda p: (p.unlink(), p.mkdir()),
    "a symlink": lambda p: (p.unlink(), p.symlink_to("/etc/hostname")),
    "a fifo": lambda p: (p.unlink(), os.mkfifo(p)),
    "longer": lambda p: p.write_bytes(p.read_bytes() + b"x"),
    "shorter": lambda p: p.write_bytes(p.read_bytes()[:-1]),
    "other bytes": lambda p: p.write_bytes(bytes(b ^ 1 for b in p.read_bytes())),
}
SAYS = {"missing": "missing", "not a regular file": "not a regular file", "a symlink": "not a regular file",
        "a fifo": "not a regular file", "longer": "size", "shorter": "size", "other bytes": "sha256 differs"}


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("how", DAMAGE)
def test_each_damage_is_named(built, tmp_path, monkeypatch, how, parallel):
    out = tmp_path / "out"
    shutil.copytree(built, out, symlinks=True)
    if parallel:
        monkeypatch.setattr(folder_check, "TASK_FILES", 3)
    path, rel = _first(out)
    DAMAGE[how](path)
    report = ltextract.verify(out, workers=2 if parallel else 1)
    assert [(p.path, p.repair) for p in report.problems] == [(rel, rel)], report.problems
    assert SAYS[how] in report.problems[0].what


def test_strays_and_linked_folders(built, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(built, out, symlinks=True)
    path, rel = _first(out)
    (path.parent / "extra.JPEG").write_bytes(b"x")
    (path.parent / "sub").mkdir()
    (out / "train" / "notes.txt").write_text("mine")
    (out / "train" / "n00000000").mkdir()
    report = ltextract.verify(out, workers=1)
    folder = rel.rpartition("/")[0]
    assert {(p.path, p.what, p.repair) for p in report.problems} == {
        (f"{folder}/extra.JPEG", "stray file (not in the manifest)", ""),
        (f"{folder}/sub", "stray folder", ""), ("train/notes.txt", "stray file (not in the manifest)", ""),
        ("train/n00000000", "stray folder", "")}
    moved = tmp_path / "moved"
    (out / folder).rename(moved)
    (out / folder).symlink_to(moved, target_is_directory=True)
    report = ltextract.verify(out, workers=1)
    assert (folder, "a symlink, not a folder") in {(p.path, p.what) for p in report.problems}


def test_a_good_out_has_no_problem_in_workers(built, monkeypatch):
    monkeypatch.setattr(folder_check, "TASK_FILES", 2)
    assert ltextract.verify(built, workers=3, record=False).ok


def test_the_workers_get_every_split_before_the_parent_checks_rows(built, monkeypatch):
    """The parent's own checks (rows, lists) run while the workers check the files: every
    split's tasks are queued before the first row check."""
    from ltextract import checks
    from ltextract.workers import Pool

    events = []
    submit, check_rows = Pool.submit, checks.check_rows
    monkeypatch.setattr(Pool, "submit", lambda self, fn, *a: events.append("task") or submit(self, fn, *a))
    monkeypatch.setattr(checks, "check_rows", lambda split, *a: events.append(split) or check_rows(split, *a))
    monkeypatch.setattr(folder_check, "TASK_FILES", 2)
    assert ltextract.verify(built, workers=2, record=False).ok
    first = min(events.index(split) for split in ("train", "val", "test"))
    assert events.count("task") > 3 and "task" not in events[first:], events
    assert sorted(events[first:]) == ["test", "train", "val"]
