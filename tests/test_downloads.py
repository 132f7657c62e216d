"""verify --sources: the downloads themselves against the official sizes (at once) and md5s
(--md5, read at disk speed): a bad download told apart from a bad tool."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest

from ltextract import archives, cli
from ltextract.archives import TRAIN_TAR, VAL_TAR, Official
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, explode, run_cli


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("downloads") / "manual", SynthSpec(classes=3, seed=2))


def test_official_figures_are_the_published_ones():
    assert archives.OFFICIAL[TRAIN_TAR] == Official(TRAIN_TAR, 147_897_477_120, "1d675b47d978889d74fa0da5fadfb00e")
    assert archives.OFFICIAL[VAL_TAR] == Official(VAL_TAR, 6_744_924_160, "29b22e2961454d5413ddabcf34fc5622")


def test_a_download_of_another_size_is_named_at_once(syn):
    r = run_cli("verify", "--sources", "--manual-dir", syn.manual_dir)
    assert r.returncode == 1
    line = error_line(r.stderr)
    size = syn.train_tar.stat().st_size
    assert f"{TRAIN_TAR} is {size:,} bytes, the official one {147_897_477_120:,}" in line, line
    assert "md5" not in line  # not read: the size says enough


def as_official(monkeypatch, syn, **wrong):
    """The synthetic tars made official, so a test can pass (or fail) on content alone."""
    table = {}
    for tar in (syn.train_tar, syn.val_tar):
        data = tar.read_bytes()
        table[tar.name] = Official(tar.name, len(data), wrong.get(tar.name, hashlib.md5(data).hexdigest()))
    monkeypatch.setattr(archives, "OFFICIAL", table)


def run_inprocess(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["ltextract", *map(str, args)])
    with pytest.raises(SystemExit) as e:
        cli.main()
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_sizes_and_md5s_that_match(syn, monkeypatch, capsys):
    as_official(monkeypatch, syn)
    code, out, err = run_inprocess(monkeypatch, capsys, "verify", "--sources", "--manual-dir",
                                   syn.manual_dir, "--md5", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [(a["name"], a["size_ok"], a["md5_ok"]) for a in report["archives"]] == [
        (TRAIN_TAR, True, True), (VAL_TAR, True, True)]
    assert f"{VAL_TAR}: {syn.val_tar.stat().st_size:,} bytes and md5" in err
    code, out, err = run_inprocess(monkeypatch, capsys, "verify", "--sources", "--manual-dir", syn.manual_dir)
    assert code == 0 and "pass --md5" in err  # sizes only: says what was not checked


def test_same_size_other_content_is_found_by_md5(syn, monkeypatch, capsys):
    as_official(monkeypatch, syn, **{VAL_TAR: "0" * 32})
    code, _, err = run_inprocess(monkeypatch, capsys, "verify", "--sources", "--manual-dir",
                                 syn.manual_dir, "--md5")
    assert code == 1
    line = error_line(err)
    assert f"{VAL_TAR}: md5 {hashlib.md5(syn.val_tar.read_bytes()).hexdigest()} differs from the" \
           f" official {'0' * 32}" in line, line


def test_split_parts_are_checked_as_the_one_archive_they_make(syn, tmp_path, monkeypatch, capsys):
    manual = explode(syn, tmp_path / "m", "multipart")
    as_official(monkeypatch, syn)
    code, out, err = run_inprocess(monkeypatch, capsys, "verify", "--sources", "--manual-dir", manual,
                                   "--md5", "--json")
    assert code == 0, err
    assert [a["parts"] for a in json.loads(out)["archives"]] == [4, 4]


def test_nothing_official_to_check(syn, tmp_path):
    manual = explode(syn, tmp_path / "m", "tree")
    r = run_cli("verify", "--sources", "--manual-dir", manual)
    assert r.returncode == 1
    assert f"neither {TRAIN_TAR} nor {VAL_TAR} (nor a Places365 tar) is in {manual}" in error_line(r.stderr)


def test_out_or_sources_not_both():
    assert run_cli("verify").returncode == 2
    assert run_cli("verify", "x", "--sources").returncode == 2
    assert run_cli("verify", "x", "--md5").returncode == 2
