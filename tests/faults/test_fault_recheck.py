"""Re-runs against another source than the journal names: a cut tar since completed, a tar
replaced, a pipe. Files still unchanged on disk are re-checked (their bytes read and hashed)
and kept when equal, rewritten otherwise; a kill during the re-check loses none of them."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from ltextract.errors import LtError
from ltextract.out import resume
from ltextract.out.folders import Folders, write_file
from ltextract.out.journal import Done, read_journal_entries
from ltextract.plan import Job
from fault_util import SPLITS, assert_no_partial, build, completes, fails, run_faulty
from lt_util import explode, reference_members

TRAIN = "ILSVRC2012_img_train.tar"
VAL = "ILSVRC2012_img_val.tar"


def stamps(out: Path) -> dict[str, tuple[int, int]]:
    """OUT-relative path -> (inode, mtime_ns) of every image: a rewrite (temp file + rename)
    changes the inode, a kept file keeps both."""
    found = {}
    for split in SPLITS:
        for p in (out / split).rglob("*.JPEG") if (out / split).is_dir() else ():
            st = p.stat()
            found[p.relative_to(out).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return found


def untouched_but(out: Path, before: dict[str, tuple[int, int]], rel: str) -> bool:
    """Every image but `rel` is the very file it was (same inode and mtime)."""
    return {r: v for r, v in stamps(out).items() if r != rel} == {r: v for r, v in before.items() if r != rel}


def counts(summary: dict, key: str) -> dict[str, int]:
    return {s: v[key] for s, v in summary["splits"].items()}


def listed(manual: Path) -> dict[str, int]:
    return {s: len((manual / f"ImageNet_LT_{s}.txt").read_text().splitlines()) for s in SPLITS}


def touch_later(path: Path) -> None:
    """Same bytes, another identity (as a re-downloaded tar has)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.mark.parametrize("strategy", ["seek", "stream"])
