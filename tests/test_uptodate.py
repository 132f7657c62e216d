"""A re-run with nothing to do (`plan.uptodate`): taken only when the full build would keep every
file and rewrite nothing, and then with the same summary; any change or doubt goes the full way.
And the whole-column journal read agrees with the line-by-line one."""
from __future__ import annotations

import json
import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ltextract
from ltextract.out import journal
from ltextract.plan import uptodate
from ltextract.synth import SynthSpec, make_manual_dir


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("uptodate") / "manual", SynthSpec(classes=6, seed=12))


@pytest.fixture
def run(tmp_path, monkeypatch, syn):
    """`run(out, **kw)`: a build of `syn` into `out`; returns (summary, whether it was told at a
    stat per file)."""
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    taken = []
    real = uptodate.nothing_to_do

    def spy(*args):
        answer = real(*args)
        taken.append(answer is not None)
        return answer
    monkeypatch.setattr("ltextract.pipeline.nothing_to_do", spy)

    def build(out, **kw):
        summary = ltextract.build(out, syn.manual_dir, splits_dir=syn.manual_dir, quiet=True, **kw)
        return summary, taken[-1]
    return build


def _without_seconds(summary: dict) -> dict:
    return {s: {k: v for k, v in r.items() if k != "seconds"} for s, r in summary["splits"].items()}


def test_nothing_to_do_gives_the_full_builds_summary(run, syn, tmp_path, monkeypatch):
    out = tmp_path / "out"
    first, taken = run(out)
    assert not taken
    def written() -> dict:
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "lock"}

    before = written()
    again, taken = run(out)
    assert taken
    assert written() == before  # nothing written (but the lock's pid)
    monkeypatch.setattr(uptodate, "PARALLEL_MIN_FILES", 1)  # the stat pass in forked workers
    monkeypatch.setattr(uptodate, "TASK_FILES", 7)
    parallel, taken = run(out)
    assert taken and _without_seconds(parallel) == _without_seconds(again)
    monkeypatch.setattr("ltextract.pipeline.nothing_to_do", lambda req, warn: None)
    full = ltextract.build(out, syn.manual_dir, splits_dir=syn.manual_dir, quiet=True)
    assert _without_seconds(full) == _without_seconds(again)
    assert {k: v for k, v in full.items() if k != "splits"} == {k: v for k, v in again.items() if k != "splits"}


CHANGES = {
    "a file's size": lambda out, rel: (out / rel).write_bytes((out / rel).read_bytes() + b"x"),
    "a file's mtime": lambda out, rel: os.utime(out / rel, ns=(0, 1)),
    "a file gone": lambda out, rel: (out / rel).unlink(),
    "a file now a link": lambda out, rel: ((out / rel).unlink(), (out / rel).symlink_to("/dev/null")),
    "a leftover temporary": lambda out, rel: (out / rel).with_name(".x.ltx-part").write_bytes(b""),
    "a repair record": lambda out, rel: (out / ".ltextract" / "train.repair").write_text(rel + "\n"),
    "the manifest edited": lambda out, rel: (out / "train.csv").write_text("edited"),
    "the list rewritten": lambda out, rel: os.utime(out / "ImageNet_LT_train.txt", ns=(0, 1)),
    "a journal line unconfirmed": lambda out, rel: _edit_journal(out, lambda t: t.replace(
        "\ntrain/", "\n?train/", 1)),
    "another source in the journal": lambda out, rel: _edit_journal(out, lambda t: "x" + t),
    "a journal line more": lambda out, rel: _edit_journal(out, lambda t: t + t.splitlines()[1].replace(
        ".JPEG", "_.JPEG") + "\n"),
    "the split staged again": lambda out, rel: shutil.copytree(out / "train", out / ".train.ltx-part"),
    "ltextract.json of another list": lambda out, rel: _edit_metadata(out),
    "ltextract.json without a count": lambda out, rel: _edit_metadata(out, lambda r: r.pop("bytes")),
}


def _edit_journal(out, edit) -> None:
    path = out / ".ltextract" / "train.journal"
    path.write_text(edit(path.read_text()))


def _edit_metadata(out, edit=lambda record: record["list"].update(sha256="0" * 64)) -> None:
    meta = json.loads((out / "ltextract.json").read_text())
    edit(meta["splits"]["train"])
    (out / "ltextract.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change", CHANGES)
def test_any_change_goes_the_full_way(run, tmp_path, change):
    out = tmp_path / "out"
    run(out)
    rel = next(p for p in (out / "train").rglob("*.JPEG")).relative_to(out).as_posix()
    CHANGES[change](out, rel)
    _, taken = run(out)
    assert not taken, change
    _, taken = run(out)  # the full build put things right: nothing to do again, but where it
    if not taken:  # re-checked files (its journal keeps their unconfirmed lines until the next)
        assert change in ("a journal line unconfirmed", "another source in the journal"), change
        _, taken = run(out)
    assert taken, change
    report = ltextract.verify(out)
    assert report.ok, report.problems[:3]


def test_recheck_and_other_formats_go_the_full_way(run, tmp_path):
    out = tmp_path / "out"
    run(out)
    assert not run(out, recheck=True)[1]
    assert not run(tmp_path / "wds", format="webdataset")[1]
    assert not run(tmp_path / "wds", format="webdataset")[1]


# --- the journal read a column at a time ------------------------------------------------------

_field = st.sampled_from(["train/n01440764/a.JPEG", "train/n0/b", "train/x.tar", "val/n0/a", "train/../a", ".ltextract/x",
                          "train//a", "12", "0", "-1", "1²", "9" * 21, "ab" * 32, "AB" * 32, "", "?train/n0/c",
                          "train/n0/\0", "x y"])


@settings(max_examples=400, deadline=None)
@given(st.text("xy ", max_size=3), st.lists(st.lists(_field, min_size=3, max_size=5).map("\t".join), max_size=6),
       st.booleans())
def test_journal_columns_agree_with_the_line_by_line_read(tmp_path_factory, header, lines, final_eol):
    out = tmp_path_factory.mktemp("j")
    (out / ".ltextract").mkdir()
    text = "\n".join([header, *lines]) + ("\n" if final_eol else "")
    (out / ".ltextract" / "train.journal").write_text(text, "utf-8", "surrogateescape")
    fast = journal.read_journal_entries(out, "train")
    real = journal.journal_columns
    journal.journal_columns = lambda text, checked=True: None
    try:
        slow = journal.read_journal_entries(out, "train")
    finally:
        journal.journal_columns = real
    assert fast == slow
