"""The Python API: the functions the CLI wraps return results and raise errors, never exit."""
from __future__ import annotations

import importlib
import json

import pytest

import ltextract
from ltextract.errors import UsageError
from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import run_cli


@pytest.fixture
def syn(tmp_path, monkeypatch):
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    return make_manual_dir(tmp_path / "manual", SynthSpec(classes=6, seed=4))


def test_build_verify_stats_in_process_equal_the_cli(syn, tmp_path):
    summary = ltextract.build(tmp_path / "out", syn.manual_dir, splits_dir=syn.manual_dir, quiet=True)
    assert summary["splits"]["train"]["files"] == sum(syn.train_counts.values())
    assert set(summary["splits"]) == {"train", "val", "test"}
    report = ltextract.verify(tmp_path / "out")
    assert report.ok and report.splits["test"]["files"] == summary["splits"]["test"]["files"]
    assert ltextract.stats(tmp_path / "out").images == summary["splits"]["train"]["files"]
    cli = run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir,
                  "--out", tmp_path / "cli", "--json", "-q",
                  env={"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")})
    assert cli.returncode == 0, cli.stderr
    by_cli = json.loads(cli.stdout)
    for split, record in summary["splits"].items():  # the same summary, but for timing
        assert {k: v for k, v in record.items() if k != "seconds"} == \
            {k: v for k, v in by_cli["splits"][split].items() if k != "seconds"}
    # imported by name, the submodules do not shadow the functions
    importlib.import_module("ltextract.checks")
    importlib.import_module("ltextract.counts")
    assert callable(ltextract.verify) and callable(ltextract.stats)


def test_errors_are_raised_not_exits(syn, tmp_path):
    with pytest.raises(UsageError, match="--link applies to --format folders"):
        ltextract.build(tmp_path / "o", syn.manual_dir, splits_dir=syn.manual_dir, link="hardlink",
                        format="webdataset")
    with pytest.raises(ltextract.LtError, match="does not exist or is not a folder"):
        ltextract.build(tmp_path / "o", tmp_path / "nowhere", splits_dir=syn.manual_dir)
    with pytest.raises(ltextract.LtError, match="unknown split 'dev'"):
        ltextract.build(tmp_path / "o", syn.manual_dir, splits=("dev",))
    with pytest.raises(UsageError, match="either OUT or --splits-dir"):
        ltextract.stats()
    assert not (tmp_path / "o").exists()
