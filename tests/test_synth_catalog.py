"""synth for every benchmark: lists with the benchmark's own names and labels, and archives
around any lists (ILSVRC2012's, Places365's two shapes) holding exactly what they name, read
back with the stdlib's tarfile."""
from __future__ import annotations

import tarfile

import pytest

from ltextract.benchmarks import get
from ltextract.benchmarks.load import load_lists
from ltextract.synth.archives import AroundSpec, ilsvrc_around, make_benchmark_dir, places_around
from ltextract.synth.lists import Line, ListsSpec, make_lists, read_lists, write_lists
from lt_util import reference_members, run_cli

PLACES, IN100 = get("places_lt"), get("imagenet100_lt")


def names(tar) -> dict[str, bytes]:
    with tarfile.open(tar) as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isreg()}


@pytest.mark.parametrize("bench", ["imagenet100_lt", "places_lt"])
def test_lists_parse_as_the_benchmarks_own(tmp_path, bench):
    b = get(bench)
    lines = make_lists(b, ListsSpec(classes=7, seed=1))
    write_lists(tmp_path, b, lines)
    got = load_lists(list(lines), splits_dir=tmp_path, benchmark=b)
    for split, sl in got.items():
        assert [(e.origin, e.wnid, e.file, e.label) for e in sl.entries] == [tuple(ln) for ln in lines[split]]
        assert not sl.published
    assert {ln.label for ln in lines["train"]} == {b.label_of[c] for c in {ln.cls for ln in lines["train"]}}
    assert not {(ln.cls, ln.file) for ln in lines["train"]} & {(ln.cls, ln.file) for ln in lines["val"]}
    assert read_lists(tmp_path, b) == lines


def test_places_archives_hold_exactly_the_listed_images(tmp_path):
    lines = {"train": [Line("train", "apartment_building-outdoor", "00000007.jpg", 8),
                       Line("train", "airfield", "00000007.jpg", 0)],
             "test": [Line("val", "airfield", "Places365_val_00000009.jpg", 0)]}
    (tmp_path / "e").mkdir()
    (tmp_path / "p").mkdir()
    easy = places_around(tmp_path / "e", lines, "easyformat", AroundSpec(unused_per_class=2))
    pair = places_around(tmp_path / "p", lines, "256", AroundSpec(unused_per_class=2))
    e = names(easy["train"])
    assert easy["train"] == easy["val"] and len(e) == 2 * 3 + 1 + 1  # + train.txt
    assert e["places365_standard/train/apartment_building-outdoor/00000007.jpg"] == \
        names(pair["train"])["data_256/a/apartment_building/outdoor/00000007.jpg"]
    assert e["places365_standard/val/airfield/Places365_val_00000009.jpg"] == \
        names(pair["val"])["val_256/Places365_val_00000009.jpg"]
    assert set(names(pair["val"])) == {"val_256/Places365_val_00000009.jpg"}
    with tarfile.open(pair["train"]) as t:
        dirs = [m.name for m in t if m.isdir()]
    assert {"data_256/a/apartment_building", "data_256/a/apartment_building/outdoor"} <= set(dirs)
    with pytest.raises(ValueError, match="shape must be one of"):
        places_around(tmp_path, lines, "small")


def test_ilsvrc_tars_around_any_lists(tmp_path):
    lines = make_lists(IN100, ListsSpec(classes=4, seed=3))
    tars = ilsvrc_around(tmp_path, lines, AroundSpec(unused_per_class=1, fill_to=30))
    train = reference_members(tars["train"], True)
    listed = {(f"{ln.cls}.tar", ln.file) for s in ("train", "val") for ln in lines[s]}
    groups = {g for g, _ in listed}
    assert listed <= set(train) and {g for g, _ in train} == groups
    assert all(sum(g == group for g, _ in train) >= 30 for group in groups)
    assert {n for _, n in reference_members(tars["val"], False)} == {ln.file for ln in lines["test"]}


def test_bytes_do_not_depend_on_the_shape(tmp_path):
    """An image's bytes depend on the seed and its (class, file), not on the archive it is in."""
    from ltextract.sources.places import deep_path

    lines = make_lists(PLACES, ListsSpec(classes=3, seed=9))
    tars = {}
    for shape in ("easyformat", "large"):
        (tmp_path / shape).mkdir()
        tars[shape] = names(places_around(tmp_path / shape, lines, shape, AroundSpec(seed=9, payload=2000))["train"])
    for ln in lines["train"] + lines["val"]:
        assert tars["easyformat"][f"places365_standard/train/{ln.cls}/{ln.file}"] == \
            tars["large"][f"data_large/{deep_path(ln.cls, ln.file)}"]
    again = tmp_path / "again"
    again.mkdir()
    places_around(again, lines, "easyformat", AroundSpec(seed=9, payload=2000))
    assert (again / "places365standard_easyformat.tar").read_bytes() == \
        (tmp_path / "easyformat" / "places365standard_easyformat.tar").read_bytes()


def test_synth_command_for_each_benchmark(tmp_path):
    for bench, shape, files in [("imagenet100_lt", "tars", {"ILSVRC2012_img_train.tar", "ImageNet_100_val.txt"}),
                                ("places_lt", "easyformat", {"places365standard_easyformat.tar"}),
                                ("places_lt", "large", {"train_large_places365standard.tar", "val_large.tar"})]:
        out = tmp_path / f"{bench}-{shape}"
        r = run_cli("synth", "--benchmark", bench, "--shape", shape, "--out", out, "--classes", "4")
        assert r.returncode == 0 and r.stdout.strip() == str(out), r.stderr
        assert files <= {p.name for p in out.iterdir()}
    r = run_cli("synth", "--benchmark", "places_lt", "--shape", "tars", "--out", tmp_path / "x")
    assert r.returncode == 2 and "places_lt comes in easyformat, 256, large" in r.stderr
    lists = tmp_path / "imagenet100_lt-tars"
    r = run_cli("synth", "--benchmark", "imagenet100_lt", "--lists", lists, "--out", tmp_path / "around")
    assert r.returncode == 0, r.stderr
    assert names(tmp_path / "around" / "ILSVRC2012_img_val.tar").keys() == {
        ln.file for ln in read_lists(lists, IN100)["test"]}
    assert not list((tmp_path / "around").glob("*.txt"))  # the lists stay where they are


def test_imagenet_lt_synth_dir_has_sade_lists(tmp_path):
    make_benchmark_dir(tmp_path, get("imagenet_lt"), classes=5, seed=1)
    assert {p.name for p in tmp_path.glob("ImageNet_LT_*.txt")} == {
        get("imagenet_lt").split(s).pin.filename for s in get("imagenet_lt").split_names}
