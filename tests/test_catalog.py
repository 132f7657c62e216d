"""The catalog as data: every benchmark's pins, classes and label order, its lists parsed by its
own rules (flat val paths too), `ltextract benchmarks`, and a new benchmark as one entry."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from ltextract.benchmarks import Pin, SplitSpec, Variant, catalog, get
from ltextract.benchmarks.lists import (_parse_clean, _parse_lines, grammar, list_canonical_sha256,
                                        parse, parse_list)
from ltextract.errors import ListError, UsageError
from lt_util import run_cli

IN100, PLACES, INLT = get("imagenet100_lt"), get("places_lt"), get("imagenet_lt")

#: the issue's table: split -> (lines, published file name, sha256 prefix)
TABLE = {
    "imagenet_lt": {"forward50": (12_058, "dd0e2dbd"), "forward25": (14_437, "7f243acc"),
                    "forward10": (19_059, "55fdd21a"), "forward5": (24_365, "49bcf866"),
                    "forward2": (35_574, "d8e26572"), "uniform": (50_000, "369e85cd"),
                    "backward2": (35_574, "1a154be6"), "backward5": (24_365, "7b021b4a"),
                    "backward10": (19_059, "12e70717"), "backward25": (14_437, "c3f94a98"),
                    "backward50": (12_058, "5b41a38d")},
    "imagenet100_lt": {"train": (12_205, "0f94d6ee"), "val": (2_000, "e4c423bf"), "test": (5_000, "2441627d")},
    "places_lt": {"train": (62_500, "726c4871"), "val": (7_300, "719e3cf3"), "test": (36_500, "44eee844")},
}


def test_entries_match_the_published_lists():
    assert list(catalog()) == ["imagenet_lt", "imagenet100_lt", "places_lt"]
    for name, splits in TABLE.items():
        bench = get(name)
        for split, (lines, prefix) in splits.items():
            pin = bench.split(split).pin
            assert (pin.lines, pin.sha256[:8], len(pin.sha256)) == (lines, prefix, 64)
            assert bench.split(split).mirrors and all(u.startswith("https://") for u in bench.split(split).mirrors)
    assert [IN100.split(s).pin.filename for s in IN100.split_names] == [
        "imageNet_100_LT_train.txt", "ImageNet_100_val.txt", "ImageNet_100_test.txt"]
    assert [PLACES.split(s).pin.per_class for s in PLACES.split_names] == [(5, 4980), (20, 20), (100, 100)]
    assert IN100.split("train").pin.per_class == (6, 1280)
    assert {s.origin for s in INLT.splits if not s.default} == {"val"}
    assert INLT.default_splits == ("train", "val", "test") == IN100.default_splits == PLACES.default_splits
    assert all(s.subset_of == "test" and "zhang2022Self" in s.citation for s in INLT.splits[3:])
    assert INLT.origins["test"] == IN100.origins["test"] == PLACES.origins["test"] == "val"
    assert (INLT.images, IN100.images, PLACES.images) == ("ilsvrc2012", "ilsvrc2012", "places365")


def test_classes_in_label_order():
    """Labels come from the lists: ImageNet-100-LT's are CMC's order, Places-LT's are not the
    official categories' order (nor sorted folders) for five classes."""
    assert len(INLT.classes) == 1000 and list(INLT.classes) == sorted(INLT.classes)
    assert len(IN100.classes) == 100 and set(IN100.classes) <= set(INLT.classes)
    assert IN100.classes[:3] == ("n02869837", "n01749939", "n02488291") and IN100.label_of["n02116738"] == 95
    assert list(IN100.classes) != sorted(IN100.classes)
    assert len(PLACES.classes) == 365 == len(set(PLACES.classes))
    assert [PLACES.label_of[c] for c in ("desert_road", "desert-sand", "desert-vegetation",
                                         "field_road", "field-wild")] == [116, 117, 118, 141, 142]
    assert PLACES.classes[8] == "apartment_building-outdoor" and PLACES.classes[364] == "zen_garden"
    assert sorted(PLACES.classes) != list(PLACES.classes)  # ImageFolder's order is not the labels'


def test_unknown_names_are_usage_errors():
    with pytest.raises(UsageError, match="unknown benchmark 'imagenet_21k'"):
        get("imagenet_21k")
    with pytest.raises(ListError, match="unknown split 'forward3' of imagenet_lt"):
        INLT.split("forward3")


# --- lists parsed by each benchmark's own rules ----------------------------------------------

