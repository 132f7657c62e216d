"""`ltextract stats`: per-class counts and many/medium/few groups on lists with known counts."""
from __future__ import annotations

import csv
import io
import json
import struct

import pytest

from ltextract.synth import SynthSpec, make_manual_dir
from lt_util import error_line, run_cli

# Chosen around each boundary: > 100 is many, 20..100 medium, < 20 few.
COUNTS = (150, 101, 100, 57, 20, 19, 1, 0)
WANT = {"many": 2, "medium": 3, "few": 2}  # the 0-count class is in no list, so it is not counted


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("stats") / "manual",
                           SynthSpec(classes=len(COUNTS), seed=5, counts=COUNTS))


def expected_groups(syn) -> dict[str, set[str]]:
    groups: dict[str, set[str]] = {"many": set(), "medium": set(), "few": set()}
    for wnid, n in syn.train_counts.items():
        if n:
            groups["many" if n > 100 else "few" if n < 20 else "medium"].add(wnid)
    return groups


def test_json_groups_and_counts(syn):
    r = run_cli("stats", "--splits-dir", syn.manual_dir, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {g: v["classes"] for g, v in data["groups"].items()} == WANT
    assert {g: set(v["wnids"]) for g, v in data["groups"].items()} == expected_groups(syn)
    assert data["per_class"] == {w: n for w, n in syn.train_counts.items() if n}
    assert data["images"] == sum(COUNTS)
    assert data["groups"]["medium"]["images"] == 100 + 57 + 20


def test_csv_and_table(syn):
    r = run_cli("stats", "--splits-dir", syn.manual_dir, "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [int(row["label"]) for row in rows] == sorted(int(row["label"]) for row in rows)
    got = {row["wnid"]: (int(row["train_count"]), row["group"]) for row in rows}
    groups = expected_groups(syn)
    assert got == {w: (syn.train_counts[w], g) for g, ws in groups.items() for w in ws}
    table = run_cli("stats", "--splits-dir", syn.manual_dir)
    assert table.returncode == 0 and table.stderr == ""
    lines = {line.split()[0]: line.split() for line in table.stdout.splitlines()}
    assert lines["many"][-3:] == ["2", "251", "101-150"]
    assert lines["few"][-3:] == ["2", "20", "1-19"]
    assert lines["all"][-3:] == ["7", f"{sum(COUNTS)}", "1-150"]


def test_stats_of_a_built_out_match_the_list(syn, tmp_path):
    env = {"LTEXTRACT_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "out"
    r = run_cli("build", "--manual-dir", syn.manual_dir, "--splits-dir", syn.manual_dir, "--out", out,
                "--split", "train", "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    from_out = run_cli("stats", out, "--json")
    from_list = run_cli("stats", "--splits-dir", syn.manual_dir, "--json")
    a, b = json.loads(from_out.stdout), json.loads(from_list.stdout)
    assert a.pop("source").endswith("train.csv")
    b.pop("source")
    assert a == b


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_plot_is_a_valid_png(syn, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    Image = pytest.importorskip("PIL.Image")
    dest = tmp_path / "lt.png"
    r = run_cli("stats", "--splits-dir", syn.manual_dir, "--plot", dest, "--json")
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout still carries only the data
    data = dest.read_bytes()
    w, h = png_size(data)
    assert w >= 400 and h >= 200
    with Image.open(dest) as im:
        im.load()
        assert im.size == (w, h)
        colours = im.convert("RGB").getcolors(1 << 20)
    assert colours is not None and len(colours) > 10  # something was drawn, not a blank canvas
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


def test_plot_without_matplotlib_says_how_to_install(syn, tmp_path):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    dest = tmp_path / "lt.png"
    r = run_cli("stats", "--splits-dir", syn.manual_dir, "--plot", dest, env={"PYTHONPATH": str(fake)})
    assert r.returncode == 1
    assert "pip install 'ltextract[plot]'" in error_line(r.stderr)
    assert not dest.exists()


@pytest.mark.parametrize("args, code", [((), 2), (("--splits-dir", "x", "OUT"), 2),
                                        (("--json", "--csv", "--splits-dir", "x"), 2)])
def test_usage_errors(args, code):
    r = run_cli("stats", *args)
    assert r.returncode == code
    assert "Traceback" not in r.stderr


def test_missing_inputs_are_one_line_errors(tmp_path):
    r = run_cli("stats", "--splits-dir", tmp_path)
    assert r.returncode == 1 and "ImageNet_LT_train.txt" in error_line(r.stderr)
    r = run_cli("stats", tmp_path)
    assert r.returncode == 1 and "train.csv" in error_line(r.stderr)


def test_groups_on_the_imagenet_lt_curve():
    """synth's curve is fitted to the published train list: 385 / 479 / 136 classes."""
    from ltextract import counts as stats
    from ltextract.synth import chosen_wnids, lt_counts

    counts = lt_counts(1000, 1280, 5)
    result = stats.count_classes((w for w, n in zip(chosen_wnids(1000), counts) for _ in range(n)), "curve")
    assert [len(result.group(g)) for g in stats.GROUPS] == [385, 479, 136]
    assert result.classes[0].count == 1280 and result.classes[-1].count == 5
    assert "385" in stats.render_table(result).splitlines()[1]