def test_completed_download_keeps_the_files_before_the_cut(manual, out, env, want, strategy):
    """The user's case: a cut train tar, then the whole one (`wget -c`): nothing is written twice."""
    tar = manual / TRAIN
    data = tar.read_bytes()
    tar.write_bytes(data[:len(data) * 3 // 5])
    fails(build(manual, out, env, "--strategy", strategy), "truncated", "before the cut are extracted")
    before = stamps(out)
    by_split = {s: sum(rel.startswith(f"{s}/") for rel in before) for s in SPLITS}
    assert by_split["train"] > 0 and by_split["test"] == listed(manual)["test"]
    tar.write_bytes(data)

    summary = completes(manual, out, env, "--strategy", strategy)
    assert_no_partial(out, want)
    after = stamps(out)
    assert {rel: after[rel] for rel in before} == before  # re-checked, not rewritten
    assert counts(summary, "kept_rechecked") == {**by_split, "test": 0}
    assert counts(summary, "kept") == {"train": 0, "val": 0, "test": by_split["test"]}  # val tar: same
    assert counts(summary, "copied") == {s: listed(manual)[s] - by_split[s] for s in SPLITS}
    assert len(after) == sum(listed(manual).values())

    again = completes(manual, out, env, "--strategy", strategy)  # same tar now: no reads at all
    assert counts(again, "kept") == listed(manual)
    assert counts(again, "kept_rechecked") == counts(again, "copied") == {s: 0 for s in SPLITS}


@pytest.mark.parametrize("strategy", ["seek", "stream"])
def test_a_member_with_new_bytes_is_rewritten(manual, out, env, strategy):
    completes(manual, out, env, "--strategy", strategy)
    before = stamps(out)
    tar = manual / VAL
    name = sorted((out / "test").rglob("*.JPEG"))[0]
    offset, size = reference_members(tar, nested=False)[("", name.name)]
    data = bytearray(tar.read_bytes())
    data[offset:offset + size] = bytes(b ^ 0x5A for b in data[offset:offset + size])
    tar.write_bytes(data)  # a valid tar still: payloads carry no checksum

    summary = completes(manual, out, env, "--strategy", strategy)  # verify passes
    rel = name.relative_to(out).as_posix()
    new = bytes(data[offset:offset + size])
    assert name.read_bytes() == new and stamps(out)[rel] != before[rel]
    assert f"{rel},{hashlib.sha256(new).hexdigest()}" in _csv_path_sha(out / "test.csv")
    assert counts(summary, "copied")["test"] == 1
    assert counts(summary, "kept_rechecked")["test"] == listed(manual)["test"] - 1
    assert untouched_but(out, before, rel)


def _csv_path_sha(csv: Path) -> set[str]:
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    head = rows[0]
    return {f"{r[head.index('path')]},{r[head.index('sha256')]}" for r in rows[1:]}


def test_a_file_changed_on_disk_is_rewritten(manual, out, env, want):
    completes(manual, out, env)
    before = stamps(out)
    victim = sorted((out / "train").rglob("*.JPEG"))[0]
    victim.write_bytes(b"edited by hand")
    touch_later(manual / TRAIN)
    summary = completes(manual, out, env)
    assert_no_partial(out, want)
    assert counts(summary, "copied") == {"train": 1, "val": 0, "test": 0}
    assert counts(summary, "kept_rechecked")["train"] == listed(manual)["train"] - 1
    rel = victim.relative_to(out).as_posix()
    assert untouched_but(out, before, rel)


def test_stdin_rerun_keeps_unchanged_files_after_recheck(manual, out, env, want):
    def from_pipe() -> dict:
        with open(manual / TRAIN, "rb") as f:
            cat = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
            summary = completes(manual, out, env, "--train-source", "-", stdin=cat.stdout)
            cat.stdout.close()
            assert cat.wait() == 0
        return summary

    first = from_pipe()
    assert counts(first, "kept_rechecked") == {s: 0 for s in SPLITS}
    before = stamps(out)
    victim = sorted((out / "val").rglob("*.JPEG"))[0]
    victim.unlink()
    again = from_pipe()
    assert_no_partial(out, want)
    n = listed(manual)
    assert counts(again, "kept_rechecked") == {"train": n["train"], "val": n["val"] - 1, "test": 0}
    assert counts(again, "copied") == {"train": 0, "val": 1, "test": 0}
    assert counts(again, "kept")["test"] == n["test"]  # the val tar is a file: trusted as before
    rel = victim.relative_to(out).as_posix()
    assert untouched_but(out, before, rel)


@pytest.mark.parametrize("n", [1, 30])
def test_sigkill_during_recheck_loses_nothing(manual, out, env, want, n):
    """Killed before the Nth re-checked file is journaled: the journal already names the new
    tar, and carries every file still to re-check, so the next run re-checks (not rewrites) them."""
    completes(manual, out, env)
    before = stamps(out)
    touch_later(manual / TRAIN)
    r = run_faulty(f"kill:journal_add:{n}", manual, out, env)
    assert r.returncode == -signal.SIGKILL, r.stderr
    summary = completes(manual, out, env)
    assert_no_partial(out, want)
    assert stamps(out) == before
    assert sum(counts(summary, "kept_rechecked").values()) >= listed(manual)["train"] + listed(manual)["val"] - n
    assert counts(summary, "copied") == {s: 0 for s in SPLITS}


def test_link_modes_after_the_tree_moved(tmp_path, pristine, env):
    """--link copy re-checks copies from a tree that moved; another link mode replaces them,
    since the files themselves must change (a copy is not a hard link)."""
    manual = explode(pristine, tmp_path / "a", "tree")
    for split in SPLITS:
        shutil.copy(pristine.lists[split], manual)
    out = tmp_path / "out"
    completes(manual, out, env, "--link", "copy")
    before = stamps(out)
    manual = manual.rename(tmp_path / "b")
    moved = completes(manual, out, env, "--link", "copy")
    assert stamps(out) == before
    assert counts(moved, "kept_rechecked")["train"] == listed(pristine.manual_dir)["train"]
    linked = completes(manual, out, env, "--link", "hardlink")
    assert counts(linked, "copied")["train"] == listed(pristine.manual_dir)["train"]
    assert all(p.stat().st_nlink >= 2 for p in (out / "train").rglob("*.JPEG"))


def _job(out: Path, data: bytes, recheck: Done | None) -> Job:
    return Job("train", "train/n0/a.JPEG", "n0", 0, out / "src.tar", 0, len(data), recheck)


def _journaled(out: Path, data: bytes) -> Done:
    path = out / "train" / "n0" / "a.JPEG"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    st = path.stat()
    return Done("train/n0/a.JPEG", len(data), st.st_mtime_ns, hashlib.sha256(data).hexdigest())


def test_write_one_keeps_only_an_unchanged_equal_file(tmp_path):
    done = _journaled(tmp_path, b"same bytes")
    ino = (tmp_path / done.rel).stat().st_ino
    folders = Folders(tmp_path)
    kept = write_file(folders, _job(tmp_path, b"same bytes", done), b"same bytes")
    assert kept == done and kept.rechecked and (tmp_path / done.rel).stat().st_ino == ino

    other = write_file(folders, _job(tmp_path, b"new! bytes", done), b"new! bytes")
    assert not other.rechecked and (tmp_path / done.rel).read_bytes() == b"new! bytes"

    done = _journaled(tmp_path, b"same bytes")
    (tmp_path / done.rel).write_bytes(b"changed after planning")  # between pending and write_one
    again = write_file(folders, _job(tmp_path, b"same bytes", done), b"same bytes")
    folders.close()
    assert not again.rechecked and (tmp_path / done.rel).read_bytes() == b"same bytes"
    assert not list((tmp_path / "train" / "n0").glob(".*"))  # no temporary left


def test_free_space_check_skips_files_up_for_recheck(tmp_path):
    done = _journaled(tmp_path, b"x")
    huge = Job("train", done.rel, "n0", 0, tmp_path / "t", 0, 1 << 60, done)
    resume.check_space(tmp_path, [huge])  # would need an exabyte were it copied
    with pytest.raises(LtError, match="not enough free space"):
        resume.check_space(tmp_path, [Job("train", done.rel, "n0", 0, tmp_path / "t", 0, 1 << 60)])


def test_files_dropped_from_the_list_go_whatever_source_wrote_them(manual, out, env):
    """A file an earlier build wrote from another source and the list no longer names is
    removed, as from the same source: verify would find it stray."""
    completes(manual, out, env)
    train_list = manual / "ImageNet_LT_train.txt"
    first, *rest = train_list.read_text().splitlines(keepends=True)
    train_list.write_text("".join(rest))
    touch_later(manual / TRAIN)
    summary = completes(manual, out, env)  # verify: no stray file
    assert not (out / first.split()[0]).exists()
    assert counts(summary, "kept_rechecked")["train"] == len(rest)


def test_a_hand_edited_journal_line_is_ignored_not_a_crash(tmp_path):
    """Lines that do not parse name no file (it is then copied again), whatever their digits."""
    (tmp_path / ".ltextract").mkdir()
    sha = "0" * 64
    (tmp_path / ".ltextract" / "train.journal").write_text(
        f"source\ntrain/n0/a.JPEG\t3\t5\t{sha}\ntrain/n0/b.JPEG\t²\t5\t{sha}\n"
        f"?train/n0/c.JPEG\t3\t٣\t{sha}\ntrain/n0/d.JPEG\t3\n", encoding="utf-8")
    found = read_journal_entries(tmp_path, "train")
    assert found.identity == "source"
    assert list(found.done) == ["train/n0/a.JPEG"] and found.unconfirmed == {}