def lines(*rows: str) -> bytes:
    return "".join(r + "\n" for r in rows).encode()


def test_places_lines():
    data = lines("train/airfield/00004851.jpg 0", "train/apartment_building-outdoor/00000001.jpg 8",
                 "train/desert_road/00000001.jpg 116", "train/desert-sand/00000001.jpg 117")
    entries = parse_list(data, "P.txt", PLACES)
    assert [(e.wnid, e.label) for e in entries][1:] == [("apartment_building-outdoor", 8),
                                                         ("desert_road", 116), ("desert-sand", 117)]
    bad = {"train/desert-sand/x.jpg 116": "label 116 does not match desert-sand (its index is 117)",
           "train/Airfield/x.jpg 0": "'Airfield' is not a class (a Places365 category",
           "train/airfield-x/x.jpg 0": "airfield-x is not one of the 365 Places-LT classes",
           "train/n01440764/x.jpg 0": "'n01440764' is not a class",
           "val/airfield/x.jpg 365": "label 365 does not match airfield"}
    for line, what in bad.items():
        with pytest.raises(ListError) as e:
            parse_list(lines(line), "P.txt", PLACES)
        assert str(e.value).startswith("P.txt:1: ") and what in str(e.value), str(e.value)


def test_imagenet100_labels_are_cmc_order():
    ok = lines("val/n02869837/ILSVRC2012_val_00000002.JPEG 0", "val/n02090622/ILSVRC2012_val_00000001.JPEG 99")
    assert [e.label for e in parse_list(ok, "I.txt", IN100)] == [0, 99]
    with pytest.raises(ListError, match="label 452 does not match n02869837 .its index is 0."):
        parse_list(lines("train/n02869837/n02869837_1.JPEG 452"), "I.txt", IN100)
    with pytest.raises(ListError, match="n01440764 is not one of the 100 ImageNet-100-LT wnids"):
        parse_list(lines("train/n01440764/n01440764_1.JPEG 0"), "I.txt", IN100)


def test_flat_val_lists():
    """LADE's and KaihuaTang's test list: `val/<file> <label>`, the class from the label."""
    flat = lines("val/ILSVRC2012_val_00029930.JPEG 0", "val/ILSVRC2012_val_00000293.JPEG 999")
    entries, is_flat = parse(flat, "F.txt")
    assert is_flat and [(e.origin, e.wnid, e.file, e.label) for e in entries] == [
        ("val", "n01440764", "ILSVRC2012_val_00029930.JPEG", 0),
        ("val", "n15075141", "ILSVRC2012_val_00000293.JPEG", 999)]
    text = flat.decode()
    assert _parse_clean(text, text.splitlines()) == _parse_lines(text.splitlines(), "F.txt")
    crlf = flat.replace(b"\n", b"\r\n")  # what a flat list says is hashed as flat lines
    assert list_canonical_sha256(crlf, parse(crlf, "F")[0], "x", True) == hashlib.sha256(flat).hexdigest()
    for data, what in [(lines("val/ILSVRC2012_val_00000001.JPEG 1000"), "label 1000 is not one of the 1000"),
                       (lines("val/n01440764/a.JPEG 0", "val/b.JPEG 0"), "a flat path, unlike line 1"),
                       (lines("val/b.JPEG 0", "val/n01440764/a.JPEG 0"), "a <top>/<class>/<file> path"),
                       (lines("val/b.JPEG 0", "val/b.JPEG 3"), "duplicate of line 1 (val/b.JPEG)"),
                       (lines("train/b.JPEG 0"), "has 2 parts")]:
        with pytest.raises(ListError) as e:
            parse_list(data, "F.txt")
        assert what in str(e.value), str(e.value)


@pytest.mark.parametrize("bench", [INLT, IN100, PLACES], ids=lambda b: b.name)
def test_fast_and_slow_parsers_agree(bench):
    g = grammar(bench)
    cls = bench.classes
    good = "".join(f"train/{c}/{i}.jpg {bench.label_of[c]}\n" for i, c in enumerate(cls[::7]))
    text_lines = good.splitlines()
    assert _parse_clean(good, text_lines, g) == _parse_lines(text_lines, "G", g)
    flat = "".join(f"val/{i}.jpg {i % len(cls)}\n" for i in range(50))
    assert _parse_clean(flat, flat.splitlines(), g) == _parse_lines(flat.splitlines(), "G", g)


# --- ltextract benchmarks --------------------------------------------------------------------

def test_benchmarks_command():
    r = run_cli("benchmarks")
    assert r.returncode == 0 and r.stderr == ""
    for name, splits in TABLE.items():
        assert f"{name}: " in r.stdout
        for split, (n, prefix) in splits.items():
            row = next(line for line in r.stdout.splitlines() if prefix in line)
            assert f"{n:,}" in row and row.split()[0].rstrip("*") == split
    assert "forward50*" in r.stdout and "(subset of test)" in r.stdout and "Places365 val" in r.stdout
    data = json.loads(run_cli("benchmarks", "--json").stdout)
    assert [b["name"] for b in data] == list(TABLE)
    places = data[2]
    assert places["classes"] == 365 and "zhou2017places" in places["citation"]
    test = places["splits"][2]
    assert test["reads"] == {"origin": "val", "archives": ["places365standard_easyformat.tar",
                                                          "val_256.tar", "val_large.tar"]}
    assert test["list"]["sha256"] == PLACES.split("test").pin.sha256 and test["images"] == 36_500
    assert any("/22370c64141cc662f62ead89447c838c4a7977b5/" in u for u in test["list"]["mirrors"])
    flat = data[0]["splits"][2]["list"]["variants"][0]
    assert flat["sha256"].startswith("358650a8") and flat["size"] == 1_844_500
    assert [s["default"] for s in data[0]["splits"]].count(True) == 3


def test_unknown_benchmark_or_split_on_the_command_line(tmp_path):
    r = run_cli("build", "--benchmark", "nope", "--out", tmp_path / "o")
    assert r.returncode == 2 and "nope" in r.stderr
    r = run_cli("build", "--benchmark", "places_lt", "--split", "forward50", "--out", tmp_path / "o",
                "--manual-dir", tmp_path)
    assert r.returncode == 2 and "unknown split 'forward50' of places_lt" in r.stderr
    assert not (tmp_path / "o").exists()


# --- a benchmark is one entry ----------------------------------------------------------------

def test_a_new_benchmark_is_one_entry(tmp_path, monkeypatch):
    """A made-up 3-class ImageNet subset, with its own label order, builds, verifies and exports
    through every stage by adding one entry to the catalog (and its class file)."""
    import ltextract
    from ltextract import benchmarks
    from ltextract.benchmarks import classes
    from ltextract.synth.archives import ilsvrc_around
    from ltextract.synth.lists import ListsSpec, make_lists, write_lists

    wnids = ("n01443537", "n15075141", "n01440764")  # not sorted: labels are the entry's own
    (tmp_path / "tiny.txt").write_text("\n".join(wnids) + "\n")
    monkeypatch.setattr(classes, "class_names", lambda f: wnids if f == "tiny.txt" else
                        classes.class_names.__wrapped__(f))
    pin = Pin("train", "tiny_train.txt", 1, 1, "0" * 64, (1, 1))
    tiny = replace(INLT, name="tiny_lt", title="Tiny-LT", classes_file="tiny.txt", class_set="",
                   splits=(SplitSpec("train", "train", pin), SplitSpec("test", "val", replace(
                       pin, split="test", filename="tiny_test.txt"))))
    real = benchmarks.catalog
    monkeypatch.setattr(benchmarks, "catalog", lambda: {**real(), "tiny_lt": tiny})
    lists = make_lists(tiny, ListsSpec(classes=3, seed=1))
    lists = {s: lists[s] for s in ("train", "test")}
    write_lists(tmp_path / "m", tiny, lists)
    ilsvrc_around(tmp_path / "m", lists)
    monkeypatch.setenv("LTEXTRACT_CACHE_DIR", str(tmp_path / "cache"))
    summary = ltextract.build(tmp_path / "o", tmp_path / "m", splits_dir=tmp_path / "m",
                              benchmark="tiny_lt", quiet=True, workers=1)
    assert summary["splits"]["test"]["files"] == 15 and ltextract.verify(tmp_path / "o").ok
    rows = (tmp_path / "o" / "train.csv").read_text().splitlines()[1:]
    assert {(r.split(",")[2], r.split(",")[1]) for r in rows} <= {(w, str(i)) for i, w in enumerate(wnids)}
    ltextract.stats(tmp_path / "o", export=tmp_path / "meta")
    assert (tmp_path / "meta" / "classnames.txt").read_text().split() == list(wnids)


def test_variant_pins():
    v = Variant("flat", 3, "ab" * 32)
    pin = Pin("test", "t.txt", 1, 1, "cd" * 32, (1, 1), (v,))
    assert pin.variant("ab" * 32) is v and pin.variant("cd" * 32) is None
